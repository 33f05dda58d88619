"""voicecli.audio.aec: the far-end ring (lock-free reference) and the echo canceller on synthetic
signals: the reference is aligned by DAC/ADC times, survives clock drift, and removes the echo."""

from __future__ import annotations

import numpy as np
import pytest

from voicecli.audio import aec
from voicecli.audio.aec import FRAME, EchoCanceller, FarEndRing
from voicecli.cli_audio import echo_mode
from voicecli.errors import UsageError

RATE = 24000


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


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    env = (np.abs(np.sin(np.arange(n) / RATE * 2.5)) > 0.3).astype(np.float32)
    return (rng.standard_normal(n).astype(np.float32) * 0.1 * env).astype(np.float32)


def _run(drift_ppm: float, seconds: float = 8.0) -> tuple[float, EchoCanceller]:
    """Play far-end audio through a simulated output stream, capture its echo (30 ms acoustic delay,
    -12 dB) on an input stream whose clock runs ``drift_ppm`` fast; returns the echo reduction (dB)
    over the last 3 s."""
    far = _speechlike(seconds)
    ring = FarEndRing(RATE)
    canceller = EchoCanceller(ring, RATE)
    block = 240
    dac_lead = 0.015                      # output latency: a block reaches the DAC 15 ms after it is written
    acoustic = int(0.030 * RATE)
    echo = np.concatenate((np.zeros(acoustic, np.float32), far[:-acoustic] * 0.25))
    outs, ins = [], []
    for i in range(len(far) // block):
        now = i * block / RATE
        ring.write((far[i * block:(i + 1) * block] * 32767).astype(np.int16), dac_time=now + dac_lead)
        # the mic sample captured at ADC time t holds the echo of what the DAC played at t - 30 ms;
        # the input clock's timestamps drift against the output's
        adc = (now + dac_lead - 0.005) * (1 + drift_ppm * 1e-6)
        if i * block >= block * 2:
            k = (i - 2) * block
            canceller.note_capture(adc - 2 * block / RATE, block)
            outs.append(canceller.process(echo[k:k + block]))
            ins.append(echo[k:k + block])
    y, x = np.concatenate(outs), np.concatenate(ins)[: sum(len(o) for o in outs)]
    tail = slice(len(y) - 3 * RATE, len(y))
    return 10 * np.log10(np.mean(y[tail] ** 2) / np.mean(x[tail] ** 2)), canceller


@pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")
def test_the_canceller_removes_an_aligned_echo_and_survives_drift() -> None:
    reduction, c = _run(drift_ppm=0)
    assert reduction < -30, reduction
    assert c.frames > 0 and c.realigned == 0 and len(c.process(np.zeros(FRAME - 1, np.float32))) == 0
    reduction, c = _run(drift_ppm=2000)        # 2 ms/s: 16 ms over the run, far beyond real clocks
    assert reduction < -25, reduction
    assert c.realigned >= 2


def test_echo_mode_defaults_and_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert echo_mode("off", None) == "off" and echo_mode(None, "half") == "half"
    assert echo_mode(None, "full") == "off"
    monkeypatch.setattr(aec, "available", lambda: False)
    assert echo_mode(None, None) == "half"
    with pytest.raises(UsageError, match="not installed") as info:
        echo_mode("aec", None)
    assert "pip install 'voicecli[aec]'" in (info.value.hint or "")
    monkeypatch.setattr(aec, "available", lambda: True)
    assert echo_mode(None, None) == "aec"
