"""Playback jitter buffer between the asyncio loop (producer) and the PortAudio output callback (consumer).

Design.md principles 5 and 6: the output callback reads from this plain thread-safe object, never from
an asyncio queue. One ``threading.Lock`` guards the state and is held only for O(1) bookkeeping and
memcpy-sized work (``interrupt`` walks the queued segments, at most a few hundred). ``pull_into``
allocates nothing beyond slice views, so it is safe to call from the audio callback.

Segments are int16 ``memoryview`` objects (format ``'h'``), not numpy arrays: the live path at the
wire rate runs without numpy (issue 10: importing it is ~13 MiB of the chat's memory). ``pull_into``
fills a numpy int16 array or a ``memoryview`` of a raw stream's buffer alike.

Samples are int16 mono at the *device* rate ``rate``; the caller resamples ``reply.audio`` before pushing.
Audio is kept as a deque of ``(reply_id, array)`` segments so one reply can be cut out (barge-in)
while audio of other replies survives.

Underrun rule: running dry while the current reply is not ended (no :meth:`mark_end` yet) is a
*suspected* underrun. It is confirmed, and counted once with all its zero-filled frames, as soon as more
audio is pushed; if ``mark_end`` for that reply arrives first, the dry-out was the natural end of the
reply (``reply.done`` arriving a little after the last audio) and nothing is counted.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    I16 = npt.NDArray[np.int16]

_MAX_TRACKED_REPLIES = 16
_MAX_GATED_REPLIES = 64


@dataclass
class JitterStats:
    """Counters, all in frames at the buffer rate except ``underruns`` (events)."""

    underruns: int = 0
    underrun_frames: int = 0
    overflow_frames: int = 0
    dropped_gated_frames: int = 0
    flushed_frames: int = 0
    played_frames: int = 0


class _Segment:
    """Queued audio of one reply (``data`` not None) or an end-of-reply marker (``data`` is None)."""

    __slots__ = ("data", "off", "reply_id")

    def __init__(self, reply_id: str | None, data: memoryview | None) -> None:
        self.reply_id = reply_id
        self.data = data
        self.off = 0

    def remaining(self) -> int:
        return 0 if self.data is None else len(self.data) - self.off


class _ReplyTrack:
    __slots__ = ("first_at", "played")

    def __init__(self) -> None:
        self.played = 0
        self.first_at: float | None = None


class JitterBuffer:
    """Thread-safe int16 mono playback queue with prebuffering, bounded depth and reply gating.

    Producer side (event loop): :meth:`push`, :meth:`mark_end`, :meth:`interrupt`, :meth:`flush`.
    Consumer side (device callback): :meth:`pull_into` (or :meth:`pull`), which always yields exactly
    the requested number of frames, zero-filling what it does not have.
    """

    def __init__(
        self,
        rate: int,
        prebuffer_ms: int = 80,
        max_ms: int = 5000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if prebuffer_ms < 0 or max_ms <= 0:
            raise ValueError("prebuffer_ms must be >= 0 and max_ms > 0")
        self.rate = rate
        self.prebuffer_frames = prebuffer_ms * rate // 1000
        self.max_frames = max(1, max_ms * rate // 1000, self.prebuffer_frames)
        self._clock = clock
        self._lock = threading.Lock()
        self._segs: deque[_Segment] = deque()
        self._depth = 0  # audio frames queued
        self._markers = 0  # end markers queued
        self._priming = True
        self._ended = True  # the last item consumed was an end marker (or nothing played yet)
        self._dry = 0  # 0: flowing, 1: suspected underrun, 2: confirmed underrun
        self._dry_frames = 0  # zero-filled frames of a suspected underrun
        self._stats = JitterStats()
        self._tracks: OrderedDict[str, _ReplyTrack] = OrderedDict()
        self._gated: OrderedDict[str, None] = OrderedDict()
        self._current: str | None = None
        self._audible = False
        self._zeros = memoryview(b"").cast("h")   # grown on demand: zero fill for memoryview outputs

    # ------------------------------------------------------------------ producer side

    def push(self, samples: I16 | bytes | bytearray | memoryview, reply_id: str | None = None) -> None:
        """Queue int16 mono samples (an int16 array, copied, or PCM16 LE bytes) for ``reply_id``.

        Audio of a gated (interrupted) reply is dropped and counted in ``dropped_gated_frames``. If the
        queue would exceed ``max_ms``, the oldest audio is dropped and counted in ``overflow_frames``.
        """
        data = _as_int16(samples)
        n = len(data)
        with self._lock:
            if reply_id is not None and reply_id in self._gated:
                self._stats.dropped_gated_frames += n
                return
            if n == 0:
                return
            if self._dry == 1:  # audio kept coming after a dry-out: it was a real underrun
                self._stats.underruns += 1
                self._stats.underrun_frames += self._dry_frames
                self._dry_frames = 0
                self._dry = 2
            if n > self.max_frames:
                self._stats.overflow_frames += n - self.max_frames
                data = data[n - self.max_frames :]
                n = self.max_frames
            excess = self._depth + n - self.max_frames
            if excess > 0:
                self._stats.overflow_frames += self._drop_oldest(excess)
            self._segs.append(_Segment(reply_id, data))
            self._depth += n

    def mark_end(self, reply_id: str | None) -> None:
        """Declare that no more audio will be pushed for ``reply_id`` (``reply.done``).

        Lets a reply shorter than the prebuffer play, and makes the dry-out after its last sample a
        natural end rather than an underrun.
        """
        with self._lock:
            if reply_id is not None and reply_id in self._gated:
                return
            if self._dry == 1 and reply_id == self._current and self._depth == 0:
                self._dry = 0
                self._dry_frames = 0
                self._ended = True
                return
            self._segs.append(_Segment(reply_id, None))
            self._markers += 1

    def flush(self) -> int:
        """Drop everything queued (barge-in); the next pull is silent. Returns the frames dropped."""
        with self._lock:
            dropped = self._depth
            self._segs.clear()
            self._depth = 0
            self._markers = 0
            self._stats.flushed_frames += dropped
            self._reset_flow()
            return dropped

    def interrupt(self, reply_id: str) -> int:
        """Drop queued audio of ``reply_id`` and gate it so later pushes for it are dropped.

        Audio of other replies stays queued, in order. Returns the frames dropped. At most the last
        64 gated ids are remembered.
        """
        with self._lock:
            self._gated[reply_id] = None
            self._gated.move_to_end(reply_id)
            while len(self._gated) > _MAX_GATED_REPLIES:
                self._gated.popitem(last=False)
            dropped = 0
            kept: deque[_Segment] = deque()
            for seg in self._segs:
                if seg.reply_id == reply_id:
                    dropped += seg.remaining()
                    if seg.data is None:
                        self._markers -= 1
                else:
                    kept.append(seg)
            self._segs = kept
            self._depth -= dropped
            self._stats.flushed_frames += dropped
            if reply_id == self._current or self._depth == 0:
                self._reset_flow()
            return dropped

    def gated_ids(self) -> list[str]:
        """The gated reply ids, oldest first (a replacement buffer keeps them gated)."""
        with self._lock:
            return list(self._gated)

    def is_gated(self, reply_id: str) -> bool:
        """True if ``reply_id`` was interrupted (and is still remembered)."""
        with self._lock:
            return reply_id in self._gated

    # ------------------------------------------------------------------ consumer side

    def pull(self, frames: int) -> I16:
        """Return exactly ``frames`` int16 samples (allocates; callbacks should use :meth:`pull_into`)."""
        import numpy as np
        out = np.zeros(frames, dtype=np.int16)
        self.pull_into(out)
        return out

    def pull_into(self, out: Any) -> int:
        """Fill ``out`` completely; return how many frames were real audio.

        ``out`` is an int16 ``memoryview`` (format ``'h'``, e.g. a raw stream's buffer cast to it) or
        an int16 numpy array ``(frames,)`` or ``(frames, channels)`` (mono is copied to every
        channel). Real frames come first, the zero-filled rest follows. While priming (at start,
        after a dry-out or a flush) the output is silence until ``prebuffer_ms`` is queued or a reply
        end is.
        """
        if getattr(out, "ndim", 1) == 2:
            written = self.pull_into(out[:, 0])
            if out.shape[1] > 1:
                out[:, 1:] = out[:, :1]
            return written
        n = len(out)
        with self._lock:
            if self._priming and (self._depth >= self.prebuffer_frames or self._markers > 0):
                self._priming = False
            written = 0 if self._priming else self._copy_out(out, n)
            if written < n:
                self._zero_fill(out, written, n)
                self._on_short(written, n - written)
            else:
                self._dry = 0
            self._audible = written > 0
            self._stats.played_frames += written
            return written

    # ------------------------------------------------------------------ queries

    @property
    def depth_ms(self) -> float:
        """Milliseconds of audio queued."""
        with self._lock:
            return self._depth * 1000.0 / self.rate

    @property
    def depth_frames(self) -> int:
        """Frames of audio queued."""
        with self._lock:
            return self._depth

    @property
    def stats(self) -> JitterStats:
        """A consistent snapshot (copy) of the counters."""
        with self._lock:
            return replace(self._stats)

    @property
    def current_reply(self) -> str | None:
        """reply_id of the audio most recently pulled (None before any)."""
        return self._current

    @property
    def audible(self) -> bool:
        """True if the last pull returned any real frames."""
        return self._audible

    @property
    def priming(self) -> bool:
        """True while output is held back waiting for the prebuffer target."""
        return self._priming

    def played_ms(self, reply_id: str) -> float:
        """Milliseconds of ``reply_id`` handed to the device so far (0.0 if unknown or forgotten)."""
        with self._lock:
            track = self._tracks.get(reply_id)
            return 0.0 if track is None else track.played * 1000.0 / self.rate

    def first_played_at(self, reply_id: str) -> float | None:
        """Clock time (``time.monotonic`` by default) the first real sample of ``reply_id`` was pulled."""
        with self._lock:
            track = self._tracks.get(reply_id)
            return None if track is None else track.first_at

    # ------------------------------------------------------------------ internals (lock held)

    def _zero_fill(self, out: Any, start: int, n: int) -> None:
        if not isinstance(out, memoryview):
            out[start:] = 0
            return
        if len(self._zeros) < n - start:
            self._zeros = memoryview(bytes(2 * n)).cast("h")
        out[start:] = self._zeros[: n - start]

    def _copy_out(self, out: Any, n: int) -> int:
        written = 0
        segs = self._segs
        while segs:
            seg = segs[0]
            data = seg.data
            if data is None:
                segs.popleft()
                self._markers -= 1
                self._ended = True
                continue
            if written == n:
                break
            k = min(n - written, len(data) - seg.off)
            out[written : written + k] = data[seg.off : seg.off + k]
            self._track(seg.reply_id, k)
            written += k
            seg.off += k
            self._depth -= k
            self._ended = False
            if seg.off == len(data):
                segs.popleft()
        return written

    def _on_short(self, written: int, zeros: int) -> None:
        """Account for ``zeros`` zero-filled frames at the end of a pull."""
        if not self._priming and self._depth == 0:
            self._priming = True  # ran dry: re-prime before playing again
            if not self._ended and self._dry == 0:
                self._dry = 1
        if written > 0 and self._dry == 2:
            self._dry = 1 if not self._ended else 0  # resumed then ran dry again: a new dry-out
            if self._dry == 1:
                self._dry_frames = 0
        if self._dry == 1:
            self._dry_frames += zeros
        elif self._dry == 2:
            self._stats.underrun_frames += zeros

    def _track(self, reply_id: str | None, k: int) -> None:
        self._current = reply_id
        if reply_id is None:
            return
        track = self._tracks.get(reply_id)
        if track is None:
            track = self._tracks[reply_id] = _ReplyTrack()
            while len(self._tracks) > _MAX_TRACKED_REPLIES:
                self._tracks.popitem(last=False)
        if track.first_at is None:
            track.first_at = self._clock()
        track.played += k

    def _drop_oldest(self, frames: int) -> int:
        dropped = 0
        segs = self._segs
        while segs and dropped < frames:
            seg = segs[0]
            if seg.data is None:
                segs.popleft()
                self._markers -= 1
                continue
            k = min(frames - dropped, seg.remaining())
            seg.off += k
            dropped += k
            if seg.remaining() == 0:
                segs.popleft()
        self._depth -= dropped
        return dropped

    def _reset_flow(self) -> None:
        self._priming = True
        self._ended = True
        self._dry = 0
        self._dry_frames = 0


def _as_int16(samples: Any) -> memoryview:
    """PCM16 LE bytes (a trailing odd byte is ignored) or a 1-D int16 numpy array (copied) -> an
    int16 memoryview the buffer owns."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        raw = bytes(samples)
        if len(raw) % 2:
            raw = raw[:-1]
        view = memoryview(raw).cast("h")
        return view if sys.byteorder == "little" else memoryview(_swapped(raw)).cast("h")
    dtype, ndim = getattr(samples, "dtype", None), getattr(samples, "ndim", None)
    if dtype is None or dtype.name != "int16" or ndim != 1:
        shape = getattr(samples, "shape", "")
        raise TypeError(f"push() takes 1-D int16 arrays or PCM16 bytes, got {dtype} {shape}")
    return memoryview(samples.copy()).cast("B").cast("h")


def _swapped(raw: bytes) -> bytes:
    from array import array
    a = array("h", raw)
    a.byteswap()
    return a.tobytes()
