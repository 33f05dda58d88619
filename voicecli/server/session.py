"""Server-side session state that outlives a connection, and the registry that keeps it for resume.

A :class:`Session` is born from the first valid ``session.update`` (protocol.md 6.1) and holds the
resolved config, the conversation history, the engines and the per-session ``stats`` counters.
The connection that serves it (``server/connection.py``) may drop; the :class:`SessionRegistry`
then keeps the session ``resume_window_s`` for ``session.resume`` (protocol.md 6.7) and forgets
it afterwards. ``session.end`` ends it at once (6.8).

``Session.stats`` (a :class:`collections.Counter`, so missing keys read 0) lets tests check that a
client kept the protocol's rules:

=============================  ====================================================================
``audio_before_ready``         ``input.audio`` received before ``session.ready`` (answered
                               ``invalid_format``; counted on the connection, merged in on ready)
``invalid_messages``           bad JSON / missing or unknown ``type`` / binary frames
``tool_results_before_done``   ``tool.result`` received before that reply's ``reply.done`` was sent
                               (accepted, but breaks the client rule of protocol.md 3.3 / 6.5)
``tool_results_stale``         results for calls of an interrupted or superseded reply (ignored)
``tool_results_duplicate``     a second result for the same ``call_id`` (ignored)
``tool_results_unknown``       results for a ``call_id`` never issued (``invalid_value``)
``rate_violations``            ``input.audio`` messages dropped for exceeding real time
``audio_dropped_ms``           how much audio those messages held
``user_turns``, ``tool_calls``, ``tool_timeouts``, ``replies_completed``, ``replies_interrupted``,
``resumes``                    plain activity counts
=============================  ====================================================================
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .engines import Brain, SpeechToText, TextToSpeech, TurnDetector

if TYPE_CHECKING:
    from .connection import ConnectionHandler

KEEP_ENDED = 256  # ended sessions kept (for their stats) after they end


def new_id(prefix: str, hex_chars: int = 32) -> str:
    """``sess_``/``resp_``/``msg_`` + 32 hex (protocol.md 2); ``call_`` ids use 16."""
    return prefix + secrets.token_hex(hex_chars // 2)


@dataclass(slots=True)
class Engines:
    """The four engines of one session (interfaces in ``server/engines.py``)."""

    detector: TurnDetector
    stt: SpeechToText
    brain: Brain
    tts: TextToSpeech


@dataclass(eq=False)
class Session:
    """One Voice Agent session. Mutated only from the server's event loop."""

    id: str
    owner: str
    config: dict[str, Any]
    engines: Engines
    resume_token: str = ""
    expires_at: int = 0
    max_session_duration_s: int | None = None
    created_wall: float = field(default_factory=time.time)
    created: float = field(default_factory=time.monotonic)
    history: list[tuple[str, str]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    audio_ms: float = 0.0
    turn_index: int = 0
    ended: bool = False
    connection: ConnectionHandler | None = None
    _expiry: asyncio.TimerHandle | None = None

    @property
    def duration_s(self) -> float:
        """Seconds since the session started (connected time, protocol.md 4.4)."""
        return time.monotonic() - self.created

    @property
    def audio_duration_s(self) -> float | None:
        """Seconds of input audio accepted, or None when none was streamed (protocol.md 4.4)."""
        return round(self.audio_ms / 1000.0, 3) if self.audio_ms > 0 else None


class SessionRegistry:
    """Live sessions by id, plus the most recent ended ones (read-only, for their stats)."""

    def __init__(self) -> None:
        self.live: dict[str, Session] = {}
        self.ended: OrderedDict[str, Session] = OrderedDict()
        self.on_forget: list[Any] = []  # callbacks(session_id) when a session goes for good

    def add(self, session: Session) -> None:
        self.live[session.id] = session

    def get(self, session_id: str) -> Session | None:
        """A live or recently ended session (for tests and tooling)."""
        return self.live.get(session_id) or self.ended.get(session_id)

    def resumable(self, session_id: str) -> Session | None:
        """The live session ``session.resume`` may take over, or None (unknown / window over)."""
        session = self.live.get(session_id)
        return session if session is not None and not session.ended else None

    def attach(self, session: Session, connection: ConnectionHandler) -> None:
        """Serve ``session`` on ``connection``; stops a running resume-window timer."""
        if session._expiry is not None:
            session._expiry.cancel()
            session._expiry = None
        session.connection = connection

    def detach(self, session: Session, connection: ConnectionHandler, window_s: float) -> None:
        """The connection went away without ``session.end``: keep the session ``window_s``."""
        if session.connection is not connection or session.ended:
            return
        session.connection = None
        loop = asyncio.get_running_loop()
        session._expiry = loop.call_later(window_s, self.end, session)

    def end(self, session: Session) -> None:
        """End the session for good (``session.end`` or resume window over)."""
        if session._expiry is not None:
            session._expiry.cancel()
            session._expiry = None
        session.ended = True
        session.connection = None
        self.live.pop(session.id, None)
        self.ended[session.id] = session
        while len(self.ended) > KEEP_ENDED:
            self.ended.popitem(last=False)
        for callback in self.on_forget:
            callback(session.id)

    def close_all(self) -> None:
        """Server shutdown: end every live session."""
        for session in list(self.live.values()):
            self.end(session)
