"""Per-turn latency as the user hears it (anchors.md section 4 item 9), as plain bookkeeping.

A turn's clock starts when ``input.speech.stopped`` arrives; the first reply whose audio arrives
after it is that turn's reply. Three moments are recorded, all ``time.monotonic()`` seconds:

* ``stopped_at``: ``input.speech.stopped`` received;
* ``received_at``: the reply's first (non-stale) ``reply.audio`` received;
* ``heard_at``: its first sample handed to the device plus the device's output latency.

``server_ms`` = received - stopped (turn detection, reply generation, network),
``local_ms`` = heard - received (resampling, jitter buffer, device), ``total_ms`` their sum.
No clock is read here (design.md principle 4): callers pass the times in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TurnLatency:
    turn: int
    reply_id: str
    server_ms: float
    local_ms: float

    @property
    def total_ms(self) -> float:
        return self.server_ms + self.local_ms

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total_ms"] = round(self.total_ms, 1)
        out["server_ms"] = round(self.server_ms, 1)
        out["local_ms"] = round(self.local_ms, 1)
        return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


TURNS_KEPT = 1000      # per-turn figures kept for the summary's percentiles (a 3 h session has ~1000 turns)
WAITING_KEPT = 64      # replies whose first audio arrived and that were neither heard nor dropped yet


class LatencyTracker:
    """Collects :class:`TurnLatency` values. Feed it events in order; poll :meth:`waiting` and
    call :meth:`heard` once the device has played a waiting reply's first sample."""

    def __init__(self, keep: int = TURNS_KEPT) -> None:
        self.turns: deque[TurnLatency] = deque(maxlen=keep)   # the summary's window: the last ``keep``
        self.count = 0                                          # turns measured in the whole session
        self._stopped_at: float | None = None
        self._received: dict[str, tuple[float, float]] = {}   # reply_id -> (stopped_at, received_at)

    def speech_stopped(self, now: float) -> None:
        self._stopped_at = now

    def audio_received(self, reply_id: str, now: float) -> None:
        """A non-stale ``reply.audio``; the first one after a stop binds the reply to the turn."""
        if self._stopped_at is not None and reply_id not in self._received:
            self._received[reply_id] = (self._stopped_at, now)
            self._stopped_at = None
            while len(self._received) > WAITING_KEPT:        # never heard nor dropped: forget the oldest
                del self._received[next(iter(self._received))]

    def waiting(self) -> list[str]:
        """Replies whose first audio arrived but whose playback time is not known yet."""
        return list(self._received)

    def heard(self, reply_id: str, heard_at: float) -> TurnLatency | None:
        """Record when ``reply_id`` was first heard; returns the finished turn's figures."""
        times = self._received.pop(reply_id, None)
        if times is None:
            return None
        stopped_at, received_at = times
        self.count += 1
        turn = TurnLatency(self.count, reply_id, (received_at - stopped_at) * 1000.0,
                           max(0.0, heard_at - received_at) * 1000.0)
        self.turns.append(turn)
        return turn

    def dropped(self, reply_id: str) -> None:
        """The reply was interrupted before it was heard: it measures nothing."""
        self._received.pop(reply_id, None)

    @property
    def last(self) -> TurnLatency | None:
        return self.turns[-1] if self.turns else None

    def summary(self) -> dict[str, Any]:
        """``{"turns": N, "total_ms": {"p50":..,"p95":..}, "server_ms": .., "local_ms": ..}``."""
        out: dict[str, Any] = {"turns": self.count}
        if not self.turns:
            return out
        for key in ("total_ms", "server_ms", "local_ms"):
            values = [float(getattr(t, key)) for t in self.turns]
            out[key] = {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1)}
        return out
