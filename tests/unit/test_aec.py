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
    monkeypatch.setattr(aec, "available", lambda: False)
    assert echo_mode(None, None) == "half"    # no canceller installed: half duplex (issue 10)
    with pytest.raises(UsageError, match="not installed") as info:
        echo_mode("aec", None)
    assert "pip install 'voicecli[aec]'" in (info.value.hint or "")
    monkeypatch.setattr(aec, "available", lambda: True)
    assert echo_mode(None, None) == "aec" and echo_mode("aec", None) == "aec"
