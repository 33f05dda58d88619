"""voicecli.audio.aec: the far-end ring (lock-free reference) and the echo canceller on synthetic
signals: the reference is aligned by DAC/ADC times, survives clock drift, and removes the echo."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import EXAMPLES
from voicecli.audio import aec
from voicecli.audio.aec import FRAME, EchoCanceller, FarEndRing
from voicecli.cli_audio import echo_mode
from voicecli.errors import UsageError

RATE = 24000
TALKER = sf.read(EXAMPLES / "thanks.wav", dtype="float32")[0]


def test_ring_keeps_the_latest_frames_and_their_dac_time() -> None:
    ring = FarEndRing(1000, seconds=0.1)          # 100 frames
    for i in range(25):
        ring.write(np.arange(i * 10, i * 10 + 10, dtype=np.int16).reshape(-1, 1), dac_time=1.0 + i * 0.01)
    assert ring.written == 250 and ring.anchor == (240, pytest.approx(1.24))
    out = np.zeros(20, dtype=np.int16)
    assert ring.read(200, 20, out) and list(out) == list(range(200, 220))
    assert ring.read(140, 20, out) and list(out[:10]) == [0] * 10 and list(out[10:]) == list(range(150, 160))
    assert ring.read(245, 10, out) and list(out[:5]) == list(range(245, 250)) and not out[5:10].any()
    assert ring.frame_at(1.25) == pytest.approx(250)


def test_a_dropped_device_queue_becomes_silence_in_the_reference() -> None:
    """A barge-in aborts the output stream: frames written for DAC times after the abort never play,
    so they must not be cancelled as echo; those before it did play and stay (also across the wrap)."""
    ring = FarEndRing(1000, seconds=0.1)          # 100 frames
    for i in range(13):                           # frames 0..129; the last block (120..129) at 1.12 s
        ring.write(np.full(10, i + 1, dtype=np.int16), dac_time=1.0 + i * 0.01)
    assert ring.drop_after(1.095) == 35           # 1.095 s is frame 95 (anchor 120 at 1.12 s)
    out = np.zeros(40, dtype=np.int16)
    assert ring.read(90, 40, out)
    assert list(out[:5]) == [10] * 5 and not out[5:].any()
    kept = np.zeros(50, dtype=np.int16)
    assert ring.read(40, 50, kept) and list(kept[::10]) == [5, 6, 7, 8, 9]
    assert ring.drop_after(2.0) == 0 and FarEndRing(1000).drop_after(1.0) == 0   # nothing later / no anchor
    ring.drop_after(0.0)                          # before everything the ring still holds: all of it
    assert ring.read(30, 100, np.zeros(100, dtype=np.int16)) and not ring.data.any()


def test_ring_takes_raw_output_buffers_bytes_memoryviews_and_interleaved_int16() -> None:
    """A RawOutputStream's callback hands over its buffer, not an array: bytes, a bytearray or a 1-D
    memoryview (format 'h' or 'B') of interleaved int16; the ring keeps the first channel."""
    mono = np.arange(-50, 50, dtype=np.int16)
    stereo = np.stack((mono, -mono), axis=1)                   # (frames, 2); interleaved in memory
    raw = stereo.tobytes()
    cases = [(mono, 1), (mono.tobytes(), 1), (bytearray(mono.tobytes()), 1), (memoryview(mono), 1),
             (memoryview(mono.tobytes()), 1), (memoryview(bytearray(mono.tobytes())).cast("h"), 1),
             (stereo, 2), (stereo, 1), (raw, 2), (memoryview(raw).cast("h"), 2), (stereo.reshape(-1), 2)]
    for block, channels in cases:
        ring = FarEndRing(1000, seconds=0.15)                  # 150 frames: the second write wraps
        ring.write(block, dac_time=2.0, channels=channels)
        ring.write(block, dac_time=2.1, channels=channels)
        assert ring.written == 200 and ring.anchor == (100, 2.1), (type(block), channels)
        out = np.zeros(100, dtype=np.int16)
        assert ring.read(100, 100, out) and np.array_equal(out, mono), (type(block), channels)
    with pytest.raises(ValueError):
        FarEndRing(1000).write(b"\x00\x01\x02", dac_time=0.0)     # not whole int16 samples


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    env = (np.abs(np.sin(np.arange(n) / RATE * 2.5)) > 0.3).astype(np.float32)
    return (rng.standard_normal(n).astype(np.float32) * 0.1 * env).astype(np.float32)


def _run(drift_ppm: float, seconds: float = 8.0) -> tuple[float, EchoCanceller]:
    """Play far-end audio through a simulated output stream and capture its echo (30 ms acoustic
    delay, -12 dB) with a mic whose sample clock runs ``drift_ppm`` fast (its samples are taken at
    real times k / (rate * (1 + drift))); DAC and ADC times are true times on the common clock.
    Returns the echo reduction (dB) over the last 3 s, and the canceller."""
    far = _speechlike(seconds + 1)
    ring = FarEndRing(RATE)
    canceller = EchoCanceller(ring, RATE)
    block, dac_lead, acoustic = 240, 0.015, 0.030
    mic_rate = RATE * (1 + drift_ppm * 1e-6)
    n_out = int(seconds * RATE) // block
    k = 0                                  # mic samples captured so far
    outs, ins = [], []
    for i in range(n_out):
        now = i * block / RATE
        ring.write((far[i * block:(i + 1) * block] * 32767).astype(np.int16), dac_time=now + dac_lead)
        # capture every mic sample whose real time has passed (minus 20 ms input latency)
        while (k + block) / mic_rate <= now + dac_lead - 0.02:
            t = (k + np.arange(block)) / mic_rate           # real capture times
            pos = np.maximum((t - acoustic) * RATE, 0.0)
            i0 = pos.astype(np.int64)
            frac = (pos - i0).astype(np.float32)
            near = (0.25 * (far[i0] * (1 - frac) + far[i0 + 1] * frac)).astype(np.float32)
            canceller.note_capture(k / mic_rate, block)
            outs.append(canceller.process(near))
            ins.append(near)
            k += block
    y = np.concatenate(outs)
    x = np.concatenate(ins)[: len(y)]
    tail = slice(len(y) - 3 * RATE, len(y))
    return 10 * np.log10(np.mean(y[tail] ** 2) / np.mean(x[tail] ** 2)), canceller


@pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")
def test_the_canceller_removes_an_aligned_echo_and_follows_drift() -> None:
    reduction, c = _run(drift_ppm=0)
    assert reduction < -30, reduction
    assert c.frames > 0 and c.realigned == 0 and len(c.process(np.zeros(FRAME - 1, np.float32))) == 0
    # 250 ppm (worse than two real sound cards) for 5 min: 75 ms of drift, so the reference moves
    reduction, c = _run(drift_ppm=250, seconds=300)
    assert reduction < -25, reduction     # followed by reading faster/slower, no jump needed
    assert c.realigned == 0


def test_echo_mode_defaults_and_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert echo_mode("off", None) == "off" and echo_mode(None, "half") == "half"
    assert echo_mode(None, "full") == "off"
    for name in ("livekit", "livekit.rtc"):      # the binding cannot be imported, as if uninstalled
        monkeypatch.setitem(sys.modules, name, None)
    assert not aec.available()
    assert echo_mode(None, None) == "half"    # no canceller installed: half duplex (issue 10)
    with pytest.raises(UsageError, match="not installed") as info:
        echo_mode("aec", None)
    assert "pip install 'voicecli[aec]'" in (info.value.hint or "")
    monkeypatch.undo()
    if aec.available():
        assert echo_mode(None, None) == "aec" and echo_mode("aec", None) == "aec"


def _talk_over(echo_gain: float | None, talk_at: float, seconds: float,
               echo_from: float = 0.0) -> tuple[np.ndarray, np.ndarray, EchoCanceller]:
    """The far end plays speech-like audio; from ``talk_at`` s a talker (examples/thanks.wav, looped)
    speaks into the mic; ``echo_gain``: the far end's echo in the mic (30 ms) from
    ``echo_from`` s on, or None (headphones: no echo path). Returns (mic in, canceller out, canceller)."""
    n = int(seconds * RATE)
    far = _speechlike(seconds, seed=3)
    mic = np.zeros(n, np.float32)
    t0 = int(talk_at * RATE)
    if t0 < n:
        talk = np.tile(TALKER, (n - t0) // len(TALKER) + 1)
        mic[t0:] += talk[: n - t0]
    if echo_gain is not None:
        d, e0 = int(0.03 * RATE), int(echo_from * RATE)
        mic[e0 + d:] += echo_gain * far[e0:n - d]
    ring = FarEndRing(RATE)
    c = EchoCanceller(ring, RATE)
    outs = []
    for i in range(n // FRAME - 2):
        ring.write((far[i * FRAME:(i + 1) * FRAME] * 32767).astype(np.int16), dac_time=i * FRAME / RATE + 0.015)
        if i >= 2:
            k = (i - 2) * FRAME
            c.note_capture(k / RATE, FRAME)
            outs.append(c.process(mic[k:k + FRAME]))
    y = np.concatenate(outs)
    return mic[: len(y)], y, c


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


@pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")
def test_without_an_echo_path_a_user_talking_over_the_agent_is_not_suppressed() -> None:
    """Issue 10: with no echo in the mic (headphones, the bench's devices) AEC3's filter never converges
    and it suppressed a talker by 60-80 dB while the far end played: the first barge-in of a chat
    reached the wire 0.85 s late. Now the canceller notices that there is no echo path and passes the
    talker through from the first 20 ms."""
    for talk_at in (0.7, 1.0, 1.4, 2.1, 3.0):
        x, y, c = _talk_over(None, talk_at, talk_at + 1.0)
        onset = int(talk_at * RATE) + int(np.argmax(np.abs(TALKER) > 0.05))
        first = slice(onset, onset + RATE // 10)           # its first 100 ms
        assert _db(y[first]) - _db(x[first]) > -3, (talk_at, _db(y[first]) - _db(x[first]))
        assert c.no_echo_path


@pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")
def test_an_echo_path_keeps_the_canceller_on_and_one_that_appears_ends_the_pass_through() -> None:
    # a laptop's echo (-12 dB) from the start: never taken for "no echo path"; the echo is removed
    x, y, c = _talk_over(0.25, talk_at=9.0, seconds=6.0)
    assert not c.no_echo_path and _db(y[3 * RATE:]) - _db(x[3 * RATE:]) < -25
    # headphones off mid-chat: the echo appears at 3 s; echo-like, so the canceller is back on at once
    x, y, c = _talk_over(0.25, talk_at=99.0, seconds=9.0, echo_from=3.0)
    assert not c.no_echo_path
    assert _db(y[6 * RATE:]) - _db(x[6 * RATE:]) < -25


def _pause_between_replies(monkeypatch: pytest.MonkeyPatch, idle_path: bool) -> tuple[np.ndarray, EchoCanceller]:
    """A reply plays with its echo in the mic; the output stream stops (nothing more is written, as a
    paused stream writes nothing) while the user talks; then it restarts for a second reply. With
    ``idle_path`` False the canceller never takes its far-idle path (the code before it)."""
    if not idle_path:
        monkeypatch.setattr(aec, "IDLE_AFTER_FRAMES", 10**9)
    far = _speechlike(3)
    ring = FarEndRing(RATE)
    c = EchoCanceller(ring, RATE)
    block, outs, t = 480, [], 0.0
    talker = np.resize(TALKER, 2 * RATE).astype(np.float32)

    def play(seconds: float, start: int, silence_s: float = 0.0) -> None:
        nonlocal t
        sound = np.concatenate((far[start:start + int(seconds * RATE)], np.zeros(int(silence_s * RATE), np.float32)))
        for i in range(sound.shape[0] // block):
            played = sound[i * block:(i + 1) * block]
            ring.write((played * 32767).astype(np.int16), dac_time=t + 0.02)
            c.note_capture(t, block)
            outs.append(c.process((0.25 * played).astype(np.float32)))    # the echo, no delay
            t += block / RATE

    play(1.0, 0, silence_s=0.5)                 # the chat pauses a stream that has played 0.5 s of silence
    for i in range(2 * RATE // block):          # stopped: nothing written; the mic hears the user
        c.note_capture(t, block)
        outs.append(c.process(talker[i * block:(i + 1) * block] * (0.0 if i < 25 else 0.5)))
        t += block / RATE
    c.output_restarted()
    play(1.0, RATE)
    return np.concatenate(outs), c


@pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")
def test_a_stopped_far_end_skips_the_reference_work_and_changes_no_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, c_fast = _pause_between_replies(monkeypatch, idle_path=True)
    with monkeypatch.context() as m:
        slow, c_slow = _pause_between_replies(m, idle_path=False)
    assert c_slow.idle_frames == 0
    assert c_fast.idle_frames > 150               # of the 200 frames of the 2 s stop
    assert np.array_equal(fast, slow)
