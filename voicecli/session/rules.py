"""The conversation rules of the Voice Agent protocol as data: one table, two roles (design.md 3).

Theory of operation (after h11's ``_state.py``): a session is three kinds of small state machines,

* the **connection** (one per WebSocket): ``IDLE -> AWAITING_READY|RESUMING -> READY -> ENDING ->
  ENDED``, or ``DISCONNECTED`` / ``REFUSED`` / ``FAILED`` when it breaks;
* a **reply** per ``reply_id``: ``STARTED -> DONE`` or ``INTERRUPTED``;
* a **tool call** per ``call_id``: ``PENDING -> RELEASABLE -> SENT``, or ``DROPPED``.

Every event has a *sender* (:class:`Role`). ``TRANSITIONS[kind][sender][state][key]`` gives the next
state and a verdict for an event of that ``key`` (its wire ``type``, qualified where the type alone
does not decide, see :func:`event_key`). The table is the same for both sides, like websockets'
``Protocol(side)``: the client session checks its own sends against ``TRANSITIONS[...][CLIENT]`` and
what it receives against ``[SERVER]``; the local server's agent session does the opposite. A
missing entry is a protocol violation: :class:`~voicecli.protocol.events.LocalProtocolError` when
we are the sender (a bug in voicecli), :class:`~voicecli.protocol.events.RemoteProtocolError` when
the peer is (answer it, ignore it, or report it). Pseudo-events that never cross the wire (the
socket closing, a connect that failed, a barge-in heard locally, a tool finishing) are sent by
:data:`Role.LOCAL`, i.e. by whoever observes them.

Each machine below keeps its states in a bounded ordered map, so nothing grows without bound in a
long session. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

from voicecli.protocol.events import (
    LocalProtocolError,
    RemoteProtocolError,
    ReplyDone,
    SessionError,
    TranscriptAgent,
    UnknownEvent,
)

__all__ = [
    "AUTH_CODES",
    "BARGE_IN",
    "CLOSED",
    "CLOSED_POLICY",
    "CONNECT_FAILED",
    "DROP",
    "FATAL_CODES",
    "GATE_CLOSES",
    "GATE_OPENS",
    "POLICY_CLOSE_CODES",
    "RESULT_READY",
    "RESUME_FAILED_CODES",
    "TRANSITIONS",
    "WARNING_CODES",
    "CallState",
    "ConnState",
    "Machine",
    "ReplyState",
    "Role",
    "Step",
    "Verdict",
    "error_kind",
    "event_key",
    "close_key",
    "ERROR_ANSWER",
]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"
    LOCAL = "local"      # pseudo-events observed by either side (socket closed, barge-in, ...)

    @property
    def peer(self) -> Role:
        return {Role.CLIENT: Role.SERVER, Role.SERVER: Role.CLIENT}.get(self, Role.LOCAL)


class ConnState(enum.Enum):
    IDLE = "idle"                  # connected, no session message yet
    AWAITING_READY = "awaiting_ready"
    RESUMING = "resuming"          # session.resume sent, session.ready not yet received
    READY = "ready"
    ENDING = "ending"              # session.end sent
    ENDED = "ended"                # session.ended received (or the close after session.end)
    DISCONNECTED = "disconnected"  # closed without session.ended: resumable in the window (6.7)
    REFUSED = "refused"            # the server refused session.resume: start a fresh session
    FAILED = "failed"              # a session-ending error (4.3): neither resume nor retry


class ReplyState(enum.Enum):
    STARTED = "started"
    DONE = "done"
    INTERRUPTED = "interrupted"


class CallState(enum.Enum):
    PENDING = "pending"        # tool.call issued, no result yet
    RELEASABLE = "releasable"  # result in hand, waiting for reply.done to be the latest event
    SENT = "sent"              # tool.result on the wire
    DROPPED = "dropped"        # its reply was interrupted or superseded, or it timed out


class Verdict(enum.Enum):
    OK = "ok"
    STALE = "stale"            # do not act on it (audio of an interrupted reply, a repeated call)


# Session error codes (protocol.md 4.3, 6.7). One set each; everything derives from these.
AUTH_CODES: Final = frozenset({"unauthorized", "UNAUTHORIZED", "FORBIDDEN", "forbidden"})
RESUME_FAILED_CODES: Final = frozenset({"session_not_found", "session_expired", "session_forbidden"})
FATAL_CODES: Final = AUTH_CODES | RESUME_FAILED_CODES | frozenset({
    "agent_not_found", "agent_init_failed", "agent_timeout", "INTERNAL_ERROR"})
WARNING_CODES: Final = frozenset({"audio_rate_violation"})   # never change a state

# Pseudo-event keys (never on the wire).
CLOSED: Final = "x.connection_closed"
CONNECT_FAILED: Final = "x.connect_failed"
CLOSED_POLICY: Final = "x.connection_closed/policy"   # close 1008 (or a connect that ended with it)
BARGE_IN: Final = "x.barge_in"           # the client cut a reply locally (playback flushed)
RESULT_READY: Final = "x.result_ready"   # a tool finished; its result is in hand
DROP: Final = "x.drop"                   # the call's reply was interrupted or superseded / timed out
# A session.error that answers one bad client message and keeps the session as it was (4.3 "stays
# open"). Only the server can tell it from the rejection of a first session.update (which sends the
# connection back to IDLE), so only the server steps its own such errors with this key.
ERROR_ANSWER: Final = "session.error/answer"


def error_kind(code: str) -> str:
    """``session.error`` key qualifier: ``/fatal``, ``/refused``, ``/warning`` or ``""``."""
    if code in RESUME_FAILED_CODES:
        return "/refused"
    if code in FATAL_CODES:
        return "/fatal"
    if code in WARNING_CODES:
        return "/warning"
    return ""


# Close codes that end a session for good however they come (protocol.md 1.4): 1008 is a policy
# close (auth, capacity, resume refused, TTL); with or without a session.error first, a resume of
# it cannot work. Every other code without session.ended (1006, 1011, 1009, 4xxx) is a drop (4.4).
POLICY_CLOSE_CODES: Final = frozenset({1008})


def close_key(code: int | None) -> str:
    """The pseudo-event key of a socket that closed with ``code`` (None: no close frame)."""
    return CLOSED_POLICY if code in POLICY_CLOSE_CODES else CLOSED


def event_key(event: Any) -> str:
    """The table key of a wire event: its ``type``, qualified where the type alone does not decide
    (``session.error/fatal``, ``reply.done/interrupted``, ``transcript.agent/interrupted``);
    unknown event types are all ``unknown``."""
    if isinstance(event, UnknownEvent):
        return "unknown"
    if isinstance(event, SessionError):
        return "session.error" + error_kind(event.code)
    if isinstance(event, ReplyDone) and event.interrupted:
        return "reply.done/interrupted"
    if isinstance(event, TranscriptAgent) and event.interrupted:
        return "transcript.agent/interrupted"
    return str(event.type)


# ------------------------------------------------------------------------------------------
# The table. Entries are (next state, verdict); a missing entry is a protocol violation.
# ------------------------------------------------------------------------------------------

Step = tuple[Any, Verdict]
C, S, L = Role.CLIENT, Role.SERVER, Role.LOCAL
OK, STALE = Verdict.OK, Verdict.STALE
_C = ConnState

_REPLY_EVENTS = ("reply.started", "reply.audio", "transcript.agent.delta", "transcript.agent",
                 "transcript.agent/interrupted", "reply.done", "reply.done/interrupted", "tool.call",
                 "reply.error")
_TURN_EVENTS = ("input.speech.started", "input.speech.stopped", "transcript.user.delta",
                "transcript.user")
_IN_SESSION = ("session.updated", "session.error", *_TURN_EVENTS, *_REPLY_EVENTS)
_CLIENT_IN_SESSION = ("session.update", "input.audio", "tool.result", "reply.create",
                      "conversation.message", "reply.cancel")


def _same(state: Any, keys: tuple[str, ...]) -> dict[str, Step]:
    return {k: (state, OK) for k in keys}


def _everywhere(states: type[enum.Enum], entries: Mapping[str, Any]) -> dict[Any, dict[str, Step]]:
    """Entries valid in every state; a value of None means "stay in the current state"."""
    return {st: {k: ((st if v is None else v), OK) for k, v in entries.items()} for st in states}


def _merge(*tables: Mapping[Any, Mapping[str, Step]]) -> dict[Any, dict[str, Step]]:
    out: dict[Any, dict[str, Step]] = {}
    for table in tables:
        for state, entries in table.items():
            out.setdefault(state, {}).update(entries)
    return out


_CONNECTION: dict[Role, dict[Any, dict[str, Step]]] = {
    C: {   # protocol.md 3.1: session.update or session.resume first; 3.2: no audio before ready
        _C.IDLE: {"session.update": (_C.AWAITING_READY, OK), "session.resume": (_C.RESUMING, OK),
                  "session.end": (_C.ENDING, OK)},   # 3.7: ending a connection that has no session yet
        _C.DISCONNECTED: {"session.update": (_C.AWAITING_READY, OK),
                          "session.resume": (_C.RESUMING, OK)},
        _C.REFUSED: {"session.update": (_C.AWAITING_READY, OK)},
        _C.AWAITING_READY: {"session.update": (_C.AWAITING_READY, OK), "session.end": (_C.ENDING, OK)},
        _C.RESUMING: {"session.end": (_C.ENDING, OK)},
        _C.READY: {**_same(_C.READY, _CLIENT_IN_SESSION), "session.end": (_C.ENDING, OK)},
    },
    S: _merge(
        _everywhere(_C, {"unknown": None, "session.error/warning": None, ERROR_ANSWER: None}),
        {
            # a first update the server rejects: session.error, and it waits for a corrected one
            _C.IDLE: {"session.error": (_C.IDLE, OK), "session.error/fatal": (_C.FAILED, OK),
                      "session.error/refused": (_C.FAILED, OK)},
            _C.AWAITING_READY: {"session.updated": (_C.AWAITING_READY, OK),
                                "session.ready": (_C.READY, OK), "session.error": (_C.IDLE, OK),
                                "session.error/fatal": (_C.FAILED, OK),
                                "session.error/refused": (_C.FAILED, OK)},
            _C.RESUMING: {"session.ready": (_C.READY, OK), "session.updated": (_C.RESUMING, OK),
                          "session.error": (_C.IDLE, OK), "session.error/fatal": (_C.FAILED, OK),
                          "session.error/refused": (_C.REFUSED, OK)},   # 6.7: start afresh
            _C.READY: {**_same(_C.READY, _IN_SESSION), "session.ready": (_C.READY, OK),
                       "session.ended": (_C.ENDED, OK), "session.error/fatal": (_C.FAILED, OK),
                       "session.error/refused": (_C.FAILED, OK)},
            _C.ENDING: {**_same(_C.ENDING, _IN_SESSION), "session.ended": (_C.ENDED, OK),
                        "session.error/fatal": (_C.FAILED, OK), "session.error/refused": (_C.FAILED, OK)},
            _C.ENDED: {"session.ended": (_C.ENDED, OK)},
        },
    ),
    L: {   # the socket closed (or never opened): a drop unless the session ended first (4.4);
        # a policy close (1008) is not a drop: the server ended the session, no resume (1.4)
        **{st: {CLOSED: (_C.DISCONNECTED, OK), CONNECT_FAILED: (_C.DISCONNECTED, OK),
                CLOSED_POLICY: (_C.FAILED, OK)}
           for st in (_C.IDLE, _C.AWAITING_READY, _C.RESUMING, _C.READY, _C.DISCONNECTED)},
        **{st: {CLOSED: (st, OK), CONNECT_FAILED: (st, OK), CLOSED_POLICY: (st, OK)}
           for st in (_C.ENDED, _C.FAILED)},
        _C.ENDING: {CLOSED: (_C.ENDED, OK), CONNECT_FAILED: (_C.ENDED, OK), CLOSED_POLICY: (_C.ENDED, OK)},
        # the 1008 that follows session_not_found is the refusal itself: start afresh (6.7)
        _C.REFUSED: {CLOSED: (_C.REFUSED, OK), CONNECT_FAILED: (_C.REFUSED, OK),
                     CLOSED_POLICY: (_C.REFUSED, OK)},
    },
}

_R = ReplyState
_STREAMING = ("reply.audio", "transcript.agent.delta", "tool.call", "transcript.agent", "reply.error")
_REPLY: dict[Role, dict[Any, dict[str, Step]]] = {
    S: {
        # None = a reply_id not seen yet. Events of a reply without reply.started are tolerated
        # as an implicit start (servers that skip it; our own server always sends it).
        None: {"reply.started": (_R.STARTED, OK), **_same(_R.STARTED, _STREAMING),
               "reply.done": (_R.DONE, OK), "reply.done/interrupted": (_R.INTERRUPTED, OK),
               "transcript.agent/interrupted": (_R.INTERRUPTED, OK)},
        _R.STARTED: {**_same(_R.STARTED, ("reply.started", *_STREAMING)),
                     "transcript.agent/interrupted": (_R.INTERRUPTED, OK),   # 6.3: before reply.done
                     "reply.done": (_R.DONE, OK), "reply.done/interrupted": (_R.INTERRUPTED, OK)},
        # 6.3: audio (and words, calls) still in flight after an interruption are stale
        _R.INTERRUPTED: {**{k: (_R.INTERRUPTED, STALE) for k in ("reply.audio", "transcript.agent.delta",
                                                                  "tool.call")},
                         "transcript.agent/interrupted": (_R.INTERRUPTED, OK),
                         "transcript.agent": (_R.INTERRUPTED, OK),
                         "reply.done": (_R.INTERRUPTED, OK), "reply.done/interrupted": (_R.INTERRUPTED, OK),
                         "reply.error": (_R.INTERRUPTED, OK)},
        _R.DONE: {"transcript.agent": (_R.DONE, OK), "reply.done": (_R.DONE, OK),
                  "reply.audio": (_R.DONE, STALE), "transcript.agent.delta": (_R.DONE, STALE)},
    },
    L: {   # a barge-in cut the reply locally (client) / the server decided to interrupt it
        None: {BARGE_IN: (_R.INTERRUPTED, OK)},
        _R.STARTED: {BARGE_IN: (_R.INTERRUPTED, OK)},
        _R.DONE: {BARGE_IN: (_R.INTERRUPTED, OK)},     # still playing locally when cut
        _R.INTERRUPTED: {BARGE_IN: (_R.INTERRUPTED, OK)},
    },
    C: {},
}

_T = CallState
_CALL: dict[Role, dict[Any, dict[str, Step]]] = {
    S: {
        None: {"tool.call": (_T.PENDING, OK)},
        **{st: {"tool.call": (st, STALE)} for st in _T},   # a repeated call_id (4.14)
    },
    C: {   # 3.3: one result per call, sent while reply.done is the latest event (the GATE below).
        # No entry for a new call_id: the server answers an unknown call_id with invalid_value.
        _T.PENDING: {"tool.result": (_T.SENT, OK)},
        _T.RELEASABLE: {"tool.result": (_T.SENT, OK)},
        _T.SENT: {"tool.result": (_T.SENT, STALE)},       # duplicate: ignored by the server
        _T.DROPPED: {"tool.result": (_T.DROPPED, STALE)},  # too late: ignored by the server
    },
    L: {
        None: {RESULT_READY: (_T.RELEASABLE, OK), DROP: (_T.DROPPED, OK)},
        _T.PENDING: {RESULT_READY: (_T.RELEASABLE, OK), DROP: (_T.DROPPED, OK)},
        _T.RELEASABLE: {RESULT_READY: (_T.RELEASABLE, STALE), DROP: (_T.DROPPED, OK)},
        _T.SENT: {RESULT_READY: (_T.SENT, STALE), DROP: (_T.SENT, OK)},
        _T.DROPPED: {RESULT_READY: (_T.DROPPED, STALE), DROP: (_T.DROPPED, OK)},
    },
}

TRANSITIONS: Final = {"connection": _CONNECTION, "reply": _REPLY, "call": _CALL}

# The tool-result gate (protocol.md 3.3): results go out only while reply.done is the latest event
# received. These keys open it; these close it; every other event leaves it as it is.
GATE_OPENS: Final = frozenset({"reply.done", "reply.done/interrupted"})
GATE_CLOSES: Final = frozenset({"reply.started", "reply.audio", "transcript.agent.delta", "tool.call",
                                "input.speech.started"})


# ------------------------------------------------------------------------------------------
# Machines
# ------------------------------------------------------------------------------------------

K = TypeVar("K")


class Machine(Generic[K]):
    """State per key (one connection, or one per reply/call id) driven by one kind of the table.

    ``me`` is the role of the side using it. :meth:`step` applies an event from ``sender``:
    missing entries raise LocalProtocolError if ``sender`` is ``me`` (or LOCAL), else
    RemoteProtocolError, and leave the state unchanged. At most ``limit`` keys are kept (oldest
    forgotten first)."""

    def __init__(self, kind: str, me: Role, limit: int = 256) -> None:
        self.table: dict[Role, dict[Any, dict[str, Step]]] = TRANSITIONS[kind]
        self.kind, self.me, self.limit = kind, me, limit
        self.states: OrderedDict[K, Any] = OrderedDict()

    def get(self, key: K) -> Any:
        return self.states.get(key)

    def allowed(self, key: K, sender: Role, event: str) -> bool:
        return event in self.table[sender].get(self.states.get(key), {})

    def step(self, key: K, sender: Role, event: str) -> Step:
        state = self.states.get(key)
        entry = self.table[sender].get(state, {}).get(event)
        if entry is None:
            where = state.value if isinstance(state, enum.Enum) else "new"
            msg = f"{event} is not allowed for a {self.kind} in state {where} (sent by the {sender.value})"
            if sender is self.me or sender is Role.LOCAL:
                raise LocalProtocolError(msg)
            raise RemoteProtocolError(msg)
        self.states[key] = entry[0]
        self.states.move_to_end(key)
        while len(self.states) > self.limit:
            self.states.popitem(last=False)
        return entry

    def forget(self, key: K) -> None:
        self.states.pop(key, None)
