"""The rule table, transition by transition, for both roles (h11's test_state.py style)."""

from __future__ import annotations

import pytest

from voicecli.protocol.events import (
    LocalProtocolError,
    RemoteProtocolError,
    ReplyDone,
    SessionError,
    TranscriptAgent,
    UnknownEvent,
)
from voicecli.session.rules import (
    BARGE_IN,
    CLOSED,
    CONNECT_FAILED,
    DROP,
    RESULT_READY,
    TRANSITIONS,
    CallState,
    ConnState,
    Machine,
    ReplyState,
    Role,
    Verdict,
    error_kind,
    event_key,
)

C, S, L = Role.CLIENT, Role.SERVER, Role.LOCAL


def conn(me: Role, state: ConnState) -> Machine[int]:
    m: Machine[int] = Machine("connection", me)
    m.states[0] = state
    return m


@pytest.mark.parametrize(("state", "event", "after"), [
    (ConnState.IDLE, "session.update", ConnState.AWAITING_READY),
    (ConnState.IDLE, "session.resume", ConnState.RESUMING),
    (ConnState.DISCONNECTED, "session.resume", ConnState.RESUMING),
    (ConnState.REFUSED, "session.update", ConnState.AWAITING_READY),
    (ConnState.AWAITING_READY, "session.update", ConnState.AWAITING_READY),
    (ConnState.READY, "input.audio", ConnState.READY),
    (ConnState.READY, "tool.result", ConnState.READY),
    (ConnState.READY, "session.end", ConnState.ENDING),
])
def test_client_sends(state: ConnState, event: str, after: ConnState) -> None:
    for me in (C, S):      # the same table whoever applies it
        m = conn(me, state)
        assert m.step(0, C, event) == (after, Verdict.OK)


@pytest.mark.parametrize(("state", "event"), [
    (ConnState.IDLE, "input.audio"),                 # 3.2: no audio before ready
    (ConnState.AWAITING_READY, "input.audio"),
    (ConnState.RESUMING, "input.audio"),
    (ConnState.AWAITING_READY, "tool.result"),
    (ConnState.READY, "session.resume"),             # 3.1: resume only as the first message
    (ConnState.REFUSED, "session.resume"),           # 6.7: a refused session is gone
    (ConnState.ENDING, "input.audio"),
    (ConnState.FAILED, "session.update"),
])
def test_client_may_not_send(state: ConnState, event: str) -> None:
    with pytest.raises(LocalProtocolError):          # our own illegal send: a local error
        conn(C, state).step(0, C, event)
    m = conn(S, state)
    with pytest.raises(RemoteProtocolError):         # the peer's: a remote error
        m.step(0, C, event)
    assert m.get(0) is state                         # and nothing changed


@pytest.mark.parametrize(("state", "event", "after"), [
    (ConnState.AWAITING_READY, "session.updated", ConnState.AWAITING_READY),
    (ConnState.AWAITING_READY, "session.ready", ConnState.READY),
    (ConnState.AWAITING_READY, "session.error", ConnState.IDLE),          # send a corrected update
    (ConnState.AWAITING_READY, "session.error/fatal", ConnState.FAILED),
    (ConnState.RESUMING, "session.ready", ConnState.READY),
    (ConnState.RESUMING, "session.error/refused", ConnState.REFUSED),     # resume refused
    (ConnState.READY, "reply.audio", ConnState.READY),
    (ConnState.READY, "session.error", ConnState.READY),                  # non-fatal: stays open
    (ConnState.READY, "session.error/fatal", ConnState.FAILED),
    (ConnState.READY, "session.ended", ConnState.ENDED),
    (ConnState.ENDING, "reply.done", ConnState.ENDING),
    (ConnState.ENDING, "session.ended", ConnState.ENDED),
    (ConnState.AWAITING_READY, "unknown", ConnState.AWAITING_READY),
    (ConnState.RESUMING, "session.error/warning", ConnState.RESUMING),
])
def test_server_sends(state: ConnState, event: str, after: ConnState) -> None:
    assert conn(C, state).step(0, S, event) == (after, Verdict.OK)


@pytest.mark.parametrize(("state", "event"), [
    (ConnState.AWAITING_READY, "reply.audio"),
    (ConnState.IDLE, "session.ready"),
    (ConnState.ENDED, "reply.audio"),
])
def test_server_may_not_send(state: ConnState, event: str) -> None:
    with pytest.raises(LocalProtocolError):
        conn(S, state).step(0, S, event)
    with pytest.raises(RemoteProtocolError):
        conn(C, state).step(0, S, event)


@pytest.mark.parametrize(("state", "event", "after"), [
    (ConnState.READY, CLOSED, ConnState.DISCONNECTED),
    (ConnState.AWAITING_READY, CONNECT_FAILED, ConnState.DISCONNECTED),   # connect failed
    (ConnState.RESUMING, CONNECT_FAILED, ConnState.DISCONNECTED),
    (ConnState.ENDING, CLOSED, ConnState.ENDED),                          # close after session.end
    (ConnState.REFUSED, CLOSED, ConnState.REFUSED),
    (ConnState.FAILED, CLOSED, ConnState.FAILED),
])
def test_pseudo_events(state: ConnState, event: str, after: ConnState) -> None:
    assert conn(C, state).step(0, L, event)[0] is after


