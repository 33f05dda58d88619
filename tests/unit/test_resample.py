"""voicecli.audio.resample: sample conversions, downmix, framing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from voicecli.audio.resample import (
    FrameChunker,
    float_to_pcm16,
    pcm16_to_float,
    to_mono_float,
)

OUT = 24000


def tone(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def chunks(x: np.ndarray, sizes: list[int]) -> Iterator[np.ndarray]:
    """Cut x into consecutive pieces cycling through sizes."""
    i = k = 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        yield x[i : i + n]
        i += n
        k += 1


def test_to_mono_float_scales_int16_and_averages_channels() -> None:
    x = tone(48000, 0.02)
    as_i16 = np.rint(x * 32768).astype(np.int16)
    np.testing.assert_allclose(to_mono_float(as_i16), x, atol=1e-4)
    left, right = tone(44100, 0.02, freq=500), tone(44100, 0.02, freq=3000, amp=0.25)
    np.testing.assert_allclose(to_mono_float(np.stack([left, right], axis=1)), (left + right) / 2, atol=1e-7)
    assert np.max(np.abs(to_mono_float(np.stack([left, -left], axis=1)))) < 1e-6
    i16 = np.array([[0, 0], [16384, 16384], [-32768, -32768]], dtype=np.int16)
    np.testing.assert_array_equal(to_mono_float(i16), np.array([0, 0.5, -1.0], dtype=np.float32))


def test_pcm16_conversions() -> None:
    b = float_to_pcm16(np.array([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, np.nextafter(1, 0)], dtype=np.float32))
    assert np.frombuffer(b, "<i2").tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 32767]
    assert b[2:4] == (16384).to_bytes(2, "little", signed=True)
    f = pcm16_to_float(np.array([0, 16384, -32768], dtype="<i2").tobytes() + b"\x07")
    assert f.dtype == np.float32 and f.tolist() == [0.0, 0.5, -1.0]
    x = tone(OUT, 0.01)
    np.testing.assert_allclose(pcm16_to_float(float_to_pcm16(x)), x, atol=1 / 65536)
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(every)) == every  # lossless for all int16 values


def test_to_mono_float_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        to_mono_float(np.zeros((2, 2, 2), dtype=np.float32))


def test_frame_chunker_exact_chunks_in_order() -> None:
    c = FrameChunker(480)
    x = np.arange(5000, dtype=np.float32)
    out: list[np.ndarray] = []
    for piece in chunks(x, [0, 830, 0, 830, 7, 1]):
        got = c.push(piece)
        assert all(len(g) == 480 for g in got)
        assert c.pending_frames < 480
        out.extend(got)
    rest = c.drain()
    assert len(rest) == 5000 % 480
    np.testing.assert_array_equal(np.concatenate(out + [rest]), x)
    assert c.pending_frames == 0 and len(c.drain()) == 0


def test_frame_chunker_keeps_first_dtype_and_does_not_alias() -> None:
    c = FrameChunker(4)
    src = np.array([1, 2, 3, 4, 5], dtype=np.int16)
    (chunk,) = c.push(src)
    src[:] = 0
    assert chunk.dtype == np.int16 and chunk.tolist() == [1, 2, 3, 4]
    assert c.drain().tolist() == [5]
    with pytest.raises(ValueError):
        c.push(np.zeros((4, 2), dtype=np.int16))
    with pytest.raises(ValueError):
        FrameChunker(0)
