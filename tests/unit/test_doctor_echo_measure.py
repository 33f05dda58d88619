"""doctor's echo measurement on synthetic recordings (issue 10, Devices): the delay and level of a
known echo path are found, and the recommendation follows them."""

from __future__ import annotations

import numpy as np

from voicecli.app.doctor import Echo, judge_echo, measure_echo, speaker_tone

RATE = 24000


def _mic(delay_s: float, gain_db: float, noise: float = 0.002, seed: int = 1) -> np.ndarray:
    tone = speaker_tone(RATE)
    out = np.random.default_rng(seed).normal(0, noise, RATE * 2).astype(np.float32)
    start = int(delay_s * RATE)
    out[start:start + len(tone)] += tone * 10 ** (gain_db / 20)
    return out


def test_the_speaker_tone_is_audible_not_silence() -> None:
    tone = speaker_tone(RATE)
    assert len(tone) == RATE // 2 and 0.2 < np.max(np.abs(tone)) <= 0.25
    assert 20 * np.log10(np.sqrt(np.mean(tone ** 2))) > -20      # about -15 dBFS RMS


def test_an_echo_path_is_measured() -> None:
    # recording started 0.1 s before the tone reached the DAC; the echo arrives 45 ms after it
    echo = measure_echo(_mic(0.1 + 0.045, -15.0), recorded_at=10.0, tone=speaker_tone(RATE), played_at=10.1,
                        rate=RATE)
    assert echo.heard and abs(echo.delay_ms - 45.0) < 1.0 and abs(echo.level_db + 15.0) < 0.5
    check = judge_echo(echo, aec_installed=True)
    assert check.status == "warn" and "45 ms later at -15 dB" in check.detail and "--echo aec" in check.hint
    assert "pip install" in judge_echo(echo, aec_installed=False).hint


def test_no_echo_and_a_loud_echo() -> None:
    quiet = measure_echo(_mic(0.1, -200.0), 0.0, speaker_tone(RATE), 0.1, RATE)
    assert not quiet.heard
    assert judge_echo(quiet, True).status == "ok" and "--echo off" in judge_echo(quiet, True).detail
    loud = measure_echo(_mic(0.2, -3.0), 0.0, speaker_tone(RATE), 0.15, RATE)
    assert loud.heard and abs(loud.delay_ms - 50.0) < 1.0
    assert "headphones" in judge_echo(loud, True).hint and "half" in judge_echo(loud, True).hint


def test_a_recording_shorter_than_the_tone_hears_nothing() -> None:
    assert measure_echo(np.zeros(100, np.float32), 0.0, speaker_tone(RATE), 0.0, RATE) == Echo(False, 0.0, -100.0, 0.0)
