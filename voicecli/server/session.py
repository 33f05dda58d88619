"""Server-side session state that outlives a connection, and the registry that keeps it for resume.

A :class:`Session` is born from the first valid ``session.update`` (protocol.md 6.1) and holds the
resolved config, the conversation history, the engines and the per-session ``stats`` counters.
The connection that serves it (a pump, ``server/pump.py``) may drop; the registry
(``server/registry.py``) then keeps the session ``resume_window_s`` for ``session.resume``
(protocol.md 6.7) and forgets it afterwards. ``session.end`` ends it at once (6.8). Plain data:
the agent session (``server/agent.py``) changes it, only ever from the server's event loop.

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

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .engines import Brain, SpeechToText, StreamingBrain, TextToSpeech, TurnDetector


def new_id(prefix: str, hex_chars: int = 32) -> str:
    """``sess_``/``resp_``/``msg_`` + 32 hex (protocol.md 2); ``call_`` ids use 16."""
    return prefix + secrets.token_hex(hex_chars // 2)


@dataclass(slots=True)
class Engines:
    """The four engines of one session (interfaces in ``server/engines.py``)."""

    detector: TurnDetector
    stt: SpeechToText
    brain: Brain | StreamingBrain
    tts: TextToSpeech


@dataclass(eq=False)
class Session:
    """One Voice Agent session (times are wall-clock seconds, ``time.time()``)."""

    id: str
    owner: str
    config: dict[str, Any]
    engines: Engines
    resume_token: str = ""
    expires_at: int = 0
    max_session_duration_s: int | None = None
    created: float = field(default_factory=time.time)
    history: list[tuple[str, str]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    audio_ms: float = 0.0
    turn_index: int = 0
    ended: bool = False
    connection: object | None = None   # the pump serving it (the registry sets it), None when detached
    cap_at: float | None = None        # when the session expires (``session_expired``), if enforced

    def duration_s(self, now: float) -> float:
        """Seconds since the session started (connected time, protocol.md 4.4)."""
        return now - self.created

    @property
    def audio_duration_s(self) -> float | None:
        """Seconds of input audio accepted, or None when none was streamed (protocol.md 4.4)."""
        return round(self.audio_ms / 1000.0, 3) if self.audio_ms > 0 else None


@dataclass(slots=True)
class EndedSession:
    """What the registry keeps of a session after it ended (its counters and how it ended), for
    ``resume_window_s`` at most: the history, config and engines are released at once."""

    id: str
    owner: str
    created: float
    ended_at: float
    reason: str
    close_code: int | None
    stats: Counter[str]
    audio_duration_s: float | None
    ended: bool = True

    @classmethod
    def of(cls, session: Session, now: float, reason: str, close_code: int | None) -> EndedSession:
        return cls(session.id, session.owner, session.created, now, reason, close_code,
                   session.stats, session.audio_duration_s)

    def duration_s(self, now: float | None = None) -> float:
        return self.ended_at - self.created
