"""voicecli.audio.jitter: synthetic int16 signals, no device."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from voicecli.audio.jitter import JitterBuffer

RATE = 24000  # 1 ms = 24 frames


def ramp(start: int, n: int) -> np.ndarray:
    """Distinct non-zero samples 1..30000 cycling, so zero-fill is recognisable."""
    return ((np.arange(start, start + n) % 30000) + 1).astype(np.int16)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_prebuffer_holds_then_releases_exact_samples() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=80)  # 1920 frames
    jb.push(ramp(0, 1000), "r1")
    assert not jb.pull(480).any() and jb.priming and not jb.audible
    jb.push(ramp(1000, 919), "r1")  # 1919 < 1920: still priming
    assert jb.pull_into(np.empty(480, dtype=np.int16)) == 0
    jb.push(ramp(1919, 1), "r1")
    out = jb.pull(480)
    np.testing.assert_array_equal(out, ramp(0, 480))
    assert jb.audible and jb.current_reply == "r1" and not jb.priming
    assert jb.depth_ms == pytest.approx((1920 - 480) / 24)
    s = jb.stats
    assert s.underruns == 0 and s.played_frames == 480


def test_odd_pull_sizes_keep_continuity_across_segments() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    pos = 0
    for n in (1, 479, 3, 960, 17, 2000):
        jb.push(ramp(pos, n), "r")
        pos += n
    got = np.concatenate([jb.pull(n) for n in (7, 1, 480, 333, 1024, 1615)])
    np.testing.assert_array_equal(got, ramp(0, pos))


def test_bytes_input_and_sizes() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(np.array([1, -2, 300], dtype="<i2").tobytes() + b"\x09", "r")  # odd byte ignored
    assert jb.pull(4).tolist() == [1, -2, 300, 0]
    with pytest.raises(TypeError):
        jb.push(np.zeros(4, dtype=np.float32))


def test_underrun_counted_once_per_dry_out_and_zero_filled() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=10)  # 240 frames
    jb.push(ramp(0, 600), "r")
    out = jb.pull(480)
    np.testing.assert_array_equal(out, ramp(0, 480))
    out = jb.pull(480)  # 120 real, 360 zero: dry-out mid-reply
    np.testing.assert_array_equal(out[:120], ramp(480, 120))
    assert not out[120:].any()
    assert jb.priming
    jb.pull(480)
    jb.pull(480)  # still dry: same dry-out, not a new one
    jb.push(ramp(600, 100), "r")  # the reply goes on: confirmed underrun
    s = jb.stats
    assert (s.underruns, s.underrun_frames) == (1, 360 + 960)
    jb.pull(480)  # 100 < 240 prebuffer: silence while re-priming, counted too
    assert jb.stats.underrun_frames == 360 + 960 + 480
    jb.push(ramp(700, 1000), "r")
    np.testing.assert_array_equal(jb.pull(480), ramp(600, 480))
    # a second dry-out is a second event
    jb.pull(480)
    jb.pull(480)  # 1100 - 480 - 480 = 140 real, then dry
    jb.push(ramp(1700, 10), "r")
    assert jb.stats.underruns == 2
    assert jb.stats.played_frames == 1700


def test_mark_end_plays_short_reply_without_underrun() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=80)
    jb.push(ramp(0, 300), "short")  # 12.5 ms, far below the prebuffer
    assert not jb.pull(480).any()
    jb.mark_end("short")
    out = jb.pull(480)
    np.testing.assert_array_equal(out[:300], ramp(0, 300))
    assert not out[300:].any()
    jb.pull(480)
    jb.push(ramp(0, 2000), "next")  # next reply: no underrun was pending
    assert jb.stats.underruns == 0 and jb.stats.underrun_frames == 0


def test_reply_done_arriving_after_the_buffer_ran_dry_is_not_an_underrun() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=10)
    jb.push(ramp(0, 500), "a")
    jb.pull(480)
    jb.pull(480)  # dry before reply.done arrived
    jb.mark_end("a")
    jb.push(ramp(0, 500), "b")
    assert jb.stats.underruns == 0


def test_overflow_drops_oldest_and_bounds_depth() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0, max_ms=100)  # 2400 frames
    jb.push(ramp(0, 2000), "r")
    jb.push(ramp(2000, 1000), "r")  # 600 oldest frames must go
    assert jb.depth_frames == 2400
    assert jb.stats.overflow_frames == 600
    np.testing.assert_array_equal(jb.pull(2400), ramp(600, 2400))
    jb.push(ramp(0, 5000), "r")  # one push larger than the whole buffer keeps its newest part
    assert jb.depth_frames == 2400 and jb.stats.overflow_frames == 600 + 2600
    np.testing.assert_array_equal(jb.pull(2400), ramp(2600, 2400))


def test_flush_silences_next_pull() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(ramp(0, 4800), "r")
    jb.pull(480)
    assert jb.flush() == 4320
    assert jb.depth_ms == 0
    assert jb.pull_into(np.ones(480, dtype=np.int16)) == 0
    assert not jb.audible
    s = jb.stats
    assert s.flushed_frames == 4320 and s.underruns == 0
    jb.push(ramp(0, 10), "r2")
    jb.mark_end("r2")
    np.testing.assert_array_equal(jb.pull(10), ramp(0, 10))


def test_interrupt_drops_only_that_reply_and_gates_it() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(ramp(0, 500), "a")
    jb.push(ramp(1000, 300), "b")
    jb.push(ramp(500, 500), "a")
    jb.mark_end("b")
    jb.pull(100)
    assert jb.interrupt("a") == 900
    assert jb.is_gated("a") and not jb.is_gated("b")
    jb.push(ramp(0, 777), "a")  # late audio of the interrupted reply
    s = jb.stats
    assert s.dropped_gated_frames == 777 and s.flushed_frames == 900
    out = jb.pull(480)
    np.testing.assert_array_equal(out[:300], ramp(1000, 300))
    assert not out[300:].any()
    assert jb.current_reply == "b"
    jb.mark_end("a")  # ignored for a gated id
    assert jb.depth_frames == 0 and jb.stats.underruns == 0


def test_gate_set_is_bounded() -> None:
    jb = JitterBuffer(RATE)
    for i in range(100):
        jb.interrupt(f"r{i}")
    assert not jb.is_gated("r0") and jb.is_gated("r99") and jb.is_gated("r36")


def test_played_ms_and_first_played_at() -> None:
    clock = FakeClock()
    jb = JitterBuffer(RATE, prebuffer_ms=0, clock=clock)
    jb.push(ramp(0, 480), "a")
    jb.push(ramp(0, 960), "b")
    assert jb.first_played_at("a") is None and jb.played_ms("a") == 0.0
    jb.pull(240)
    assert jb.first_played_at("a") == 100.0 and jb.played_ms("a") == 10.0
    clock.t = 101.0
    jb.pull(480)  # 240 of a, 240 of b
    assert jb.played_ms("a") == 20.0 and jb.played_ms("b") == 10.0
    assert jb.first_played_at("a") == 100.0 and jb.first_played_at("b") == 101.0
    assert jb.current_reply == "b"
    jb.flush()
    for i in range(40):  # tracking is bounded
        jb.push(ramp(0, 24), f"x{i}")
        jb.mark_end(f"x{i}")
        jb.pull(24)
    assert jb.first_played_at("a") is None and jb.played_ms("x39") == 1.0


def test_real_clock_default() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(ramp(0, 10), "a")
    before = time.monotonic()
    jb.pull(10)
    t = jb.first_played_at("a")
    assert t is not None and before <= t <= time.monotonic()


def test_pull_into_multichannel_output() -> None:
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(ramp(0, 3), "a")
    out = np.full((5, 2), 99, dtype=np.int16)
    assert jb.pull_into(out) == 3
    assert out.tolist() == [[1, 1], [2, 2], [3, 3], [0, 0], [0, 0]]


def test_threaded_producer_consumer_stream_is_exact() -> None:
    total = 24000 * 3
    signal = ramp(0, total)
    jb = JitterBuffer(RATE, prebuffer_ms=40, max_ms=60_000)
    out: list[np.ndarray] = []
    done = threading.Event()

    def producer() -> None:
        rnd = random.Random(1234)
        pos = 0
        while pos < total:
            n = min(rnd.randint(1, 2000), total - pos)
            jb.push(signal[pos : pos + n], "r")
            pos += n
            if rnd.random() < 0.3:
                time.sleep(rnd.random() * 0.002)
        jb.mark_end("r")
        done.set()

    def consumer() -> None:
        block = np.empty(480, dtype=np.int16)
        deadline = time.monotonic() + 30
        played = 0
        while played < total and time.monotonic() < deadline:
            played += jb.pull_into(block)
            out.append(block.copy())
            if played < total and jb.depth_frames == 0:
                time.sleep(0.0005)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert done.is_set()
    stream = np.concatenate(out)
    real = stream[stream != 0]
    np.testing.assert_array_equal(real, signal)  # no loss, no reordering, only zero-fill added
    s = jb.stats
    assert s.played_frames == total and s.overflow_frames == 0
    assert s.underrun_frames <= len(stream) - total
