"""The live audio paths without devices: capture (native rate -> 24 kHz chunks) and playback
(24 kHz reply audio -> device rate -> jitter buffer, per reply)."""

from __future__ import annotations

import numpy as np
import pytest

from voicecli.audio.jitter import JitterBuffer
from voicecli.audio.pipeline import CapturePipeline, PlaybackPipeline, level_db, to_pcm16


def _tone(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


@pytest.mark.parametrize("chunk_ms", [20, 50])
def test_capture_stereo_44k_blocks_become_exact_24k_chunks(chunk_ms: int) -> None:
    cap = CapturePipeline(44100, 2, chunk_ms)
    mono = _tone(44100, 1.0)
    stereo = np.stack([mono, mono], axis=1)
    chunks = [c for block in np.array_split(stereo, 100) for c in cap.feed(block)]
    assert {len(c) for c in chunks} == {24000 * chunk_ms // 1000 * 2}
    assert len(chunks) == 1000 // chunk_ms - 1 or len(chunks) == 1000 // chunk_ms
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2") / 32768.0
    assert abs(np.max(np.abs(pcm[1000:])) - 0.5) < 0.01
    # a sine's RMS is 3.01 dB below its peak
    assert abs(cap.measure_level() - level_db(np.float32(0.5) * np.ones(8, np.float32)) + 3.01) < 0.2


def test_capture_rejects_chunks_outside_the_protocol_range() -> None:
    with pytest.raises(ValueError):
        CapturePipeline(48000, 1, 10)


def test_level_db_and_pcm16_conversion() -> None:
    assert level_db(np.zeros(100, np.float32)) == -100.0
    assert abs(level_db(np.full(10, 0.1, np.float32)) + 20.0) < 1e-3
    assert to_pcm16(np.array([-1.5, -1.0, 0.0, 0.99999, 2.0], np.float32)).tolist() == [-32768, -32768, 0,
                                                                                          32767, 32767]


def _pcm24(seconds: float) -> bytes:
    return to_pcm16(_tone(24000, seconds)).astype("<i2").tobytes()


def test_playback_resamples_a_reply_whole_into_the_buffer() -> None:
    buf = JitterBuffer(48000, prebuffer_ms=0)
    play = PlaybackPipeline(buf, 48000)
    for _ in range(10):
        play.push(_pcm24(0.04), "r1")
    play.end("r1")
    assert play.received_frames["r1"] == 9600
    assert abs(buf.depth_frames - 19200) <= 100         # 0.4 s at 48 kHz, plus the filter tail (1.6 ms)
    out = buf.pull(buf.depth_frames + 100)
    assert buf.stats.underruns == 0 and np.max(np.abs(out[2000:18000])) > 16000


def test_interrupt_flushes_and_gates_late_audio_but_not_the_next_reply() -> None:
    buf = JitterBuffer(44100, prebuffer_ms=0)
    play = PlaybackPipeline(buf, 44100)
    play.push(_pcm24(0.5), "r1")
    dropped = play.interrupt("r1")
    assert dropped > 20000 and buf.depth_frames == 0
    play.push(_pcm24(0.1), "r1")                        # late audio of the interrupted reply
    assert buf.depth_frames == 0 and buf.pull(441).max() == 0
    play.push(_pcm24(0.1), "r2")
    assert 4300 < buf.depth_frames < 4500


def test_a_new_reply_flushes_the_previous_replys_tail_first() -> None:
    buf = JitterBuffer(48000, prebuffer_ms=0)
    play = PlaybackPipeline(buf, 48000)
    play.push(_pcm24(0.1), "a")
    before = buf.depth_frames
    play.push(_pcm24(0.1), "b")
    assert buf.depth_frames > before + 4800            # a's tail went in before b's audio


def test_a_24k_mono_mic_with_a_processor_gives_the_same_chunks_from_bytes_and_from_arrays() -> None:
    """The echo canceller's usual input (issue 10, Cost): PCM16 bytes stay 1-D (no reshape) and a
    block that is one chunk is not re-cut; (frames, 1) arrays as a numpy stream gives them. Same
    chunks, any block sizes."""
    rng = np.random.default_rng(3)
    held: list[np.ndarray] = []

    def canceller_like(x: np.ndarray) -> np.ndarray:    # returns whole 10 ms frames, holds the rest
        held.append(x)
        data = np.concatenate(held)
        n = data.shape[0] // 240 * 240
        held[:] = [data[n:]]
        return data[:n] * np.float32(0.5)

    sizes = [480, 480, 100, 860, 480, 7, 953, 480, 480, 1]
    blocks = [rng.integers(-32768, 32767, n, dtype=np.int16) for n in sizes]
    fast = CapturePipeline(24000, 1, 20, processor=canceller_like)
    got = [c for b in blocks for c in fast.feed(b.tobytes())]
    held.clear()
    general = CapturePipeline(24000, 1, 20, processor=canceller_like)
    want = [c for b in blocks for c in general.feed(b.reshape(-1, 1))]
    assert got == want and len(got) == sum(sizes) // 480
    assert fast.frames_in == general.frames_in == sum(sizes)
