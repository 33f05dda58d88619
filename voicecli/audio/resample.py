"""Sample conversions and fixed-size framing (design.md principle 6: DSP is pure and stateful).

:func:`to_mono_float`, :func:`float_to_pcm16` and :func:`pcm16_to_float` convert between int16/PCM16
and float32; :class:`FrameChunker` re-cuts variable-size resampler output (the live path's
:class:`~voicecli.audio.polyphase.PolyphaseResampler`) into exact ``input.audio`` chunks. Resampling
itself lives in :mod:`voicecli.audio.polyphase` (live) and :mod:`voicecli.audio.files` (one-shot soxr).

No sounddevice, no asyncio: these objects are called from the capture glue on the event loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I16 = npt.NDArray[np.int16]


def to_mono_float(block: npt.NDArray[Any]) -> F32:
    """int16 or float32 ``(frames,)`` / ``(frames, channels)`` -> float32 mono in [-1, 1].

    int16 is scaled by 1/32768; multichannel input is averaged (downmix happens before resampling).
    """
    arr = np.asarray(block)
    if arr.ndim == 2 and arr.shape[1] == 1:     # mono device blocks: a view, no averaging (issue 10)
        arr = arr[:, 0]
    if arr.ndim == 2:
        if arr.dtype == np.int16:
            mono = arr.mean(axis=1, dtype=np.float32) / np.float32(32768.0)
        else:
            mono = arr.astype(np.float32, copy=False).mean(axis=1, dtype=np.float32)
        return np.ascontiguousarray(mono, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"expected shape (frames,) or (frames, channels), got {arr.shape}")
    if arr.dtype == np.int16:     # one ufunc, no int16 -> float32 temporary (x * 2**-15 is exact)
        out: F32 = np.multiply(arr, np.float32(1 / 32768), dtype=np.float32)
        return out
    return np.ascontiguousarray(arr, dtype=np.float32)


def float_to_pcm16(x: npt.NDArray[Any]) -> bytes:
    """float samples -> PCM16 little-endian bytes: scale by 32768, round, clip to [-32768, 32767].

    That is, the float range [-1, 1) maps onto the full int16 range. Using the same 32768 as
    :func:`pcm16_to_float` (and libsndfile) makes int16 -> float -> int16 lossless, which a
    32767 scale would not be (it shrinks every sample by 1/32768 and rounds some by one step).
    """
    scaled = np.rint(np.asarray(x, dtype=np.float32) * np.float32(32768.0))
    out: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype("<i2")
    return out.tobytes()


def pcm16_to_float(b: bytes) -> F32:
    """PCM16 little-endian bytes -> float32 in [-1, 1) (divides by 32768). A trailing odd byte is ignored."""
    n = len(b) // 2
    return np.frombuffer(b, dtype="<i2", count=n).astype(np.float32) / np.float32(32768.0)


class FrameChunker:
    """Re-cut variable-size blocks into exact ``chunk_frames``-sized chunks.

    :meth:`push` returns every complete chunk now available (in order); the remainder (< ``chunk_frames``
    frames) is kept. :meth:`drain` returns and clears the remainder. Memory held is at most one partial
    chunk between calls. Output dtype is the dtype of the first pushed array (int16 or float32);
    later arrays are cast to it.
    """

    def __init__(self, chunk_frames: int) -> None:
        if chunk_frames <= 0:
            raise ValueError("chunk_frames must be positive")
        self.chunk_frames = chunk_frames
        self._dtype: np.dtype[Any] | None = None
        self._pending: npt.NDArray[Any] = np.zeros(0, dtype=np.float32)

    @property
    def pending_frames(self) -> int:
        """Frames held back waiting for a full chunk."""
        return int(self._pending.shape[0])

    def push(self, x: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        """Add ``x`` (1-D) and return the complete chunks, each a fresh array of ``chunk_frames``."""
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise ValueError("FrameChunker takes mono 1-D arrays")
        if self._dtype is None:
            self._dtype = arr.dtype
            self._pending = self._pending.astype(arr.dtype)
        if arr.size == 0:
            return []
        data = np.concatenate((self._pending, arr.astype(self._dtype, copy=False)))
        n = data.shape[0] // self.chunk_frames
        cut = n * self.chunk_frames
        chunks = [data[i : i + self.chunk_frames].copy() for i in range(0, cut, self.chunk_frames)]
        self._pending = data[cut:].copy()
        return chunks

    def drain(self) -> npt.NDArray[Any]:
        """Return (and forget) the partial remainder; may be empty."""
        rest = self._pending
        self._pending = np.zeros(0, dtype=rest.dtype)
        return rest
