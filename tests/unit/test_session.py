"""Every rule of the client session state machine (design.md principle 3)."""

from __future__ import annotations

import json

import pytest

from voicecli.protocol.events import LocalProtocolError, ReplyCreate, SessionUpdate, encode_server
from voicecli.session.client import RESUME_WINDOW_S, ClientSession, State

CONFIG = {"system_prompt": "Be brief."}


def frame(etype: str, **fields: object) -> str:
    return encode_server(etype, 1.0, **fields)


def sent(s: ClientSession) -> list[dict[str, object]]:
    return [json.loads(t) for t in s.data_to_send()]


def ready_session() -> ClientSession:
    s = ClientSession(dict(CONFIG))
    s.start()
    s.data_to_send()
    s.receive(frame("session.updated", config={}), 0.0)
    s.receive(frame("session.ready", session_id="sess_1", config={"greeting": None}, resume_token="rt"), 0.0)
    return s


def test_first_message_is_session_update() -> None:
    s = ClientSession(dict(CONFIG))
    s.start()
    assert sent(s) == [{"type": "session.update", "session": CONFIG}]
    assert s.state is State.AWAITING_READY


def test_no_audio_before_ready() -> None:
    s = ClientSession(dict(CONFIG))
    with pytest.raises(LocalProtocolError):
        s.send_audio(b"\x00\x00")
    s.start()
    s.receive(frame("session.updated", config={}), 0.0)
    with pytest.raises(LocalProtocolError):
        s.send_audio(b"\x00\x00")
    s.receive(frame("session.ready", session_id="sess_1"), 0.0)
    s.data_to_send()
    s.send_audio(b"\x00\x00")
    assert sent(s) == [{"type": "input.audio", "audio": "AAA="}]


def test_ready_records_session_id_config_and_resume_token() -> None:
    s = ready_session()
    assert s.session_id == "sess_1" and s.resume_token == "rt" and s.resolved_config == {"greeting": None}


def test_other_events_not_allowed_before_ready() -> None:
    s = ClientSession(dict(CONFIG))
    s.start()
    with pytest.raises(LocalProtocolError):
        s.send(ReplyCreate())


def test_tool_result_held_until_reply_done() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1", item_id="i"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="get_weather", arguments={"city": "Paris"}), 0.0)
    assert s.submit_tool_result("c1", '{"temp_c": 22}') is True
    assert sent(s) == []                               # reply still running: held
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    assert sent(s) == [{"type": "tool.result", "call_id": "c1", "result": '{"temp_c": 22}'}]


def test_tool_result_sent_at_once_when_reply_done_is_latest() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    s.submit_tool_result("c1", "{}", is_error=True)
    assert sent(s) == [{"type": "tool.result", "call_id": "c1", "result": "{}", "is_error": True}]


def test_tool_result_waits_when_user_speech_follows_reply_done() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    s.receive(frame("input.speech.started"), 0.0)
    s.submit_tool_result("c1", "{}")
    assert sent(s) == [] and s.tool_result_state("c1") == "held"
    s.receive(frame("input.speech.stopped"), 0.0)
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    assert [m["call_id"] for m in sent(s)] == ["c1"] and s.tool_result_state("c1") == "sent"


@pytest.mark.parametrize("finished_before", [True, False])
def test_a_newer_reply_supersedes_results_still_owed(finished_before: bool) -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    s.receive(frame("input.speech.started"), 0.0)
    if finished_before:
        assert s.submit_tool_result("c1", "{}") is True        # held: speech is the latest event
    s.receive(frame("reply.started", reply_id="r2"), 0.0)      # the agent moved on (6.5)
    if not finished_before:
        assert s.submit_tool_result("c1", "{}") is False
    s.receive(frame("reply.done", reply_id="r2", status="completed"), 0.0)
    assert sent(s) == [] and s.tool_result_state("c1") == "dropped"


def test_hold_mode_results_survive_a_status_update_reply() -> None:
    s = ClientSession({"tools": [{"type": "function", "name": "book", "execution_mode": "hold"}]})
    s.start()
    s.receive(frame("session.ready", session_id="sess_1"), 0.0)
    s.data_to_send()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="book", arguments={}), 0.0)
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    s.receive(frame("reply.started", reply_id="r2"), 0.0)      # a reply.create status update
    assert s.submit_tool_result("c1", "{}") is True
    s.receive(frame("reply.done", reply_id="r2", status="completed"), 0.0)
    assert [m["call_id"] for m in sent(s)] == ["c1"]


def test_results_of_an_interrupted_reply_are_dropped() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    s.submit_tool_result("c1", "{}")                   # held
    s.receive(frame("reply.done", reply_id="r1", status="interrupted"), 0.0)
    assert sent(s) == [] and s.pending_tool_results == 0
    assert s.submit_tool_result("c1", "{}") is False   # a late finisher is dropped too
    assert sent(s) == []


def test_duplicate_tool_calls_are_stale_and_results_sent_once() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    first = s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    again = s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    assert not first.stale and again.stale
    s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0)
    s.submit_tool_result("c1", "{}")
    s.submit_tool_result("c1", "{}")
    assert len(sent(s)) == 1


def test_audio_of_an_interrupted_reply_is_stale() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    assert not s.receive(frame("reply.audio", data=b"\x00\x00", reply_id="r1"), 0.0).stale
    s.receive(frame("reply.done", reply_id="r1", status="interrupted"), 0.0)
    assert s.receive(frame("reply.audio", data=b"\x00\x00", reply_id="r1"), 0.0).stale
    s.receive(frame("reply.started", reply_id="r2"), 0.0)
    assert not s.receive(frame("reply.audio", data=b"\x00\x00", reply_id="r2"), 0.0).stale


