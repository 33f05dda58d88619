"""Write PCM16 WAV files: plain one-shot writes and a two-channel session recording.

Contract: every failure to create or write the file (missing directory, no permission, path is a
directory, disk full) raises :class:`~voicecli.errors.AudioFileError` naming the path, never a raw
``OSError``. Writing uses the stdlib ``wave`` module (PCM16 is all we write).
"""

from __future__ import annotations

import os
import struct
import wave
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from voicecli.errors import AudioFileError
from voicecli.protocol.constants import RATE

_BLOCK_FRAMES = RATE  # frames per write when streaming a recording to disk (one second)
_MAX_DATA = 0xFFFFFFFF - 36  # a RIFF size is 32 bits: a WAV holds at most ~4 GiB (12 h at 24 kHz stereo)


@contextmanager
def _wav_writer(path: str | os.PathLike[str], rate: int, channels: int) -> Iterator[wave.Wave_write]:
    p = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise AudioFileError(
            f"Cannot write WAV file {p!r}: directory {parent!r} does not exist.", "create the directory first"
        )
    if os.path.isdir(p):
        raise AudioFileError(f"Cannot write WAV file {p!r}: it is a directory.", "pass a file path")
    try:
        with wave.open(p, "wb") as wf:
            wf.setnchannels(channels)
            wf.setsampwidth(2)
            wf.setframerate(rate)
            yield wf
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise AudioFileError(
            f"Cannot write WAV file {p!r} ({reason}).", "check the directory's permissions and free space"
        ) from None


def write_wav(path: str | os.PathLike[str], pcm: bytes, rate: int = RATE, channels: int = 1) -> None:
    """Write interleaved PCM16 LE ``pcm`` as a WAV file (a trailing partial frame is dropped)."""
    if rate <= 0 or channels <= 0:
        raise ValueError("rate and channels must be positive")
    frame_bytes = 2 * channels
    usable = len(pcm) - len(pcm) % frame_bytes
    with _wav_writer(path, rate, channels) as wf:
        wf.writeframes(pcm[:usable])


