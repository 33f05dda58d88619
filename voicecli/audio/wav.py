"""Write PCM16 WAV files: one-shot writes, a WAV streamed as audio arrives (:class:`WavStream`, readable
even after a kill) and a two-channel session recording streamed the same way (:class:`SessionRecorder`).

Contract: every failure to create or write the file (missing directory, no permission, path is a
directory, disk full) raises :class:`~voicecli.errors.AudioFileError` naming the path, never a raw
``OSError``. Writing uses the stdlib ``wave`` module (PCM16 is all we write).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import wave
from collections.abc import Iterator
from contextlib import contextmanager

from voicecli.errors import AudioFileError
from voicecli.protocol.constants import RATE

_BLOCK_FRAMES = RATE  # frames per write when streaming a recording to disk (one second)
_MAX_DATA = 0xFFFFFFFF - 36  # a RIFF size is 32 bits: a WAV holds at most ~4 GiB (12 h at 24 kHz stereo)


@contextmanager
def _wav_writer(path: str | os.PathLike[str], rate: int, channels: int) -> Iterator[wave.Wave_write]:
    p = os.fspath(path)
    _check_target(p)
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
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
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

    def read_frames(self, start: int, count: int) -> bytes:
        """``count`` frames from frame ``start`` (already written ones only)."""
        if self._fd is None:
            raise ValueError("read from a closed WavStream")
        count = max(0, min(count, self.frames - start))
        try:
            return os.pread(self._fd, count * self.frame_bytes, 44 + start * self.frame_bytes)
        except OSError as exc:
            raise _write_error(self.path, exc) from None

    def overwrite(self, start: int, pcm: bytes) -> None:
        """Replace already written frames from frame ``start`` with ``pcm`` (whole frames, all inside)."""
        if self._fd is None:
            raise ValueError("write to a closed WavStream")
        if start < 0 or start * self.frame_bytes + len(pcm) > self.data_bytes or len(pcm) % self.frame_bytes:
            raise ValueError("overwrite outside the written frames")
        try:
            os.pwrite(self._fd, pcm, 44 + start * self.frame_bytes)
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


class SessionRecorder:
    """Records a conversation as a stereo WAV on one session clock: user left, agent right, written
    to disk as it is added (bounded memory, a valid file at every moment).

    Contract: ``at_s`` is seconds since session start on the caller's clock. Audio lands at
    ``round(at_s * rate)`` unless that channel already extends past it, in which case it is appended
    right after (audio is never overwritten). Gaps are silence. Audio for a stretch already on disk
    (the agent's channel is placed once a reply has been heard) is merged into the file in place
    (read, set the channel, write back, one block at a time). With ``path`` the file is that path,
    created at the first audio (or by :meth:`write`/:meth:`close`); without, an anonymous temporary
    file that :meth:`write` copies to its destination. Memory: one block (:data:`_BLOCK_FRAMES`),
    whatever the length; a crash or kill leaves the file readable up to the last audio added.
    Not thread-safe: call from one thread (the event loop).
    """

    def __init__(self, rate: int = RATE, path: str | os.PathLike[str] | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.path = None if path is None else os.fspath(path)
        self._stream: WavStream | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._end = [0, 0]          # per channel: the frame after its last sample

    def add_user(self, pcm: bytes, at_s: float) -> None:
        """Place PCM16 mono ``pcm`` (at ``rate``) on the left channel at ``at_s`` seconds."""
        self._place(0, pcm, self._offset(at_s))

    def add_agent(self, pcm: bytes, at_s: float) -> None:
        """Place PCM16 mono ``pcm`` (at ``rate``) on the right channel at ``at_s`` seconds."""
        self._place(1, pcm, self._offset(at_s))

    @property
    def frames(self) -> int:
        """Length of the recording in frames (the longer channel)."""
        return max(self._end)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.frames / self.rate

    def _open(self) -> WavStream:
        if self._stream is None:
            target = self.path
            if target is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="voicecli-rec-")
                target = os.path.join(self._tmpdir.name, "session.wav")
            self._stream = WavStream(target, self.rate, 2)
        return self._stream

    def _place(self, ch: int, pcm: bytes, offset: int) -> None:
        import numpy as np  # only a recording needs it (the chat's live path runs without numpy)
        n = len(pcm) // 2
        if n == 0:
            return
        stream = self._open()
        start = max(offset, self._end[ch])     # never overlap: late audio goes right after what we have
        self._end[ch] = start + n
        src = np.frombuffer(pcm, dtype="<i2", count=n)
        pos = 0
        while pos < n:                          # the part inside what is on disk: merge in place
            at = start + pos
            if at >= stream.frames:
                break
            count = min(_BLOCK_FRAMES, n - pos, stream.frames - at)
            block = np.frombuffer(stream.read_frames(at, count), dtype="<i2").reshape(-1, 2).copy()
            block[:, ch] = src[pos:pos + count]
            stream.overwrite(at, block.tobytes())
            pos += count
        if pos < n and start + pos > stream.frames:   # a gap before it: silence
            gap = start + pos - stream.frames
            zeros = bytes(4 * min(gap, _BLOCK_FRAMES))
            while gap > 0:
                step = min(gap, _BLOCK_FRAMES)
                stream.write(zeros[: 4 * step])
                gap -= step
        while pos < n:                          # beyond the end: append, the other channel silent
            count = min(_BLOCK_FRAMES, n - pos)
            block = np.zeros((count, 2), dtype="<i2")
            block[:, ch] = src[pos:pos + count]
            stream.write(block.tobytes())
            pos += count

    def close(self) -> None:
        """Finish the file (creating an empty one if no audio came); idempotent."""
        self._open().close()

    def write(self, path: str | os.PathLike[str] | None = None) -> None:
        """Finish the recording; with ``path`` (other than the one it streams to) copy it there."""
        if path is not None and self.path is None and self._stream is None:
            self.path = os.fspath(path)        # nothing streamed yet: write it in place
        self.close()
        stream = self._stream
        assert stream is not None
        if path is None or os.path.abspath(os.fspath(path)) == os.path.abspath(stream.path):
            return
        p = os.fspath(path)
        _check_target(p)
        try:
            shutil.copyfile(stream.path, p)
        except OSError as exc:
            raise _write_error(p, exc) from None

    def _offset(self, at_s: float) -> int:
        return max(0, round(at_s * self.rate))

    def __del__(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
