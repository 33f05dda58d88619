"""Issue 10: echo cancellation for real on the virtual devices. An acoustic echo path like a laptop's
(the speaker's monitor looped back into the mic feed, 40 ms, -15 dB) makes the agent interrupt
itself with ``--echo off``; with ``--echo aec`` a multi-turn conversation goes through without a
self-interruption, and a user who talks over the agent still cuts it within the flush target."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Served, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _active_spans, _no_traceback, _read_raw
from voicecli.audio import aec

KEY = ("--api-key", "test-key")
HELLO = EXAMPLES / "hello.wav"
THANKS = EXAMPLES / "thanks.wav"

needs_aec = pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")


@pytest.fixture
def echo_path(vaudio: VirtualAudio) -> Iterator[VirtualAudio]:
    module = vaudio.add_echo(delay_ms=40, gain_db=-15.0)
    time.sleep(0.3)
    yield vaudio
    vaudio.remove_echo(module)
    time.sleep(0.2)


def _two_turns(va: VirtualAudio, server: Served, echo: str) -> ChatProc:
    """hello -> reply, thanks -> reply, then Ctrl-C; returns the finished chat."""
    chat = ChatProc(va.env, "--url", server.at(scenario="echo"), *KEY, "--no-ui", "--json", "--echo", echo)
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        for wav in (HELLO, THANKS):
            va.play(wav).wait(unit(10))
            n = len(chat.of_type("voicecli.reply.heard"))
            # played out (or cut): the next turn must not talk over the tail of this one
            chat.wait_for(lambda e, n=n: e["type"] == "voicecli.reply.heard"
                          and len(chat.of_type("voicecli.reply.heard")) > n, timeout=20, what="the reply")
            time.sleep(0.5)
        chat.interrupt()
    finally:
        chat.kill()
    _no_traceback(chat)
    return chat


def test_without_echo_control_the_agent_interrupts_itself(echo_path: VirtualAudio,
                                                          scripted_server: Served) -> None:
    """The test can fail: with the echo path and --echo off the agent's own voice barges in."""
    chat = _two_turns(echo_path, scripted_server, "off")
    assert chat.of_type("voicecli.barge_in"), [e["type"] for e in chat.events]
    assert any(e["interrupted"] for e in chat.of_type("voicecli.reply.heard"))


@needs_aec
def test_with_aec_a_multi_turn_chat_has_no_self_interruption(echo_path: VirtualAudio,
                                                             scripted_server: Served) -> None:
    chat = _two_turns(echo_path, scripted_server, "aec")
    assert not chat.of_type("voicecli.barge_in"), chat.of_type("voicecli.barge_in")
    heard = chat.of_type("voicecli.reply.heard")
    assert [(e["text"], e["interrupted"]) for e in heard] == [
        ("Hello! This is the scripted agent.", False), ("I am fine, thank you for asking.", False)]
    assert [e["text"] for e in chat.of_type("transcript.user")] == ["hello there", "how are you"]
    summary = chat.session_summary()
    assert summary["echo"] == "aec" and summary["aec"]["frames"] > 100
    assert "keeps getting interrupted" not in chat.stderr


@needs_aec
def test_with_aec_the_user_still_barges_in(echo_path: VirtualAudio, scripted_server: Served,
                                           tmp_path: Path) -> None:
    spk = tmp_path / "speaker.raw"
    rec = echo_path.record_speaker(spk)
    chat = ChatProc(echo_path.env, "--url", scripted_server.at(scenario="long"), *KEY, "--no-ui", "--json",
                    "--echo", "aec")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        echo_path.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "voicecli.metrics", timeout=20, what="first reply audio heard")
        time.sleep(2.0)
        assert not chat.of_type("voicecli.barge_in")       # its own echo did not cut it
        echo_path.play(THANKS).wait(unit(10))
        barge = chat.wait_for(lambda e: e["type"] == "voicecli.barge_in", what="barge-in")
        chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard" and not e["interrupted"], timeout=20,
                      what="the reply to the second turn")
        time.sleep(0.3)
        chat.interrupt()
    finally:
        chat.kill()
        rec.terminate()
        rec.wait()
    _no_traceback(chat)
    assert barge["trigger"] == "input.speech.started" and barge["played_ms"] > 2000
    # the speaker stops within the flush target of the server's speech.started (as in the plain test)
    long_id = chat.of_type("reply.started")[0]["reply_id"]
    a0 = next(e["timestamp"] for e in chat.events if e["type"] == "reply.audio" and e["reply_id"] == long_id)
    s1 = chat.of_type("input.speech.started")[1]["timestamp"]
    spans = _active_spans(_read_raw(spk))
    played = spans[0][1] - spans[0][0]
    print(f"aec barge-in: the speaker stopped {(played - (s1 - a0)) * 1000:.0f} ms after the server's "
          f"speech.started ({barge['flushed_ms']:.0f} ms of queued reply flushed)")
    assert played - (s1 - a0) < 0.15, f"the speaker kept playing {(played - (s1 - a0)) * 1000:.0f} ms"


@needs_aec
def test_with_aec_and_no_echo_path_a_barge_in_early_in_the_first_reply_is_heard_at_once(
        vaudio: VirtualAudio, scripted_server: Served) -> None:
    """Headphones (no echo path): AEC3's filter has no echo to converge on and it took a user talking
    over the agent for echo, suppressing the prompt by 60-80 dB (issue 10: the first barge-in of a
    chat reached the wire 0.85 s late). The server hears the barge-in as soon as a plain turn."""
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="long"), *KEY, "--no-ui", "--json",
                    "--echo", "aec")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        t0 = time.monotonic()
        vaudio.play(HELLO).wait(unit(10))
        plain = chat.wait_for(lambda e: e["type"] == "input.speech.started", what="speech.started")["_received"] - t0
        chat.wait_for(lambda e: e["type"] == "reply.audio", timeout=20, what="the first reply's audio")
        time.sleep(1.2)                            # past the echo guard, early in the first reply
        t1 = time.monotonic()
        prompt = vaudio.play(THANKS)
        barge = chat.wait_for(lambda e: e["type"] == "voicecli.barge_in", what="barge-in")
        over = chat.of_type("input.speech.started")[1]["_received"] - t1
        prompt.wait(unit(10))
        time.sleep(0.3)
        chat.interrupt()
    finally:
        chat.kill()
    _no_traceback(chat)
    print(f"speech.started after the prompt's start: {plain * 1000:.0f} ms (plain turn), "
          f"{over * 1000:.0f} ms (talking over the first reply)")
    assert barge["trigger"] == "input.speech.started" and barge["played_ms"] < 2500
    assert over - plain < 0.3, f"the barge-in was heard {(over - plain) * 1000:.0f} ms later than a plain turn"
    summary = chat.session_summary()
    assert summary["aec"]["no_echo_path"] and summary["aec"]["passed_frames"] > 0
