"""Echo control without echo cancellation: a half-duplex mic gate and a self-interruption detector.

Both are pure state machines that take ``now`` (seconds on any monotonic clock) from the caller
(design.md principle 4: the core never owns time).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


class HalfDuplexGate:
    """Closes the microphone while the agent is audible and for ``hangover_ms`` after it stops.

    Contract: call :meth:`update` whenever playback audibility may have changed (e.g. once per
    output block, with ``JitterBuffer.audible``); ask :meth:`mic_open` before sending each mic chunk.
    The hangover is measured from the first ``update`` that reports the agent silent.
    """

    def __init__(self, hangover_ms: int = 300) -> None:
        if hangover_ms < 0:
            raise ValueError("hangover_ms must be >= 0")
        self.hangover_s = hangover_ms / 1000.0
        self._audible = False
        self._quiet_since = -math.inf

    def update(self, now: float, agent_audible: bool) -> None:
        """Record the agent's audibility at time ``now``."""
        if agent_audible:
            self._audible = True
        elif self._audible:
            self._audible = False
            self._quiet_since = now

    def mic_open(self, now: float) -> bool:
        """True if mic audio may be sent at ``now``."""
        return not self._audible and now - self._quiet_since >= self.hangover_s - 1e-9  # float slack


@dataclass
class _Reply:
    started_at: float | None = None
    first_played_at: float | None = None
    interrupted_at: float | None = None

    def quick_interrupt(self, within_s: float) -> bool:
        if self.first_played_at is None or self.interrupted_at is None:
            return False
        return self.interrupted_at - self.first_played_at <= within_s


class SelfInterruptDetector:
    """Spots the agent interrupting itself (its voice leaking from speakers into the mic).

    Heuristic: among the last ``window`` replies, if at least ``threshold`` were interrupted within
    ``within_s`` seconds of their first audio being played, :meth:`should_warn` returns True -- once
    per detector -- so the UI can suggest headphones or ``--duplex half``.
    """

    def __init__(self, within_s: float = 1.5, threshold: int = 2, window: int = 4) -> None:
        if threshold < 1 or window < threshold:
            raise ValueError("need 1 <= threshold <= window")
        self.within_s = within_s
        self.threshold = threshold
        self.window = window
        self._replies: OrderedDict[str, _Reply] = OrderedDict()
        self._warned = False

    def reply_started(self, reply_id: str, now: float) -> None:
        """A reply began (``reply.started``)."""
        self._get(reply_id).started_at = now

    def reply_audio_played(self, reply_id: str, now: float) -> None:
        """The first audio of the reply reached the speaker (later calls are ignored)."""
        reply = self._get(reply_id)
        if reply.first_played_at is None:
            reply.first_played_at = now

    def reply_interrupted(self, reply_id: str, now: float) -> None:
        """The reply was interrupted (barge-in)."""
        reply = self._get(reply_id)
        if reply.interrupted_at is None:
            reply.interrupted_at = now

    def quick_interruptions(self) -> int:
        """How many of the last ``window`` replies were interrupted within ``within_s`` of playing."""
        return sum(r.quick_interrupt(self.within_s) for r in self._replies.values())

    def should_warn(self) -> bool:
        """True exactly once, the first time the heuristic fires."""
        if self._warned or self.quick_interruptions() < self.threshold:
            return False
        self._warned = True
        return True

    def _get(self, reply_id: str) -> _Reply:
        reply = self._replies.get(reply_id)
        if reply is None:
            reply = self._replies[reply_id] = _Reply()
            while len(self._replies) > self.window:
                self._replies.popitem(last=False)
        return reply