class WavStream:
    """A PCM16 WAV file written as audio arrives, readable at every moment (even after ``kill -9``).

    The 44-byte header is written first with sizes 0; every :meth:`write` appends the frames with an
    unbuffered ``os.write`` and then rewrites the RIFF and data sizes in place (``os.pwrite``), so the
    file on disk is always a complete WAV of what was written so far: a crash or SIGKILL loses nothing
    that reached :meth:`write` (the page cache survives the process). :meth:`close` is idempotent.
    Memory: at most one partial frame. Errors raise :class:`AudioFileError` naming the path.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int = RATE, channels: int = 1) -> None:
        if rate <= 0 or channels <= 0:
            raise ValueError("rate and channels must be positive")
        self.path = os.fspath(path)
        self.rate, self.channels = rate, channels
        self.frame_bytes = 2 * channels
        self.data_bytes = 0
        self._partial = b""
        _check_target(self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.write(self._fd, self._header(0))
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def _header(self, data_bytes: int) -> bytes:
        byte_rate = self.rate * self.frame_bytes
        return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, self.channels, self.rate, byte_rate, self.frame_bytes, 16)
                + b"data" + struct.pack("<I", data_bytes))

    @property
    def frames(self) -> int:
        return self.data_bytes // self.frame_bytes

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate

    def write(self, pcm: bytes) -> None:
        """Append interleaved PCM16 LE ``pcm``; a trailing partial frame waits for the next write."""
        if self._fd is None:
            raise ValueError("write to a closed WavStream")
        data = self._partial + bytes(pcm) if self._partial else bytes(pcm)
        usable = len(data) - len(data) % self.frame_bytes
        self._partial = data[usable:]
        if not usable or self.data_bytes + usable > _MAX_DATA:
            return
        try:
            view = memoryview(data)[:usable]
            while view:
                view = view[os.write(self._fd, view):]
            self.data_bytes += usable
            os.pwrite(self._fd, struct.pack("<I", 36 + self.data_bytes), 4)
            os.pwrite(self._fd, struct.pack("<I", self.data_bytes), 40)
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> WavStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_target(p: str) -> None:
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise AudioFileError(
            f"Cannot write WAV file {p!r}: directory {parent!r} does not exist.", "create the directory first"
        )
    if os.path.isdir(p):
        raise AudioFileError(f"Cannot write WAV file {p!r}: it is a directory.", "pass a file path")


def _write_error(p: str, exc: OSError) -> AudioFileError:
    reason = exc.strerror or str(exc)
    return AudioFileError(f"Cannot write WAV file {p!r} ({reason}).",
                          "check the directory's permissions and free space")


class _Track:
    """One channel: non-overlapping ``(offset_frames, pcm)`` segments in increasing offset order."""

    __slots__ = ("end", "segments")

    def __init__(self) -> None:
        self.segments: list[tuple[int, bytes]] = []
        self.end = 0

    def add(self, pcm: bytes, offset: int) -> None:
        usable = len(pcm) - len(pcm) % 2
        if usable == 0:
            return
        start = max(offset, self.end)  # never overlap: late audio goes right after what we have
        self.segments.append((start, bytes(pcm[:usable])))
        self.end = start + usable // 2


class SessionRecorder:
    """Records a conversation as a stereo WAV on one session clock: user left, agent right.

    Contract: ``at_s`` is seconds since session start on the caller's clock. Audio lands at
    ``round(at_s * rate)`` unless that channel already extends past it, in which case it is appended
    right after (audio is never overwritten). Gaps are silence. Memory is the PCM added plus a list of
    offsets; :meth:`write` assembles the stereo file block by block. Not thread-safe: call from one thread
    (the event loop).
    """

    def __init__(self, rate: int = RATE) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._user = _Track()
        self._agent = _Track()

    def add_user(self, pcm: bytes, at_s: float) -> None:
        """Place PCM16 mono ``pcm`` (at ``rate``) on the left channel at ``at_s`` seconds."""
        self._user.add(pcm, self._offset(at_s))

    def add_agent(self, pcm: bytes, at_s: float) -> None:
        """Place PCM16 mono ``pcm`` (at ``rate``) on the right channel at ``at_s`` seconds."""
        self._agent.add(pcm, self._offset(at_s))

    @property
    def frames(self) -> int:
        """Length of the recording in frames (the longer channel)."""
        return max(self._user.end, self._agent.end)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.frames / self.rate

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write a stereo PCM16 WAV at ``rate``; both channels padded with silence to the same length."""
        total = self.frames
        block = np.zeros((_BLOCK_FRAMES, 2), dtype="<i2")
        cursors = [0, 0]
        tracks = (self._user, self._agent)
        with _wav_writer(path, self.rate, 2) as wf:
            for start in range(0, total, _BLOCK_FRAMES):
                stop = min(start + _BLOCK_FRAMES, total)
                block[:] = 0
                for ch, track in enumerate(tracks):
                    cursors[ch] = _fill(block[:, ch], track.segments, cursors[ch], start, stop)
                wf.writeframes(block[: stop - start].tobytes())

    def _offset(self, at_s: float) -> int:
        return max(0, round(at_s * self.rate))


def _fill(column: np.ndarray, segments: list[tuple[int, bytes]], cursor: int, start: int, stop: int) -> int:
    """Copy the parts of ``segments`` inside frames [start, stop) into ``column``; return the new cursor.

    ``cursor`` is the index of the first segment that may still overlap ``start`` (segments are sorted
    and non-overlapping), so a whole write is linear in the number of segments plus frames.
    """
    i = cursor
    while i < len(segments):
        offset, pcm = segments[i]
        if offset >= stop:
            break
        seg_end = offset + len(pcm) // 2
        if seg_end > start:
            lo, hi = max(offset, start), min(seg_end, stop)
            samples = np.frombuffer(pcm, dtype="<i2", count=hi - lo, offset=2 * (lo - offset))
            column[lo - start : hi - start] = samples
        if seg_end > stop:
            break  # this segment continues into the next block
        i += 1
    return i
