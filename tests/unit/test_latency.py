"""Per-turn latency bookkeeping: end of user speech -> first agent audio heard, and its parts."""

from __future__ import annotations

import pytest

from voicecli.app.latency import LatencyTracker, percentile


def test_a_turn_is_measured_from_speech_stopped_to_heard() -> None:
    lt = LatencyTracker()
    lt.audio_received("greeting", 1.0)         # no user turn yet: not measured
    assert lt.waiting() == []
    lt.speech_stopped(10.0)
    lt.audio_received("r1", 10.6)
    lt.audio_received("r1", 10.7)              # later chunks change nothing
    assert lt.waiting() == ["r1"]
    turn = lt.heard("r1", 10.65)
    assert turn is not None and turn.turn == 1
    assert turn.server_ms == pytest.approx(600) and turn.local_ms == pytest.approx(50)
    assert turn.total_ms == pytest.approx(650)
    assert turn.to_dict() == {"turn": 1, "reply_id": "r1", "server_ms": 600.0, "local_ms": 50.0,
                              "total_ms": 650.0}
    assert lt.heard("r1", 11.0) is None and lt.waiting() == []


def test_an_interrupted_reply_measures_nothing_and_the_next_turn_counts() -> None:
    lt = LatencyTracker()
    lt.speech_stopped(1.0)
    lt.audio_received("r1", 1.5)
    lt.dropped("r1")
    assert lt.heard("r1", 1.6) is None
    lt.speech_stopped(5.0)
    lt.audio_received("r2", 5.2)
    lt.speech_stopped(6.0)                      # the user spoke again before r2 was heard
    lt.audio_received("r3", 6.4)
    lt.heard("r2", 5.25)
    lt.heard("r3", 6.5)
    assert [(t.reply_id, round(t.total_ms)) for t in lt.turns] == [("r2", 250), ("r3", 500)]
    summary = lt.summary()
    assert summary["turns"] == 2 and summary["total_ms"] == {"p50": 375.0, "p95": 487.5}
    assert lt.last is not None and lt.last.reply_id == "r3"
    assert LatencyTracker().summary() == {"turns": 0}


def test_percentile() -> None:
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0


def test_what_the_tracker_keeps_is_bounded_however_long_the_session() -> None:
    lt = LatencyTracker(keep=10)
    for i in range(5000):
        lt.speech_stopped(i * 10.0)
        lt.audio_received(f"r{i}", i * 10.0 + 0.5)
        if i % 2 == 0:
            lt.heard(f"r{i}", i * 10.0 + 0.6)        # the odd ones are never heard nor dropped
    assert len(lt.turns) == 10 and lt.turns[-1].turn == 2500
    assert lt.summary()["turns"] == 2500
    assert len(lt.waiting()) <= 64
