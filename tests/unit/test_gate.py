"""voicecli.audio.gate: half-duplex mic gate and self-interruption detector."""

from __future__ import annotations

import pytest

from voicecli.audio.gate import HalfDuplexGate, SelfInterruptDetector


def test_gate_open_until_agent_audible() -> None:
    g = HalfDuplexGate(hangover_ms=300)
    assert g.mic_open(0.0)
    g.update(1.0, agent_audible=False)
    assert g.mic_open(1.0)
    g.update(2.0, agent_audible=True)
    assert not g.mic_open(2.0) and not g.mic_open(50.0)  # closed while audible, however long


def test_gate_hangover_after_agent_stops() -> None:
    g = HalfDuplexGate(hangover_ms=300)
    g.update(2.0, True)
    g.update(2.5, True)
    g.update(3.0, False)
    assert not g.mic_open(3.0)
    assert not g.mic_open(3.299)
    assert g.mic_open(3.3)
    g.update(3.4, False)  # staying silent does not restart the hangover
    assert g.mic_open(3.4)
    g.update(4.0, True)  # agent speaks again: closed at once
    assert not g.mic_open(4.0)


def test_gate_zero_hangover_and_validation() -> None:
    g = HalfDuplexGate(hangover_ms=0)
    g.update(1.0, True)
    g.update(1.02, False)
    assert g.mic_open(1.02)
    with pytest.raises(ValueError):
        HalfDuplexGate(hangover_ms=-1)


def run_reply(d: SelfInterruptDetector, rid: str, t: float, interrupt_after: float | None) -> None:
    d.reply_started(rid, t)
    d.reply_audio_played(rid, t + 0.4)
    if interrupt_after is not None:
        d.reply_interrupted(rid, t + 0.4 + interrupt_after)


def test_detector_warns_once_after_two_quick_interruptions() -> None:
    d = SelfInterruptDetector()
    run_reply(d, "r1", 0.0, interrupt_after=0.5)
    assert not d.should_warn()  # one is not a pattern
    run_reply(d, "r2", 10.0, interrupt_after=None)
    run_reply(d, "r3", 20.0, interrupt_after=1.5)  # exactly at the limit counts
    assert d.quick_interruptions() == 2
    assert d.should_warn()
    assert not d.should_warn()  # only once
    run_reply(d, "r4", 30.0, interrupt_after=0.1)
    assert not d.should_warn()


def test_detector_ignores_slow_interruptions_and_unplayed_replies() -> None:
    d = SelfInterruptDetector()
    run_reply(d, "r1", 0.0, interrupt_after=1.6)
    run_reply(d, "r2", 10.0, interrupt_after=3.0)
    d.reply_started("r3", 20.0)
    d.reply_interrupted("r3", 20.1)  # interrupted before any audio played: not self-interruption
    assert d.quick_interruptions() == 0 and not d.should_warn()


def test_detector_only_looks_at_last_four_replies() -> None:
    d = SelfInterruptDetector()
    run_reply(d, "old", 0.0, interrupt_after=0.2)
    for i in range(4):
        run_reply(d, f"n{i}", 10.0 + i, interrupt_after=None)
    run_reply(d, "new", 20.0, interrupt_after=0.2)
    assert d.quick_interruptions() == 1  # "old" fell out of the window
    assert not d.should_warn()


def test_detector_first_played_is_sticky() -> None:
    d = SelfInterruptDetector()
    for rid, base in (("a", 0.0), ("b", 10.0)):
        d.reply_started(rid, base)
        d.reply_audio_played(rid, base + 0.1)
        d.reply_audio_played(rid, base + 5.0)  # later chunks don't move "first played"
        d.reply_interrupted(rid, base + 1.0)
    assert d.should_warn()
    with pytest.raises(ValueError):
        SelfInterruptDetector(threshold=5, window=4)
