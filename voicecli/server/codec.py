"""Audio encodings of the protocol (protocol.md 5.9) for the local server.

Engines work on PCM16 LE mono 24 kHz. ``audio/pcm`` passes through; ``audio/pcmu`` (G.711 mu-law)
and ``audio/pcma`` (G.711 A-law) at 8 kHz are decoded and upsampled for input, and downsampled and
encoded for output. Input upsampling is a sample-and-hold x3: the engines only look at energy and
duration, so its images above 4 kHz do not matter; output uses soxr on the whole reply at once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.protocol.constants import BYTES_PER_MS, RATE

PCM_RATE = RATE  # the engines' rate (protocol.md 3.2)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_decode_table()
_ALAW = _alaw_decode_table()


def _ulaw_encode(x: npt.NDArray[np.int16]) -> bytes:
    s = x.astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def _alaw_encode(x: npt.NDArray[np.int16]) -> bytes:
    s = x.astype(np.int32)
    sign = np.where(s >= 0, 0x80, 0)
    mag = np.minimum(np.abs(s), 32767) >> 3  # 13-bit magnitude
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return bytes(((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes())


def bytes_per_ms(encoding: str) -> float:
    """Bytes per millisecond of audio in ``encoding`` (8 for G.711 at 8 kHz, 48 for PCM16 24 kHz)."""
    return 8.0 if encoding in ("audio/pcmu", "audio/pcma") else float(BYTES_PER_MS)


def decode_input(raw: bytes, encoding: str) -> bytes:
    """Wire input audio -> PCM16 LE mono 24 kHz. PCM with an odd byte count loses the last byte."""
    if encoding == "audio/pcm":
        return raw[: len(raw) - len(raw) % 2]
    table = _ULAW if encoding == "audio/pcmu" else _ALAW
    pcm8k = table[np.frombuffer(raw, dtype=np.uint8)]
    return np.repeat(pcm8k, 3).astype("<i2").tobytes()


def encode_output(pcm: bytes, encoding: str, volume: float | None = None) -> bytes:
    """PCM16 24 kHz speech -> wire output audio, scaled by ``volume`` (0-100; None = native)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if volume is not None and volume != 100:
        samples = np.clip(samples.astype(np.float32) * (float(volume) / 100.0), -32768, 32767)
        samples = np.rint(samples).astype(np.int16)
    if encoding == "audio/pcm":
        return samples.astype("<i2").tobytes()
    low = soxr.resample(samples.astype(np.float32) / 32768.0, PCM_RATE, 8000, quality="HQ")
    low16 = np.rint(np.clip(low, -1.0, 1.0) * 32767).astype(np.int16)
    return _ulaw_encode(low16) if encoding == "audio/pcmu" else _alaw_encode(low16)
