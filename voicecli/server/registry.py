"""Live sessions by id, the resume window, and which pump serves each session (protocol.md 6.7).

The registry is the only thing that knows which connection serves a session. A pump attaches
itself with a ``close`` callback; a resuming connection calls :meth:`SessionRegistry.take_over`,
which calls the old pump's callback (never its internals) and attaches the new one. A detached
session ends when its window runs out (an asyncio timer: this module is I/O glue, not core).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from .session import Session

KEEP_ENDED = 256  # ended sessions kept (for their stats) after they end


class SessionRegistry:
    """Live sessions by id, plus the most recent ended ones (read-only, for their stats)."""

    def __init__(self) -> None:
        self.live: dict[str, Session] = {}
        self.ended: OrderedDict[str, Session] = OrderedDict()
        self.on_forget: list[Callable[[str], object]] = []  # called with the id of an ended session
        self._closers: dict[str, Callable[[], None]] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def add(self, session: Session) -> None:
        self.live[session.id] = session

    def get(self, session_id: str) -> Session | None:
        """A live or recently ended session (for tests and tooling)."""
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

    def detach(self, session: Session, owner: object, window_s: float) -> None:
        """``owner`` went away without ``session.end``: keep the session ``window_s``."""
        if session.connection is not owner or session.ended:
            return
        session.connection = None
        self._closers.pop(session.id, None)
        self._expiry[session.id] = asyncio.get_running_loop().call_later(window_s, self.end, session)

    def end(self, session: Session) -> None:
        """End the session for good (``session.end`` or resume window over)."""
        timer = self._expiry.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        self._closers.pop(session.id, None)
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
