"""Decode audio files into protocol PCM (PCM16 little-endian, mono, 24 kHz), streaming.

Contract: :func:`open_audio_file` probes a file (its header and a first block) and returns an
:class:`AudioSource` whose :meth:`AudioSource.chunks` decodes it block by block: memory does not
depend on the file's length (``bench/file_mem.py`` measures it). Every failure raises
:class:`~voicecli.errors.AudioFileError` whose message names the file and says what is wrong in one
sentence, with a hint; no soundfile/libsndfile exception escapes. Use :func:`open_audio_files` to
probe every input before connecting (cli-contract: fail early). :func:`load_audio_file` decodes a
whole (short) file into :class:`DecodedAudio` for callers that want the bytes (eval suites).

Checked before connecting: missing/unreadable/empty files, non-audio or corrupt data, zero frames,
and a sample rate outside :data:`MIN_RATE`-:data:`MAX_RATE` Hz (a header claiming 1 Hz or 10 MHz is
damaged, not audio). Non-finite float samples (NaN, +/-inf, which float WAVs can hold) are repaired,
not refused: NaN becomes silence and +/-inf full scale, so one bad sample does not lose a question
(and no numpy warning reaches stderr). Standard input and pipes can be read once: they are copied to
an anonymous temporary file on disk (not into memory) and decoded from there.

Pure DSP: no sounddevice, no asyncio. Decoding is done with soundfile (libsndfile 1.2: WAV in any
encoding, FLAC, OGG Vorbis/Opus, MP3) and resampling with soxr's stream resampler
(``soxr.ResampleStream``, HQ; audio-lab.md section 4 measured soxr HQ at >130 dB SNR for
16/44.1/48 kHz -> 24 kHz).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from voicecli.audio.resample import float_to_pcm16, to_mono_float
from voicecli.errors import AudioFileError
from voicecli.protocol.constants import RATE, SAMPLE_BYTES

PROTOCOL_RATE = RATE
"""Sample rate of ``input.audio`` / ``reply.audio`` on the wire (:data:`voicecli.protocol.constants.RATE`)."""

_BYTES_PER_FRAME = SAMPLE_BYTES  # PCM16 mono
_FORMATS_HINT = "use a WAV, FLAC, OGG or MP3 file"
MIN_RATE = 1000
"""Lowest sample rate accepted (Hz); below it the header is damaged (telephone audio is 8000)."""
MAX_RATE = 768000
"""Highest sample rate accepted (Hz): the highest rate audio interfaces and libsndfile use."""
_BLOCK_S = 0.5   # seconds of source audio decoded at a time


@dataclass(frozen=True)
class DecodedAudio:
    """One decoded input file.

    ``pcm`` is PCM16 little-endian mono at :data:`PROTOCOL_RATE`, ready to chunk and send.
    ``source_*`` describe the file as it was on disk (for ``--verbose``/``doctor`` output).
    """

    path: str
    pcm: bytes
    source_rate: int
    source_channels: int
    source_format: str
    duration_s: float


STDIN = "-"
"""The path that means "read one audio file from standard input" (``voicecli ask -``)."""


def _is_stream(path: str) -> bool:
    """A pipe, socket or character device (``/dev/stdin`` on a pipe): its size says nothing, so it
    is read whole into memory instead of being checked and opened as a file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def _spool_stream(path: str) -> IO[bytes]:
    """Copy ``-`` (standard input) or a pipe to an anonymous temporary file (disk, not memory) and
    return it rewound; AudioFileError if nothing can be read."""
    name = "standard input" if path == STDIN else repr(path)
    spool = tempfile.TemporaryFile(prefix="voicecli-stdin-")
    try:
        if path == STDIN:
            if sys.stdin is None or sys.stdin.isatty():
                raise AudioFileError("'-' means audio on standard input, but standard input is a terminal.",
                                     hint="pipe or redirect a file: voicecli ask - < question.wav")
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 16)
        else:
            with open(path, "rb") as fh:
                shutil.copyfileobj(fh, spool, 1 << 16)
    except OSError as exc:
        spool.close()
        raise AudioFileError(f"Audio on {name} cannot be read ({exc.strerror or exc}).",
                             "check the pipe and the free space in the temporary folder") from None
    except BaseException:
        spool.close()
        raise
    if spool.tell() == 0:
        spool.close()
        raise AudioFileError(f"Audio on {name} is empty (0 bytes).",
                             hint="pipe or redirect a WAV, FLAC, OGG or MP3 file into it")
    spool.seek(0)
    return spool