def test_interrupt_can_be_called_early_on_barge_in() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.interrupt("r1")
    assert s.receive(frame("reply.audio", data=b"\x00\x00", reply_id="r1"), 0.0).stale
    assert s.is_interrupted("r1")


def test_end_then_ended() -> None:
    s = ready_session()
    s.end()
    assert sent(s) == [{"type": "session.end"}] and s.state is State.ENDING
    s.receive(frame("session.ended", session_duration_seconds=1.0, audio_duration_seconds=None), 0.0)
    assert s.state is State.ENDED
    s.connection_lost(5.0)
    assert s.state is State.ENDED and not s.can_resume(5.0)


def test_close_after_session_end_counts_as_ended() -> None:
    s = ready_session()
    s.end()
    s.connection_lost(1.0)
    assert s.state is State.ENDED


def test_drop_resume_within_window() -> None:
    s = ready_session()
    s.connection_lost(100.0)
    assert s.state is State.DISCONNECTED
    assert s.can_resume(100.0 + RESUME_WINDOW_S - 0.1)
    assert not s.can_resume(100.0 + RESUME_WINDOW_S)
    s.resume(101.0)
    assert sent(s) == [{"type": "session.resume", "session_id": "sess_1"}]
    with pytest.raises(LocalProtocolError):
        s.send_audio(b"\x00\x00")                      # not ready until the server says so
    s.receive(frame("session.ready", session_id="sess_1"), 102.0)
    assert s.ready and s.disconnected_at is None


def test_resume_refused_forgets_session_and_allows_fresh_start() -> None:
    s = ready_session()
    s.connection_lost(0.0)
    s.resume(1.0)
    s.data_to_send()
    s.receive(frame("session.error", code="session_not_found", message="gone"), 1.0)
    assert s.session_id is None
    s.connection_lost(1.0)                             # the server closes 1008 after refusing
    assert not s.can_resume(1.0)
    s.start()
    assert sent(s)[0]["type"] == "session.update"


def test_resume_after_window_is_refused_locally() -> None:
    s = ready_session()
    s.connection_lost(0.0)
    with pytest.raises(LocalProtocolError):
        s.resume(RESUME_WINDOW_S + 1)


def test_never_connected_session_cannot_resume() -> None:
    s = ClientSession(dict(CONFIG))
    s.start()
    s.connection_lost(0.0)
    assert not s.can_resume(0.1)


def test_transcript_agent_interrupted_interrupts_the_reply() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    rec = s.receive(frame("transcript.agent", reply_id="r1", text="Hel", interrupted=True), 0.0)
    assert rec.interrupted and rec.newly_interrupted and rec.reply_id == "r1"
    assert s.receive(frame("reply.audio", data=b"\x00\x00", reply_id="r1"), 0.0).stale
    assert s.submit_tool_result("c1", "{}") is False
    done = s.receive(frame("reply.done", reply_id="r1", status="interrupted"), 0.0)
    assert done.interrupted and not done.newly_interrupted


def test_received_resolves_the_reply_id() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    rec = s.receive(frame("reply.audio", data=b"\x00\x00"), 0.0)     # no reply_id on the frame
    assert rec.reply_id == "r1" and not rec.interrupted


def test_follow_up_verdict_after_a_reply_with_tool_calls() -> None:
    s = ready_session()
    s.receive(frame("reply.started", reply_id="r1"), 0.0)
    s.receive(frame("tool.call", call_id="c1", name="t", arguments={}), 0.0)
    assert s.receive(frame("reply.done", reply_id="r1", status="completed"), 0.0).follow_up
    s.receive(frame("reply.started", reply_id="r2"), 0.0)
    assert not s.receive(frame("reply.done", reply_id="r2", status="completed"), 0.0).follow_up


def test_fatal_error_fails_the_session_for_good() -> None:
    s = ready_session()
    s.receive(frame("session.error", code="agent_timeout", message="x"), 0.0)
    s.connection_lost(1.0)
    assert s.over and not s.can_resume(1.0)
    with pytest.raises(LocalProtocolError):
        s.start()


def test_connect_failed_keeps_the_resume_window_from_the_drop() -> None:
    s = ready_session()
    s.connection_lost(10.0)
    s.resume(11.0)
    s.connect_failed(12.0)
    assert s.state is State.DISCONNECTED and s.disconnected_at == 10.0 and s.can_resume(12.0)


def test_error_before_ready_returns_to_idle_for_a_corrected_update() -> None:
    s = ClientSession(dict(CONFIG))
    s.start()
    s.receive(frame("session.error", code="invalid_value", message="bad", param="voice"), 0.0)
    assert s.state is State.IDLE
    s.send(SessionUpdate({"voice": "x"}))
    assert s.state is State.AWAITING_READY


def test_long_sessions_stay_bounded() -> None:
    s = ready_session()
    for i in range(2000):
        s.receive(frame("reply.started", reply_id=f"r{i}"), 0.0)
        s.receive(frame("tool.call", call_id=f"c{i}", name="t", arguments={}), 0.0)
        s.receive(frame("reply.done", reply_id=f"r{i}", status="interrupted"), 0.0)
    assert len(s._replies.states) <= 64 and len(s._calls.states) <= 256 and len(s._call_info) <= 256
