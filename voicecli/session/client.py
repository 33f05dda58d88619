"""The client side of a Voice Agent session as a sans-I/O state machine (design.md principle 3).

The rules the real service relies on live here, once:

* ``session.update`` (or ``session.resume``) is the first message of a connection (protocol.md 3.1);
* no ``input.audio`` before ``session.ready`` (3.2);
* a ``tool.result`` is sent only while ``reply.done`` is the latest event received, and results of
  a reply that ended ``interrupted`` are dropped (3.3, 6.5), as are results still owed when a newer
  ``reply.started`` shows the agent moved on (6.5 step 5; hold-mode calls excepted);
* ``reply.audio`` of an interrupted ``reply_id`` is stale and must not be played (6.3);
* a connection that closes without ``session.ended`` can be resumed within 30 s (6.7).

Usage: the I/O layer feeds every received frame to :meth:`ClientSession.receive` and sends
whatever :meth:`ClientSession.data_to_send` hands back. Time is passed in (``now``); this module
never reads a clock or sleeps (principle 4).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from voicecli.protocol.events import (
    ClientEvent,
    InputAudio,
    InputSpeechStarted,
    LocalProtocolError,
    ReplyAudio,
    ReplyDone,
    ReplyStarted,
    ServerEvent,
    SessionEnd,
    SessionEnded,
    SessionError,
    SessionReady,
    SessionResume,
    SessionUpdate,
    ToolCall,
    ToolResult,
    TranscriptAgentDelta,
    decode_server_event,
    encode,
)

RESUME_WINDOW_S = 30.0
# Errors that end a session for good (protocol.md 4.3, 6.7): no point resuming.
FATAL_CODES = frozenset({
    "unauthorized", "UNAUTHORIZED", "FORBIDDEN", "forbidden", "agent_not_found", "session_not_found",
    "session_forbidden", "session_expired", "agent_init_failed", "agent_timeout", "INTERNAL_ERROR",
})
RESUME_FAILED_CODES = frozenset({"session_not_found", "session_expired", "session_forbidden"})
AUTH_CODES = frozenset({"unauthorized", "UNAUTHORIZED", "FORBIDDEN", "forbidden"})


class State(enum.Enum):
    IDLE = "idle"                  # connected, nothing sent yet
    AWAITING_READY = "awaiting_ready"
    READY = "ready"
    ENDING = "ending"              # session.end sent
    ENDED = "ended"                # session.ended received
    DISCONNECTED = "disconnected"  # connection lost without session.ended


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded server event and what the session decided about it.

    ``stale``: do not act on it (reply.audio of an interrupted reply; a repeated tool.call).
    """

    event: ServerEvent
    stale: bool = False


@dataclass(slots=True)
class _PendingResult:
    result: ToolResult
    reply_id: str | None


