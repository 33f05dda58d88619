"""Live sessions by id, the resume window, and which pump serves each session (protocol.md 6.7).

The registry is the only thing that knows which connection serves a session. A pump attaches
itself with a ``close`` callback; a resuming connection calls :meth:`SessionRegistry.take_over`,
which calls the old pump's callback (never its internals) and attaches the new one. A detached
session ends when its window runs out (an asyncio timer: this module is I/O glue, not core).

Memory is bounded by configuration, not by traffic: an ended session is replaced at once by a
small :class:`~voicecli.server.session.EndedSession` record (counters and how it ended; history,
config and engines released), and records are dropped ``keep_ended_s`` after the end (the resume
window) or when more than ``KEEP_ENDED`` are held (``bench/server_memory.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from .serverlog import event
from .session import EndedSession, Session

KEEP_ENDED = 256  # at most this many ended-session records (each a few hundred bytes)


class SessionRegistry:
    """Live sessions by id, plus records of the recently ended ones (read-only, for their stats)."""

    def __init__(self, keep_ended_s: float = 30.0) -> None:
        self.live: dict[str, Session] = {}
        self.ended: OrderedDict[str, EndedSession] = OrderedDict()
        self.keep_ended_s = keep_ended_s
        self.on_forget: list[Callable[[str], object]] = []  # called with the id of an ended session
        self._closers: dict[str, Callable[[], None]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def add(self, session: Session) -> None:
        self.live[session.id] = session

    def get(self, session_id: str) -> Session | EndedSession | None:
        """A live session, or the record of a recently ended one (for tests and tooling)."""
        self._prune(time.time())
        return self.live.get(session_id) or self.ended.get(session_id)

    def resumable(self, session_id: str) -> Session | None:
        """The live session ``session.resume`` may take over, or None (unknown / window over)."""
        session = self.live.get(session_id)
        return session if session is not None and not session.ended else None

    def attach(self, session: Session, owner: object, close: Callable[[], None]) -> None:
        """Serve ``session`` on ``owner`` (a pump); ``close()`` is how the registry stops that pump
        when another connection takes the session over. Stops a running resume-window timer."""
        timer = self._expiry.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        session.connection = owner
        self._closers[session.id] = close

    def take_over(self, session: Session, owner: object, close: Callable[[], None]) -> None:
        """A resumed connection takes ``session`` over: the pump serving it (a half-open old
        connection) is closed through its callback, then ``owner`` is attached."""
        old = self._closers.pop(session.id, None)
        if old is not None and session.connection is not owner:
            old()
        self.attach(session, owner, close)

    def detach(self, session: Session, owner: object, window_s: float, close_code: int | None = None) -> None:
        """``owner`` went away without ``session.end``: keep the session ``window_s``."""
        if session.connection is not owner or session.ended:
            return
        session.connection = None
        self._closers.pop(session.id, None)
        self._expiry[session.id] = asyncio.get_running_loop().call_later(
            window_s, self.end, session, "resume window over", close_code)

    def end(self, session: Session, reason: str = "session.end", close_code: int | None = None) -> None:
        """End the session for good (``session.end``, resume window over, expiry, error, shutdown):
        its resume token and engines are released (``on_forget``), a small record is kept."""
        if session.ended and session.id not in self.live:
            return
        timer = self._expiry.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        self._closers.pop(session.id, None)
        session.ended = True
        session.connection = None
        now = time.time()
        for callback in self.on_forget:   # while registry.get still finds the live session
            callback(session.id)
        self.live.pop(session.id, None)
        record = EndedSession.of(session, now, reason, close_code)
        session.history.clear()
        self.ended[session.id] = record
        self._prune(now)
        event("session.ended", session_id=session.id, reason=reason,
              duration_s=round(now - session.created, 3), audio_s=record.audio_duration_s,
              close_code=close_code)

    def _prune(self, now: float) -> None:
        while self.ended and (len(self.ended) > KEEP_ENDED
                              or next(iter(self.ended.values())).ended_at < now - self.keep_ended_s):
            self.ended.popitem(last=False)

    def close_all(self, reason: str = "server shutdown") -> None:
        """Server shutdown: end every live session."""
        for session in list(self.live.values()):
            self.end(session, reason, 1001)