def _check_path(path: str) -> None:
    """Raise AudioFileError for problems visible before decoding (missing, directory, unreadable, empty)."""
    if not os.path.exists(path):
        raise AudioFileError(f"Audio file {path!r} does not exist.", hint="check the path and spelling")
    if os.path.isdir(path):
        raise AudioFileError(f"Audio file {path!r} is a directory, not a file.", hint="pass a file path")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise AudioFileError(
            f"Audio file {path!r} cannot be read (permission denied).", hint="check the file's permissions"
        ) from None
    except OSError as exc:
        raise AudioFileError(
            f"Audio file {path!r} cannot be read ({exc.strerror or exc}).", hint="check the file"
        ) from None
    if os.path.getsize(path) == 0:
        raise AudioFileError(f"Audio file {path!r} is empty (0 bytes).", hint=_FORMATS_HINT)


def _label(path: str) -> str:
    return "Audio on standard input" if path == STDIN else f"Audio file {path!r}"


_DECODE_HINT = f"{_FORMATS_HINT}; the file may be corrupt or truncated"


def _translate(path: str, exc: BaseException) -> AudioFileError:
    """The one-line AudioFileError for a soundfile/libsndfile/decoder failure on ``path``."""
    if isinstance(exc, sf.LibsndfileError):
        reason = (exc.error_string or "unknown libsndfile error").rstrip(".")
        return AudioFileError(f"{_label(path)} is not a readable audio file ({reason}).", _DECODE_HINT)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return AudioFileError(f"{_label(path)} cannot be read ({reason}).", "check the file")
    reason = str(exc).rstrip(".") or type(exc).__name__
    return AudioFileError(f"{_label(path)} could not be decoded ({reason}).", _DECODE_HINT)


_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError, OSError)


def to_protocol_pcm(data: npt.NDArray[Any], rate: int) -> bytes:
    """Downmix float32 ``(frames, channels)`` or ``(frames,)`` to mono, resample to 24 kHz, PCM16 LE
    (one shot, for short in-memory audio).

    Channels are averaged; [-1, 1) maps onto the int16 range, beyond it clips (:func:`float_to_pcm16`);
    NaN becomes 0 and +/-inf full scale.
    """
    mono = _finite(to_mono_float(data))
    if rate != PROTOCOL_RATE and mono.size:
        mono = soxr.resample(mono, rate, PROTOCOL_RATE, quality="HQ")
    return float_to_pcm16(mono)


def _finite(mono: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """NaN -> 0, +/-inf -> +/-1 (a repaired copy); finite input is returned as is."""
    if np.isfinite(mono).all():
        return mono
    return np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)


