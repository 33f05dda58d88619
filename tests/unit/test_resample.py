"""voicecli.audio.resample: streaming equals one-shot, no edge clicks, downmix, framing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import soxr

from voicecli.audio.resample import (
    FrameChunker,
    StreamResampler,
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


def stream(r: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    outs = [r.process(c) for c in chunks(x, sizes)]
    outs.append(r.flush())
    return np.concatenate(outs)


RATES = [44100, 48000, 16000]


def chunking(rate: int, name: str) -> list[int]:
    return {"10ms": [rate // 100], "20ms": [rate // 50], "odd": [1, 37, 441, 3, 1000, 127]}[name]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", ["10ms", "20ms", "odd"])
def test_streaming_equals_one_shot(rate: int, name: str) -> None:
    x = tone(rate, 0.7, freq=1234.5)
    expected = soxr.resample(x, rate, OUT, quality="HQ")
    got = stream(StreamResampler(rate, OUT), x, chunking(rate, name))
    assert got.dtype == np.float32
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("rate", RATES)
def test_no_clicks_sine_in_sine_out(rate: int) -> None:
    x = tone(rate, 1.0)
    sizes = chunking(rate, "odd")
    got = stream(StreamResampler(rate, OUT), x, sizes)
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(got)) / OUT)
    trim = slice(OUT // 20, len(got) - OUT // 20)
    err = got[trim] - ideal[trim]
    snr = 10 * np.log10(np.sum(ideal[trim] ** 2) / np.sum(err**2))
    assert snr > 80
    # No discontinuity where the input chunks meet: the second difference there is no larger than
    # the largest second difference of the whole (smooth) output.
    d2 = np.abs(np.diff(got[trim], 2))
    bound = np.abs(np.diff(ideal[trim], 2)).max() * 1.001
    assert d2.max() <= bound


def test_bursty_output_sizes_documented() -> None:
    r = StreamResampler(48000, OUT)
    sizes = [len(r.process(np.zeros(960, dtype=np.float32))) for _ in range(6)]
    assert 0 in sizes  # HQ output is bursty: callers must buffer
    assert sum(sizes) + len(r.flush()) == 6 * 480


def test_int16_input_is_scaled() -> None:
    x = tone(48000, 0.2)
    as_i16 = np.rint(x * 32768).astype(np.int16)
    a = stream(StreamResampler(48000, OUT), x, [960])
    b = stream(StreamResampler(48000, OUT), as_i16, [960])
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_stereo_is_downmixed_before_resampling() -> None:
    left = tone(44100, 0.5, freq=500)
    right = tone(44100, 0.5, freq=3000, amp=0.25)
    stereo = np.stack([left, right], axis=1)
    expected = soxr.resample((left + right) / 2, 44100, OUT)
    got = stream(StreamResampler(44100, OUT, channels=2), stereo, [441, 882, 17])
    assert got.ndim == 1
    np.testing.assert_allclose(got, expected, atol=1e-4)
    cancel = stream(StreamResampler(44100, OUT, channels=2), np.stack([left, -left], axis=1), [441])
    assert np.max(np.abs(cancel)) < 1e-6


def test_passthrough_when_rates_equal() -> None:
    r = StreamResampler(OUT, OUT)
    assert r.passthrough
    x = tone(OUT, 0.05)
    np.testing.assert_array_equal(r.process(x), x)
    assert len(r.flush()) == 0
    i16 = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_array_equal(r.process(i16), np.array([0, 0.5, -1.0], dtype=np.float32))


def test_flush_resets_for_a_new_stream_and_reset_discards() -> None:
    x = tone(16000, 0.3)
    r = StreamResampler(16000, OUT)
    first = stream(r, x, [320])
    second = stream(r, x, [320])  # same object after flush(): same result
    np.testing.assert_array_equal(first, second)
    r.process(tone(16000, 0.1, freq=3000))  # half-fed garbage...
    r.reset()  # ...discarded
    np.testing.assert_allclose(stream(r, x, [320]), first, atol=1e-6)


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


def test_resampler_plus_chunker_gives_steady_20ms_messages() -> None:
    r = StreamResampler(48000, OUT)
    c = FrameChunker(480)
    sent: list[np.ndarray] = []
    x = tone(48000, 1.0)
    for piece in chunks(x, [960]):
        sent.extend(c.push(r.process(piece)))
    sent.extend(c.push(r.flush()))
    assert all(len(s) == 480 for s in sent)
    total = sum(len(s) for s in sent) + len(c.drain())
    assert total == OUT