def test_every_state_has_a_way_out_of_a_closed_socket() -> None:
    local = TRANSITIONS["connection"][L]
    assert all(CLOSED in local[state] for state in ConnState)


def test_reply_lifecycle_and_stale_audio() -> None:
    m: Machine[str] = Machine("reply", C)
    assert m.step("r1", S, "reply.started") == (ReplyState.STARTED, Verdict.OK)
    assert m.step("r1", S, "reply.audio") == (ReplyState.STARTED, Verdict.OK)
    assert m.step("r1", S, "transcript.agent/interrupted")[0] is ReplyState.INTERRUPTED
    assert m.step("r1", S, "reply.audio") == (ReplyState.INTERRUPTED, Verdict.STALE)
    assert m.step("r1", S, "reply.done/interrupted")[0] is ReplyState.INTERRUPTED
    with pytest.raises(RemoteProtocolError):      # a reply id is never started twice
        m.step("r1", S, "reply.started")


def test_local_barge_in_interrupts_a_reply_still_playing() -> None:
    m: Machine[str] = Machine("reply", C)
    m.step("r1", S, "reply.started")
    m.step("r1", S, "reply.done")
    assert m.step("r1", L, BARGE_IN)[0] is ReplyState.INTERRUPTED
    assert m.step("r1", S, "reply.audio")[1] is Verdict.STALE


def test_call_states_both_roles() -> None:
    client: Machine[str] = Machine("call", C)
    assert client.step("c1", S, "tool.call")[0] is CallState.PENDING
    assert client.step("c1", S, "tool.call")[1] is Verdict.STALE          # repeated call_id
    assert client.step("c1", L, RESULT_READY)[0] is CallState.RELEASABLE
    assert client.step("c1", C, "tool.result")[0] is CallState.SENT
    assert client.step("c1", L, RESULT_READY)[1] is Verdict.STALE          # sent once
    server: Machine[str] = Machine("call", S)
    server.step("c2", S, "tool.call")
    server.step("c2", L, DROP)                                            # its reply was interrupted
    assert server.step("c2", C, "tool.result") == (CallState.DROPPED, Verdict.STALE)
    with pytest.raises(RemoteProtocolError):                              # never issued
        server.step("c3", C, "tool.result")


def test_machines_are_bounded() -> None:
    m: Machine[str] = Machine("call", C, limit=8)
    for i in range(100):
        m.step(f"c{i}", S, "tool.call")
    assert len(m.states) == 8 and m.get("c99") is CallState.PENDING and m.get("c0") is None


def test_event_keys() -> None:
    assert event_key(SessionError("session_not_found")) == "session.error/refused"
    assert event_key(SessionError("unauthorized")) == "session.error/fatal"
    assert event_key(SessionError("audio_rate_violation")) == "session.error/warning"
    assert event_key(SessionError("invalid_value")) == "session.error"
    assert event_key(ReplyDone("r", "interrupted")) == "reply.done/interrupted"
    assert event_key(ReplyDone("r")) == "reply.done"
    assert event_key(TranscriptAgent("r", "hi", interrupted=True)) == "transcript.agent/interrupted"
    assert event_key(UnknownEvent("x.y")) == "unknown"
    assert error_kind("agent_not_found") == "/fatal"


# -- additions for the server's agent session ------------------------------------------------

def test_session_end_is_allowed_before_any_session() -> None:
    """3.7: ``session.end`` on a connection that never configured a session ends it."""
    m = conn(S, ConnState.IDLE)
    assert m.step(0, C, "session.end") == (ConnState.ENDING, Verdict.OK)
    assert m.step(0, S, "session.ended") == (ConnState.ENDED, Verdict.OK)


@pytest.mark.parametrize("state", [ConnState.IDLE, ConnState.AWAITING_READY, ConnState.RESUMING,
                                   ConnState.READY, ConnState.ENDING])
def test_an_error_answering_one_bad_message_keeps_the_state(state: ConnState) -> None:
    """The server's answer to audio before ready (say) must not undo a pending session.ready,
    unlike the rejection of a first update (AWAITING_READY -> IDLE)."""
    from voicecli.session.rules import ERROR_ANSWER

    m = conn(S, state)
    assert m.step(0, S, ERROR_ANSWER) == (state, Verdict.OK)
    if state is ConnState.AWAITING_READY:
        assert conn(S, state).step(0, S, "session.error") == (ConnState.IDLE, Verdict.OK)


def test_server_tool_call_verdicts_come_from_the_call_machine() -> None:
    """The agent session's duplicate / stale / unknown tool.result verdicts (3.3)."""
    calls: Machine[str] = Machine("call", S)
    calls.step("a", S, "tool.call")
    calls.step("b", S, "tool.call")
    assert calls.step("a", C, "tool.result") == (CallState.SENT, Verdict.OK)
    assert calls.step("a", C, "tool.result") == (CallState.SENT, Verdict.STALE)      # duplicate
    calls.step("b", L, DROP)
    assert calls.step("b", C, "tool.result") == (CallState.DROPPED, Verdict.STALE)   # stale
    with pytest.raises(RemoteProtocolError):
        calls.step("never", C, "tool.result")                                         # unknown