class AudioSource:
    """A probed input file, decoded on demand: :meth:`chunks` streams it as protocol PCM.

    ``source_*`` and ``duration_s`` describe the file as its header says (``--verbose``/``doctor``).
    :meth:`chunks` can be iterated again (``ask`` resends a turn after a dropped connection); each
    pass reopens the file (or rewinds the spooled standard input). Memory: one block
    (:data:`_BLOCK_S` of source audio) plus the resampler's state, whatever the file's length.
    """

    def __init__(self, path: str, spool: IO[bytes] | None = None) -> None:
        self.path = path
        self._spool = spool
        try:
            with self._open() as fh:
                self.source_rate, self.source_channels = int(fh.samplerate), int(fh.channels)
                self.source_format = f"{fh.format}/{fh.subtype}" if fh.subtype else str(fh.format)
                self.source_frames = int(fh.frames)
                self._check_rate()
                first = fh.read(max(1, min(self.source_rate, MAX_RATE) // 10), dtype="float32",
                                always_2d=True)
        except AudioFileError:
            raise
        except _DECODE_ERRORS as exc:
            raise _translate(path, exc) from None
        if first.shape[0] == 0:
            raise AudioFileError(f"{_label(path)} contains no audio (0 frames).", hint=_FORMATS_HINT)
        self.duration_s = self.source_frames / self.source_rate

    def _check_rate(self) -> None:
        rate = self.source_rate
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioFileError(f"{_label(self.path)} claims a sample rate of {rate} Hz, outside "
                                 f"{MIN_RATE}-{MAX_RATE} Hz: its header is damaged.",
                                 "re-export the file (e.g. ffmpeg -i in.wav -ar 24000 out.wav)")

    def _open(self) -> sf.SoundFile:
        if self._spool is not None:
            self._spool.seek(0)
            return sf.SoundFile(self._spool)
        return sf.SoundFile(self.path)

    def chunks(self, chunk_ms: int) -> Iterator[bytes]:
        """PCM16 LE mono 24 kHz in chunks of exactly ``chunk_ms`` (the last one may be shorter).
        Raises AudioFileError (naming the file) if decoding fails part way."""
        step = chunk_ms * PROTOCOL_RATE // 1000 * _BYTES_PER_FRAME
        if step <= 0:
            raise ValueError("chunk_ms too small for one frame")
        pending = bytearray()
        for pcm in self._pcm_blocks():
            pending += pcm
            whole = len(pending) - len(pending) % step
            for start in range(0, whole, step):
                yield bytes(pending[start:start + step])
            del pending[:whole]
        if pending:
            yield bytes(pending)

    def _pcm_blocks(self) -> Iterator[bytes]:
        rate = self.source_rate
        stream = None if rate == PROTOCOL_RATE else soxr.ResampleStream(rate, PROTOCOL_RATE, 1,
                                                                          dtype="float32", quality="HQ")
        try:
            with self._open() as fh:
                for block in fh.blocks(blocksize=max(1, int(rate * _BLOCK_S)), dtype="float32",
                                       always_2d=True):
                    mono = _finite(to_mono_float(block))
                    if stream is not None:
                        mono = stream.resample_chunk(mono)
                    if mono.size:
                        yield float_to_pcm16(mono)
        except _DECODE_ERRORS as exc:
            raise _translate(self.path, exc) from None
        if stream is not None:
            tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield float_to_pcm16(tail)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


def open_audio_file(path: str | os.PathLike[str]) -> AudioSource:
    """Probe one file (header, rate, a first block) and return its :class:`AudioSource`.

    Raises :class:`AudioFileError` (one sentence naming the file, plus a hint) when the file is missing,
    a directory, unreadable, 0 bytes, not audio / corrupt, holds zero frames, or claims an absurd
    sample rate. ``-`` (:data:`STDIN`) and pipes (``/dev/stdin``, ``<(...)``) are copied to a
    temporary file first.
    """
    p = os.fspath(path)
    if p == STDIN or _is_stream(p):
        spool = _spool_stream(p)
        try:
            return AudioSource(p, spool)
        except BaseException:
            spool.close()
            raise
    _check_path(p)
    return AudioSource(p)


def open_audio_files(paths: Iterable[str | os.PathLike[str]]) -> list[AudioSource]:
    """Probe every file, in order; the first bad file raises before any result is returned.

    Call this before connecting so a typo in the last of several files fails fast. Standard input
    (``-``) can be read once: giving it twice is an AudioFileError.
    """
    paths = [os.fspath(p) for p in paths]
    if paths.count(STDIN) > 1:
        raise AudioFileError("'-' (audio on standard input) is given more than once.",
                             hint="standard input holds one file; pass the others by name")
    out: list[AudioSource] = []
    try:
        for p in paths:
            out.append(open_audio_file(p))
    except BaseException:
        for src in out:
            src.close()
        raise
    return out


def load_audio_file(path: str | os.PathLike[str]) -> DecodedAudio:
    """Decode one whole file to :class:`DecodedAudio` (PCM16 LE mono 24 kHz); the errors of
    :func:`open_audio_file`. Memory grows with the file: for long inputs stream an AudioSource."""
    src = open_audio_file(path)
    try:
        pcm = b"".join(src.chunks(1000))
    finally:
        src.close()
    return DecodedAudio(
        path=src.path,
        pcm=pcm,
        source_rate=src.source_rate,
        source_channels=src.source_channels,
        source_format=src.source_format,
        duration_s=len(pcm) / _BYTES_PER_FRAME / PROTOCOL_RATE,
    )


def load_audio_files(paths: Iterable[str | os.PathLike[str]]) -> list[DecodedAudio]:
    """Decode every file, in order; the first bad file raises before any result is returned
    (``-`` at most once)."""
    paths = [os.fspath(p) for p in paths]
    if paths.count(STDIN) > 1:
        raise AudioFileError("'-' (audio on standard input) is given more than once.",
                             hint="standard input holds one file; pass the others by name")
    return [load_audio_file(p) for p in paths]


def silence(ms: int, rate: int = PROTOCOL_RATE) -> bytes:
    """``ms`` milliseconds of PCM16 mono silence at ``rate`` (rounded down to whole frames)."""
    if ms < 0:
        raise ValueError("ms must be >= 0")
    return bytes(_BYTES_PER_FRAME * (ms * rate // 1000))


def chunk_pcm(pcm: bytes, chunk_ms: int, rate: int = PROTOCOL_RATE) -> Iterator[bytes]:
    """Split PCM16 mono ``pcm`` into chunks of exactly ``chunk_ms`` (the last one may be shorter).

    Every chunk holds whole frames (an even number of bytes); a trailing odd byte is dropped.
    """
    frames = chunk_ms * rate // 1000
    if frames <= 0:
        raise ValueError("chunk_ms too small for one frame at this rate")
    step = frames * _BYTES_PER_FRAME
    end = len(pcm) - len(pcm) % _BYTES_PER_FRAME
    view = memoryview(pcm)
    for start in range(0, end, step):
        yield bytes(view[start : min(start + step, end)])
