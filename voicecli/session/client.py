"""The client side of a Voice Agent session, sans-I/O, driven by the rule table (``rules.py``).

The table decides; this class keeps the facts a client needs across reconnects (session id, resume
token, resolved config, when the connection dropped) and applies the rules' consequences:

* ``session.update`` (or ``session.resume``) is the first message of a connection (protocol.md 3.1);
* no ``input.audio`` before ``session.ready`` (3.2);
* a ``tool.result`` is sent only while ``reply.done`` is the latest event received; results of a
  reply that ended ``interrupted`` are dropped (3.3, 6.5), as are results still owed when a newer
  ``reply.started`` shows the agent moved on (6.5 step 5; hold-mode calls excepted);
* ``reply.audio`` of an interrupted ``reply_id`` is stale and must not be played (6.3), whether the
  interruption came as ``reply.done{interrupted}`` or as ``transcript.agent{interrupted}``;
* a connection that closes without ``session.ended`` can be resumed within 30 s (6.7).

Usage: the I/O layer feeds every received frame to :meth:`ClientSession.receive` and acts on the
:class:`Received` verdict (never re-deriving the reply id or the interrupted state); it sends what
:meth:`ClientSession.data_to_send` hands back. Time is passed in (``now``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicecli.protocol.constants import RESUME_WINDOW_S
from voicecli.protocol.events import (
    ClientEvent,
    InputAudio,
    LocalProtocolError,
    ServerEvent,
    SessionEnd,
    SessionError,
    SessionReady,
    SessionResume,
    SessionUpdate,
    ToolCall,
    ToolResult,
    decode_server_event,
    encode,
    encode_input_audio,
)
from voicecli.session.rules import (
    BARGE_IN,
    CLOSED,
    CONNECT_FAILED,
    DROP,
    GATE_CLOSES,
    GATE_OPENS,
    RESULT_READY,
    CallState,
    ConnState,
    Machine,
    ReplyState,
    Role,
    Verdict,
    close_key,
    event_key,
)

State = ConnState   # the connection states, under the name callers know
__all__ = ["RESUME_WINDOW_S", "ClientSession", "Received", "State"]

_CONN = 0           # the one key of the connection machine
_STATUS = {CallState.SENT: "sent", CallState.RELEASABLE: "held"}


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded server event and the session's verdict on it.

    ``stale``: do not act on it (audio of an interrupted reply, a repeated tool.call).
    ``reply_id``: the reply it belongs to (its own ``reply_id``, else the reply in progress).
    ``interrupted``: that reply is interrupted (``newly_interrupted``: by this very event).
    ``follow_up``: a ``reply.done{completed}`` of a reply that made tool calls: the server will
    answer their results with a follow-up reply (6.5), so the turn is not over yet.
    """

    event: ServerEvent
    stale: bool = False
    reply_id: str | None = None
    interrupted: bool = False
    newly_interrupted: bool = False
    follow_up: bool = False


