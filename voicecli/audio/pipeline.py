"""The two live audio paths of ``voicecli chat``, as plain objects without devices or asyncio
(design.md principle 6), so they are unit-tested with plain signals.

* :class:`CapturePipeline`: device blocks (native rate, any channel count, PCM16) -> downmix ->
  24 kHz (low-latency polyphase resampler) -> exact ``chunk_ms`` PCM16 chunks for ``input.audio``,
  plus the input level for the meter.
* :class:`PlaybackPipeline`: ``reply.audio`` PCM16 at 24 kHz -> device rate -> the
  :class:`~voicecli.audio.jitter.JitterBuffer`, one resampler stream per reply (a reply's tail is
  flushed at its end; an interrupted reply's filter state is discarded).

At the wire rate, mono, with no echo canceller (a sound server's PCM: the server converts rates in
its own process) both paths are byte copies and numpy is never imported; it is loaded on first use
by the paths that resample, downmix or cancel echo (issue 10: the chat's memory and CPU).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voicecli.audio.jitter import JitterBuffer
from voicecli.protocol.constants import RATE, SAMPLE_BYTES

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from voicecli.audio.polyphase import PolyphaseResampler

    F32 = npt.NDArray[np.float32]

PROTOCOL_RATE = RATE   # the wire rate (protocol.md 3.2)
SILENT_DB = -100.0
PCM = (bytes, bytearray, memoryview)


def to_pcm16(x: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """float [-1, 1) -> int16 (x 32768, rounded, clipped), as ``float_to_pcm16`` but an array.
    One temporary, in-place ufuncs (no ``np.clip`` wrapper): it runs for every live chunk."""
    import numpy as np
    scaled = np.multiply(x, np.float32(32768.0), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.minimum(scaled, np.float32(32767.0), out=scaled)
    np.maximum(scaled, np.float32(-32768.0), out=scaled)
    out: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return out


def level_db(x: npt.NDArray[Any]) -> float:
    """RMS level of float samples in dBFS (``SILENT_DB`` for digital silence)."""
    import numpy as np
    if x.size == 0:
        return SILENT_DB
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    rms = math.sqrt(float(np.dot(flat, flat)) / flat.size)   # one BLAS call, no temporaries (10 Hz meter)
    return _db(rms)


def pcm16_level(pcm: bytes) -> tuple[float, float]:
    """(RMS level in dBFS, absolute peak 0..1) of PCM16 LE bytes, without numpy (the meter reads
    it ~10 times a second; 480 samples take ~30 us in pure Python)."""
    a = array("h")
    a.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder != "little":
        a.byteswap()
    if not a:
        return SILENT_DB, 0.0
    rms = math.sqrt(sum(v * v for v in a) / len(a)) / 32768.0
    return _db(rms), max(max(a), -min(a)) / 32768.0


def _db(rms: float) -> float:
    return SILENT_DB if rms <= 1e-5 else max(SILENT_DB, 20.0 * math.log10(rms))


class CapturePipeline:
    """Mic blocks in, ``input.audio`` chunks out.

    Contract: :meth:`feed` each device block in order, as PCM16 LE bytes interleaved at ``in_rate``
    with ``channels`` (what :class:`~voicecli.audio.devices.CaptureStream` delivers) or as a numpy
    array ``(frames,)``/``(frames, channels)``; it returns the PCM16 LE chunks (exactly ``chunk_ms``
    each) completed by this block, oldest first. :meth:`measure_level` gives the RMS level of the
    latest block (and sets ``peak``, its absolute peak 0..1) for the meter.

    A mono stream at the wire rate with no ``processor`` (the usual case on a sound server, which
    converts rates itself) is the wire format already: its bytes are only re-cut into chunks, with
    no numpy and no copies beyond the chunk itself (:attr:`passthrough`). Anything else is converted
    to float, downmixed, resampled (:class:`~voicecli.audio.polyphase.PolyphaseResampler`) and run
    through ``processor`` (e.g. the echo canceller, on the 24 kHz signal).
    """

    def __init__(self, in_rate: int, channels: int, chunk_ms: int = 20,
                 processor: Callable[[F32], F32] | None = None) -> None:
        if not 20 <= chunk_ms <= 100:
            raise ValueError("chunk_ms must be 20-100 (protocol.md 3.2)")
        self.in_rate = in_rate
        self.channels = channels
        self.chunk_ms = chunk_ms
        self.processor = processor
        self.level_db = SILENT_DB
        self.peak = 0.0
        self.frames_in = 0
        self._resampler: PolyphaseResampler | None = None
        self._chunker: Any = None
        self._pending = bytearray()
        self._last: Any = b""

    @property
    def passthrough(self) -> bool:
        """True when device bytes are wire bytes (mono, 24 kHz, nothing to process)."""
        return self.in_rate == PROTOCOL_RATE and self.channels == 1 and self.processor is None

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame of what :meth:`feed` takes as bytes (int16 x channels)."""
        return SAMPLE_BYTES * self.channels

    def frames_of(self, block: Any) -> int:
        return len(block) // self.frame_bytes if isinstance(block, PCM) else int(block.shape[0])

    def feed(self, block: Any) -> list[bytes]:
        if isinstance(block, PCM):
            self.frames_in += len(block) // self.frame_bytes
            if self.passthrough:
                return self._cut(block)
            import numpy as np
            block = np.frombuffer(block, dtype="<i2")
            if self.channels > 1:
                block = block.reshape(-1, self.channels)
        else:
            self.frames_in += int(block.shape[0])
        return self._feed_array(block)

    def _cut(self, pcm: Any) -> list[bytes]:
        buf, size = self._pending, self.chunk_bytes
        buf += pcm
        if len(buf) < size:
            return []
        cut = len(buf) // size * size
        chunks = [bytes(buf[i: i + size]) for i in range(0, cut, size)]
        del buf[:cut]
        self._last = chunks[-1]
        return chunks

    def _feed_array(self, block: npt.NDArray[Any]) -> list[bytes]:
        if self._resampler is None:
            from voicecli.audio.polyphase import PolyphaseResampler
            from voicecli.audio.resample import FrameChunker
            self._resampler = PolyphaseResampler(self.in_rate, PROTOCOL_RATE, self.channels)
            self._chunker = FrameChunker(PROTOCOL_RATE * self.chunk_ms // 1000)
        x = self._resampler.process(block)
        if self.processor is not None:
            x = self.processor(x)
        if x.size:
            self._last = x
        if x.shape[0] == self._chunker.chunk_frames and not self._chunker.pending_frames:
            chunks = [x]                   # one block, one chunk (the usual case): nothing to re-cut
        else:
            chunks = self._chunker.push(x)
        return [to_pcm16(chunk).astype("<i2", copy=False).tobytes() for chunk in chunks]

    def measure_level(self) -> float:
        """Level of the latest block (dBFS RMS; also sets ``peak``). Computed on demand, ~10 times a
        second for the meter, not for every block."""
        x = self._last
        if isinstance(x, bytes):
            if x:
                self.level_db, self.peak = pcm16_level(x)
        elif x.size:
            import numpy as np
            self.level_db = level_db(x)
            self.peak = float(np.max(np.abs(x)))
        return self.level_db

    @property
    def chunk_bytes(self) -> int:
        return PROTOCOL_RATE * self.chunk_ms // 1000 * SAMPLE_BYTES


class PlaybackPipeline:
    """``reply.audio`` in, device-rate int16 into the jitter buffer.

    Contract: :meth:`push` every non-stale ``reply.audio`` in order; :meth:`end` at the reply's
    ``reply.done`` (pushes the resampler tail, then ``mark_end``); :meth:`interrupt` on barge-in
    (drops what is queued for that reply within one device block and gates its late audio)."""

    def __init__(self, buffer: JitterBuffer, device_rate: int) -> None:
        self.buffer = buffer
        self.device_rate = device_rate
        self.resampler: PolyphaseResampler | None = None   # none at the wire rate: bytes go straight in
        if device_rate != PROTOCOL_RATE:
            from voicecli.audio.polyphase import PolyphaseResampler
            self.resampler = PolyphaseResampler(PROTOCOL_RATE, device_rate)
        self.reply_id: str | None = None      # the reply the resampler stream belongs to
        self.received_frames: dict[str, int] = {}   # 24 kHz frames received per reply

    def push(self, pcm: bytes, reply_id: str) -> None:
        if self.buffer.is_gated(reply_id):
            return
        if reply_id != self.reply_id:
            self._finish_stream()
            self.reply_id = reply_id
        self.received_frames[reply_id] = self.received_frames.get(reply_id, 0) + len(pcm) // 2
        if len(self.received_frames) > 32:
            self.received_frames.pop(next(iter(self.received_frames)))
        if self.resampler is None:
            self.buffer.push(pcm, reply_id)
            return
        from voicecli.audio.resample import pcm16_to_float
        out = self.resampler.process(pcm16_to_float(pcm))
        if out.size:
            self.buffer.push(to_pcm16(out), reply_id)

    def end(self, reply_id: str) -> None:
        if reply_id == self.reply_id:
            self._finish_stream()
        self.buffer.mark_end(reply_id)

    def interrupt(self, reply_id: str) -> int:
        """Flush ``reply_id`` from the buffer and gate it; returns device frames dropped."""
        if reply_id == self.reply_id:
            if self.resampler is not None:
                self.resampler.reset()
            self.reply_id = None
        return self.buffer.interrupt(reply_id)

    def _finish_stream(self) -> None:
        if self.reply_id is None:
            return
        if self.resampler is None:
            self.reply_id = None
            return
        tail = self.resampler.flush()
        if tail.size and not self.buffer.is_gated(self.reply_id):
            self.buffer.push(to_pcm16(tail), self.reply_id)
        self.reply_id = None