@dataclass(slots=True)
class ClientSession:
    """One logical session, across reconnects. Create it with the ``session`` config dict."""

    config: dict[str, Any]
    state: State = State.IDLE
    session_id: str | None = None
    resume_token: str = field(default="", repr=False)
    resolved_config: dict[str, Any] | None = None
    disconnected_at: float | None = None
    current_reply: str | None = None
    reply_done_latest: bool = False
    _outbox: list[str] = field(default_factory=list)
    _interrupted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _call_reply: OrderedDict[str, str | None] = field(default_factory=OrderedDict)
    _pending: list[_PendingResult] = field(default_factory=list)
    _sent_results: set[str] = field(default_factory=set)
    _dropped_calls: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _hold_calls: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ sending

    def start(self) -> None:
        """Queue the first message of a fresh session: ``session.update`` (protocol.md 3.1)."""
        if self.state not in (State.IDLE, State.DISCONNECTED):
            raise LocalProtocolError(f"cannot start a session in state {self.state.value}")
        self._reset_connection()
        self.session_id = None
        self.resume_token = ""
        self._queue(SessionUpdate(self.config))

    def resume(self, now: float) -> None:
        """Queue ``session.resume`` as the first message of a new connection (6.7)."""
        if not self.can_resume(now):
            raise LocalProtocolError("session cannot be resumed (no session id or window over)")
        assert self.session_id is not None
        self._reset_connection()
        self._queue(SessionResume(self.session_id))

    def send_audio(self, pcm: bytes) -> None:
        """Queue one ``input.audio`` chunk. Raises LocalProtocolError before ``session.ready``."""
        if self.state is not State.READY:
            raise LocalProtocolError(f"input.audio is not allowed before session.ready "
                                     f"(state {self.state.value})")
        self._queue(InputAudio(pcm))

    def send(self, event: ClientEvent) -> None:
        """Queue any other client event (reply.create, conversation.message, session.update...)."""
        if isinstance(event, (InputAudio, ToolResult, SessionEnd, SessionResume)):
            raise LocalProtocolError(f"use the dedicated method for {event.type}")
        if self.state is not State.READY and not (isinstance(event, SessionUpdate)
                                                   and self.state is State.AWAITING_READY):
            raise LocalProtocolError(f"{event.type} is not allowed in state {self.state.value}")
        self._queue(event)

    def submit_tool_result(self, call_id: str, result: str, is_error: bool = False) -> bool:
        """Hand in a finished tool's result. It is sent at once if ``reply.done`` is the latest
        event and its reply was not interrupted, held until the next ``reply.done`` otherwise,
        and dropped if the call's reply was interrupted. Returns False if it was dropped."""
        if call_id in self._sent_results or call_id in self._dropped_calls:
            return False
        reply_id = self._call_reply.get(call_id)
        if reply_id is not None and reply_id in self._interrupted:
            return False
        self._pending.append(_PendingResult(ToolResult(call_id, result, is_error), reply_id))
        if self.reply_done_latest and self.state is State.READY:
            self._flush_results()
        return True

    def end(self) -> None:
        """Queue ``session.end`` (protocol.md 3.7); the caller then waits briefly for
        ``session.ended`` and closes."""
        if self.state in (State.READY, State.AWAITING_READY):
            self._queue(SessionEnd())
            self.state = State.ENDING

    def data_to_send(self) -> list[str]:
        """Text frames to send now, in order. Empties the outbox."""
        out, self._outbox = self._outbox, []
        return out

    # ------------------------------------------------------------------ receiving

    def receive(self, text: str | bytes, now: float) -> Received:
        """Decode a server frame and apply it. Raises RemoteProtocolError for garbage frames."""
        return self.receive_event(decode_server_event(text), now)

    def receive_event(self, event: ServerEvent, now: float) -> Received:
        if isinstance(event, ReplyAudio):
            rid = event.reply_id or self.current_reply
            if rid is not None and rid in self._interrupted:
                return Received(event, stale=True)
            self.reply_done_latest = False
            return Received(event)
        if isinstance(event, SessionReady):
            self.state = State.READY
            self.session_id = event.session_id or self.session_id
            self.resume_token = event.resume_token or self.resume_token
            self.resolved_config = event.config or self.resolved_config
            self.disconnected_at = None
        elif isinstance(event, ReplyStarted):
            self._supersede(event.reply_id)
            self.current_reply = event.reply_id
            self.reply_done_latest = False
        elif isinstance(event, InputSpeechStarted) or isinstance(event, TranscriptAgentDelta):
            self.reply_done_latest = False
        elif isinstance(event, ToolCall):
            if event.call_id in self._call_reply:
                return Received(event, stale=True)
            self._call_reply[event.call_id] = self.current_reply
            _trim(self._call_reply, 256)
            if self._tool_mode(event.name) == "hold":
                self._hold_calls.add(event.call_id)
            self.reply_done_latest = False
        elif isinstance(event, ReplyDone):
            self._on_reply_done(event)
        elif isinstance(event, SessionEnded):
            self.state = State.ENDED
        elif isinstance(event, SessionError):
            if event.code in RESUME_FAILED_CODES:
                self.session_id = None
        return Received(event)

    def _on_reply_done(self, event: ReplyDone) -> None:
        rid = event.reply_id or self.current_reply
        if event.interrupted and rid is not None:
            self.interrupt(rid)
        self.reply_done_latest = True
        if self.current_reply == rid:
            self.current_reply = None
        if self.state is State.READY:
            self._flush_results()

    def interrupt(self, reply_id: str) -> None:
        """Mark a reply interrupted: its late audio is stale and its tool results are dropped.
        Called on ``reply.done{interrupted}``; the app may call it earlier (e.g. on barge-in)."""
        self._interrupted[reply_id] = None
        _trim(self._interrupted, 64)
        self._pending = [p for p in self._pending if p.reply_id != reply_id]

    def is_interrupted(self, reply_id: str) -> bool:
        return reply_id in self._interrupted

    def _tool_mode(self, name: str) -> str | None:
        for tool in self.config.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name") == name:
                mode = tool.get("execution_mode")
                return mode if isinstance(mode, str) else None
        return None

    def _supersede(self, new_reply: str) -> None:
        """A newer ``reply.started``: results still owed for calls of earlier replies will not be
        used (the server moved on, protocol.md 3.3 / 6.5 step 5), so they are dropped. Calls of
        hold-mode tools are kept: ``reply.create`` status updates do not end a hold."""
        for call_id, reply_id in self._call_reply.items():
            if (reply_id is not None and reply_id != new_reply and call_id not in self._sent_results
                    and call_id not in self._hold_calls):
                self._dropped_calls[call_id] = None
        _trim(self._dropped_calls, 256)
        self._pending = [p for p in self._pending if p.result.call_id not in self._dropped_calls]

    def tool_result_state(self, call_id: str) -> str:
        """What became of a submitted result: ``sent`` (queued to send), ``held`` (waiting for
        ``reply.done`` to be the latest event) or ``dropped``."""
        if call_id in self._sent_results:
            return "sent"
        if any(p.result.call_id == call_id for p in self._pending):
            return "held"
        return "dropped"

    def _flush_results(self) -> None:
        for pending in self._pending:
            self._sent_results.add(pending.result.call_id)
            self._queue(pending.result)
        self._pending.clear()

    @property
    def pending_tool_results(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ connection lifecycle

    def connection_lost(self, now: float) -> None:
        """The socket closed. Without ``session.ended`` this is a drop (protocol.md 4.4)."""
        if self.state is State.ENDED:
            return
        if self.state is State.ENDING:
            self.state = State.ENDED
            return
        self.state = State.DISCONNECTED
        self.disconnected_at = now
        self.current_reply = None
        self.reply_done_latest = False

    def can_resume(self, now: float) -> bool:
        """True if a ``session.resume`` may still work (a session id, inside the 30 s window)."""
        return (self.state is State.DISCONNECTED and self.session_id is not None
                and self.disconnected_at is not None
                and now - self.disconnected_at < RESUME_WINDOW_S)

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def _reset_connection(self) -> None:
        self._outbox.clear()
        self.state = State.AWAITING_READY
        self.current_reply = None
        self.reply_done_latest = False

    def _queue(self, event: ClientEvent) -> None:
        self._outbox.append(encode(event))


def _trim(d: OrderedDict[str, Any], limit: int) -> None:
    while len(d) > limit:
        d.popitem(last=False)