@dataclass(slots=True)
class ClientSession:
    """One logical session, across reconnects. Create it with the ``session`` config dict."""

    config: dict[str, Any]
    session_id: str | None = None
    resume_token: str = field(default="", repr=False)
    resolved_config: dict[str, Any] | None = None
    disconnected_at: float | None = None
    current_reply: str | None = None
    reply_done_latest: bool = False
    _outbox: list[str] = field(default_factory=list)
    _conn: Machine[int] = field(default_factory=lambda: Machine("connection", Role.CLIENT))
    _replies: Machine[str] = field(default_factory=lambda: Machine("reply", Role.CLIENT, limit=64))
    _calls: Machine[str] = field(default_factory=lambda: Machine("call", Role.CLIENT, limit=256))
    _call_info: OrderedDict[str, tuple[str | None, str]] = field(default_factory=OrderedDict)  # reply, name
    _results: dict[str, ToolResult] = field(default_factory=dict)   # RELEASABLE calls' results

    def __post_init__(self) -> None:
        self._conn.states[_CONN] = ConnState.IDLE

    @property
    def state(self) -> ConnState:
        state: ConnState = self._conn.get(_CONN)
        return state

    @property
    def ready(self) -> bool:
        return self.state is ConnState.READY

    # ------------------------------------------------------------------ sending

    def start(self) -> None:
        """Queue the first message of a fresh session: ``session.update`` (protocol.md 3.1)."""
        self._new_connection()
        self._send(SessionUpdate(self.config))
        self.session_id = None
        self.resume_token = ""

    def resume(self, now: float) -> None:
        """Queue ``session.resume`` as the first message of a new connection (6.7)."""
        if not self.can_resume(now):
            raise LocalProtocolError("session cannot be resumed (no session id or window over)")
        assert self.session_id is not None
        self._new_connection()
        self._send(SessionResume(self.session_id))

    def send_audio(self, pcm: bytes) -> None:
        """Queue one ``input.audio`` chunk. Raises LocalProtocolError before ``session.ready``."""
        self._queue(encode_input_audio(pcm), InputAudio.type)   # no event object on the live path

    def send(self, event: ClientEvent) -> None:
        """Queue any other client event (reply.create, conversation.message, session.update...)."""
        if isinstance(event, (InputAudio, ToolResult, SessionEnd, SessionResume)):
            raise LocalProtocolError(f"use the dedicated method for {event.type}")
        self._send(event)

    def submit_tool_result(self, call_id: str, result: str, is_error: bool = False) -> bool:
        """Hand in a finished tool's result. It is sent at once if ``reply.done`` is the latest
        event, held until the next ``reply.done`` otherwise, and dropped if the call's reply was
        interrupted or superseded. Returns False if it was dropped."""
        if self._calls.step(call_id, Role.LOCAL, RESULT_READY)[1] is Verdict.STALE:
            return False
        self._results[call_id] = ToolResult(call_id, result, is_error)
        self._release_results()
        return True

    def end(self) -> None:
        """Queue ``session.end`` (protocol.md 3.7) if the connection allows it; the caller then
        waits briefly for ``session.ended`` and closes."""
        if self._conn.allowed(_CONN, Role.CLIENT, SessionEnd.type):
            self._send(SessionEnd())

    def data_to_send(self) -> list[str]:
        """Text frames to send now, in order. Empties the outbox."""
        out, self._outbox = self._outbox, []
        return out

    def _send(self, event: ClientEvent) -> None:
        self._queue(encode(event), event.type)

    def _queue(self, frame: str, event_type: str) -> None:
        """``frame`` was encoded first (strict: a bad value raises before any state changes)."""
        self._conn.step(_CONN, Role.CLIENT, event_type)
        self._outbox.append(frame)

    def _new_connection(self) -> None:
        self._outbox.clear()
        self.current_reply = None
        self.reply_done_latest = False

    # ------------------------------------------------------------------ receiving

    def receive(self, text: str | bytes, now: float) -> Received:
        """Decode a server frame and apply it. Raises RemoteProtocolError for garbage frames and
        for events the connection's state does not allow (nothing changes then)."""
        return self.receive_event(decode_server_event(text), now)

    def receive_event(self, event: ServerEvent, now: float) -> Received:
        key = event_key(event)
        self._conn.step(_CONN, Role.SERVER, key)
        rid = self._reply_of(event)
        was_interrupted = rid is not None and self._replies.get(rid) is ReplyState.INTERRUPTED
        stale = False
        if rid is not None and self._replies.allowed(rid, Role.SERVER, key):
            stale = self._replies.step(rid, Role.SERVER, key)[1] is Verdict.STALE
        if isinstance(event, ToolCall) and not stale:
            stale = self._calls.step(event.call_id, Role.SERVER, key)[1] is Verdict.STALE
        interrupted = rid is not None and self._replies.get(rid) is ReplyState.INTERRUPTED
        if stale:
            return Received(event, True, rid, interrupted)
        follow_up = self._apply(event, key, rid)
        if interrupted and not was_interrupted:
            self._drop_calls_of(rid)
        self._release_results()
        return Received(event, False, rid, interrupted, interrupted and not was_interrupted, follow_up)

    def _reply_of(self, event: ServerEvent) -> str | None:
        if isinstance(event, ToolCall):
            return self.current_reply
        rid = getattr(event, "reply_id", None)
        if rid is None:
            return None
        return str(rid) or self.current_reply

    def _apply(self, event: ServerEvent, key: str, rid: str | None) -> bool:
        """Consequences beyond the table's states. Returns the ``follow_up`` verdict."""
        if key in GATE_OPENS:
            self.reply_done_latest = True
        elif key in GATE_CLOSES:
            self.reply_done_latest = False
        if isinstance(event, SessionReady):
            self.session_id = event.session_id or self.session_id
            self.resume_token = event.resume_token or self.resume_token
            self.resolved_config = event.config or self.resolved_config
            self.disconnected_at = None
        elif isinstance(event, SessionError) and self.state is ConnState.REFUSED:
            self.session_id = None
        elif key == "reply.started" and rid is not None:
            self._supersede(rid)
            self.current_reply = rid
        elif isinstance(event, ToolCall):
            self._call_info[event.call_id] = (rid, event.name)
            _trim(self._call_info, 256)
        elif key in GATE_OPENS:
            if self.current_reply == rid:
                self.current_reply = None
            # a completed reply that made tool calls: the server answers their results (6.5)
            return key == "reply.done" and any(r == rid for r, _ in self._call_info.values())
        return False

    def interrupt(self, reply_id: str) -> None:
        """Mark a reply interrupted before the server says so (e.g. on a local barge-in): its late
        audio is stale and its tool results are dropped."""
        self._replies.step(reply_id, Role.LOCAL, BARGE_IN)
        self._drop_calls_of(reply_id)

    def is_interrupted(self, reply_id: str) -> bool:
        return self._replies.get(reply_id) is ReplyState.INTERRUPTED

    def _drop_calls_of(self, reply_id: str | None) -> None:
        self._drop_calls(lambda rid, name: rid == reply_id)

    def _supersede(self, new_reply: str) -> None:
        """A newer ``reply.started``: results still owed for calls of earlier replies will not be
        used (the server moved on, protocol.md 3.3 / 6.5 step 5), so they are dropped. Calls of
        hold-mode tools are kept: ``reply.create`` status updates do not end a hold."""
        self._drop_calls(lambda rid, name: rid is not None and rid != new_reply
                         and self._tool_mode(name) != "hold")

    def _drop_calls(self, which: Callable[[str | None, str], bool]) -> None:
        for call_id, (rid, name) in self._call_info.items():
            if which(rid, name) and self._calls.get(call_id) in (CallState.PENDING, CallState.RELEASABLE):
                self._calls.step(call_id, Role.LOCAL, DROP)
                self._results.pop(call_id, None)

    def _tool_mode(self, name: str) -> str | None:
        for tool in self.config.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name") == name:
                mode = tool.get("execution_mode")
                return mode if isinstance(mode, str) else None
        return None

    def tool_result_state(self, call_id: str) -> str:
        """What became of a submitted result: ``sent`` (queued to send), ``held`` (waiting for
        ``reply.done`` to be the latest event) or ``dropped``."""
        return _STATUS.get(self._calls.get(call_id), "dropped")

    def _release_results(self) -> None:
        if not (self.reply_done_latest and self.state is ConnState.READY):
            return
        results, self._results = self._results, {}
        for result in results.values():
            if self._calls.get(result.call_id) is None:
                # a burst of more than the map's limit of calls forgot this one while its result was
                # held; it was real (RESULT_READY admitted it), so admit it again the same way
                self._calls.step(result.call_id, Role.LOCAL, RESULT_READY)
            self._send(result)
            self._calls.step(result.call_id, Role.CLIENT, result.type)

    @property
    def pending_tool_results(self) -> int:
        return len(self._results)

    # ------------------------------------------------------------------ connection lifecycle

    def connection_lost(self, now: float, close_code: int | None = None) -> None:
        """The socket closed (``close_code`` as received; None: no close frame). Without
        ``session.ended`` this is a drop (protocol.md 4.4), unless the table says the code ends
        the session (a policy close)."""
        self._lost(close_key(close_code), now)

    def connect_failed(self, now: float, close_code: int | None = None) -> None:
        """A (re)connection attempt failed before ``session.ready`` (refused, timed out, closed
        with ``close_code``)."""
        key = close_key(close_code)
        self._lost(CONNECT_FAILED if key == CLOSED else key, now)

    def _lost(self, key: str, now: float) -> None:
        self._conn.step(_CONN, Role.LOCAL, key)
        if self.state is ConnState.DISCONNECTED and self.disconnected_at is None:
            self.disconnected_at = now
        self.current_reply = None
        self.reply_done_latest = False

    def can_resume(self, now: float) -> bool:
        """True if a ``session.resume`` may still work (a session id, inside the 30 s window)."""
        return (self.state is ConnState.DISCONNECTED and self.session_id is not None
                and self.disconnected_at is not None
                and now - self.disconnected_at < RESUME_WINDOW_S)

    @property
    def over(self) -> bool:
        """The session is over for good: ended, or failed with a session-ending error."""
        return self.state in (ConnState.ENDED, ConnState.FAILED)


def _trim(d: OrderedDict[str, Any], limit: int) -> None:
    while len(d) > limit:
        d.popitem(last=False)
