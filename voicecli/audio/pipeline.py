"""The two live audio paths of ``voicecli chat``, as plain objects without devices or asyncio
(design.md principle 6), so they are unit-tested with numpy signals.

* :class:`CapturePipeline`: device blocks (native rate, any channel count, float32) -> downmix ->
  24 kHz (low-latency polyphase resampler) -> exact ``chunk_ms`` PCM16 chunks for ``input.audio``,
  plus the input level for the meter.
* :class:`PlaybackPipeline`: ``reply.audio`` PCM16 at 24 kHz -> device rate -> the
  :class:`~voicecli.audio.jitter.JitterBuffer`, one resampler stream per reply (a reply's tail is
  flushed at its end; an interrupted reply's filter state is discarded).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from voicecli.audio.jitter import JitterBuffer
from voicecli.audio.polyphase import PolyphaseResampler
from voicecli.audio.resample import FrameChunker, pcm16_to_float
from voicecli.protocol.constants import RATE, SAMPLE_BYTES

F32 = npt.NDArray[np.float32]
PROTOCOL_RATE = RATE   # the wire rate (protocol.md 3.2)
SILENT_DB = -100.0


def to_pcm16(x: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """float [-1, 1) -> int16 (x 32768, rounded, clipped), as ``float_to_pcm16`` but an array.
    One temporary, in-place ufuncs (no ``np.clip`` wrapper): it runs for every live chunk."""
    scaled = np.multiply(x, np.float32(32768.0), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.minimum(scaled, np.float32(32767.0), out=scaled)
    np.maximum(scaled, np.float32(-32768.0), out=scaled)
    out: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return out


def level_db(x: npt.NDArray[Any]) -> float:
    """RMS level of float samples in dBFS (``SILENT_DB`` for digital silence)."""
    if x.size == 0:
        return SILENT_DB
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    rms = math.sqrt(float(np.dot(flat, flat)) / flat.size)   # one BLAS call, no temporaries (10 Hz meter)
    return SILENT_DB if rms <= 1e-5 else max(SILENT_DB, 20.0 * math.log10(rms))


class CapturePipeline:
    """Mic blocks in, ``input.audio`` chunks out.

    Contract: :meth:`feed` each device block in order; it returns the PCM16 LE chunks (exactly
    ``chunk_ms`` each) completed by this block, oldest first. :meth:`measure_level` gives the RMS
    level of the latest block (and sets ``peak``, its absolute peak 0..1) for the meter.
    """

    def __init__(self, in_rate: int, channels: int, chunk_ms: int = 20,
                 processor: Callable[[F32], F32] | None = None) -> None:
        if not 20 <= chunk_ms <= 100:
            raise ValueError("chunk_ms must be 20-100 (protocol.md 3.2)")
        self.in_rate = in_rate
        self.chunk_ms = chunk_ms
        self.resampler = PolyphaseResampler(in_rate, PROTOCOL_RATE, channels)
        self.chunker = FrameChunker(PROTOCOL_RATE * chunk_ms // 1000)
        self.processor = processor          # e.g. the echo canceller, on the 24 kHz signal
        self.level_db = SILENT_DB
        self.peak = 0.0
        self.frames_in = 0
        self._last = np.zeros(0, dtype=np.float32)

    def feed(self, block: npt.NDArray[Any]) -> list[bytes]:
        x = self.resampler.process(block)
        if self.processor is not None:
            x = self.processor(x)
        self.frames_in += int(block.shape[0])
        if x.size:
            self._last = x
        return [to_pcm16(chunk).astype("<i2", copy=False).tobytes() for chunk in self.chunker.push(x)]

    def measure_level(self) -> float:
        """Level of the latest resampled block (dBFS RMS; also sets ``peak``). Computed on demand,
        ~10 times a second for the meter, not for every block."""
        x = self._last
        if x.size:
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
            self.resampler.reset()
            self.reply_id = None
        return self.buffer.interrupt(reply_id)

    def _finish_stream(self) -> None:
        if self.reply_id is None:
            return
        tail = self.resampler.flush()
        if tail.size and not self.buffer.is_gated(self.reply_id):
            self.buffer.push(to_pcm16(tail), self.reply_id)
        self.reply_id = None
