"""What the agent session asks its pump to do (effects), and the :class:`Wire` that checks every
server event against the rule table before it becomes an effect.

Sans-I/O: the agent session (``agent.py``, ``replies.py``) appends effects; the pump
(``pump.py``) drains and runs them in order. Times are wall-clock seconds (``time.time()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicecli.protocol.events import (
    ReplyAudio,
    ReplyDone,
    ReplyError,
    ReplyStarted,
    ServerEvent,
    TranscriptAgent,
    TranscriptAgentDelta,
)
from voicecli.session.rules import ERROR_ANSWER, ConnState, Machine, Role, Verdict, event_key

from .engines import ToolOutcome, TurnContext
from .session import Session

_REPLY_EVENTS = (ReplyStarted, ReplyAudio, TranscriptAgentDelta, TranscriptAgent, ReplyDone, ReplyError)


@dataclass(frozen=True, slots=True)
class Send:
    """Send this event (the pump stamps the ``timestamp`` and encodes it strictly)."""

    event: ServerEvent


@dataclass(frozen=True, slots=True)
class Close:
    """Close the WebSocket with ``code`` and stop reading."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call ``AgentSession.timer(name, now)`` at ``at`` (re-arming a name replaces it)."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(eq=False, slots=True)
class ReplyJob:
    """One reply to produce. ``text`` set: speak it verbatim (the greeting); else ask the brain
    with ``ctx`` (and ``outcomes`` for the follow-up of tool calls)."""

    reply_id: str
    item_id: str
    kind: str                           # "greeting" | "turn" | "create" | "tools"
    text: str | None = None
    ctx: TurnContext = field(default_factory=TurnContext)
    outcomes: list[ToolOutcome] | None = None


@dataclass(frozen=True, slots=True)
class StartReply:
    """Run the reply pipeline for ``job`` (``pipeline.py``); it reports back through
    ``AgentSession.reply_*`` and ends with ``reply_complete``."""

    job: ReplyJob


@dataclass(frozen=True, slots=True)
class CancelReply:
    """Stop the pipeline of this reply now (its wire side is already settled)."""

    reply_id: str


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Run speech-to-text on ``pcm`` in a worker, then call ``AgentSession.transcribed`` (with
    ``at_ms``). The pump does not wait for it before reading the next frame; it runs at most one
    partial at a time and may skip partials to keep their CPU bounded (the agent drops results
    that come too late). ``at_ms`` set: a speculative final on the audio up to that input time,
    started when silence began (kept only if the turn ends there)."""

    item_id: str
    pcm: bytes
    final: bool
    at_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Register:
    """A new session: add it to the registry and serve it on this pump."""

    session: Session


@dataclass(frozen=True, slots=True)
class TakeOver:
    """A resumed session: take it over through the registry (the old pump is closed by it)."""

    session: Session


@dataclass(frozen=True, slots=True)
class EndSession:
    """``session.end``: the registry ends the session for good (not resumable, 3.7)."""

    session: Session


@dataclass(frozen=True, slots=True)
class Detach:
    """The connection closed without ``session.end``: keep the session for resume (6.7)."""

    session: Session


Effect = (Send | Close | ArmTimer | CancelTimer | StartReply | CancelReply | Transcribe | Register
          | TakeOver | EndSession | Detach)


class Wire:
    """The server's side of the rule table, and the effect list.

    :meth:`send` steps an event we send through the connection machine (and the reply machine for
    reply events) as ``Role.SERVER``: a missing entry raises LocalProtocolError (our bug); a STALE
    verdict (e.g. audio of a reply already interrupted) means the event is not sent."""

    def __init__(self) -> None:
        self.conn: Machine[int] = Machine("connection", Role.SERVER)
        self.conn.states[0] = ConnState.IDLE
        self.replies: Machine[str] = Machine("reply", Role.SERVER)
        self.calls: Machine[str] = Machine("call", Role.SERVER, limit=1024)
        self.effects: list[Effect] = []

    def send(self, event: ServerEvent, *, answer: bool = False) -> bool:
        """Queue ``event`` if the rules allow it; False if the table calls it stale. ``answer``:
        a ``session.error`` answering one bad message (the state stays, ``ERROR_ANSWER``)."""
        key = ERROR_ANSWER if answer else event_key(event)
        if isinstance(event, _REPLY_EVENTS):
            _, verdict = self.replies.step(event.reply_id, Role.SERVER, key)
            if verdict is Verdict.STALE:
                return False
        self.conn.step(0, Role.SERVER, key)
        self.effects.append(Send(event))
        return True

    def do(self, effect: Effect) -> None:
        self.effects.append(effect)

    def drain(self) -> list[Effect]:
        out, self.effects = self.effects, []
        return out
