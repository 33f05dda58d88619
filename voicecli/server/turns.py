"""Input-audio bookkeeping of one connection: real-time rate limit and utterance buffering.

Pure state (no I/O); the connection feeds it and sends what it says. Times are milliseconds of
*input audio* (sample counts), like the turn detector's ``TurnEvent.at_ms`` (engines.py), except
the rate limiter, which compares audio with the wall clock (``now`` in seconds, passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from voicecli.protocol.constants import BYTES_PER_MS

PREROLL_MS = 100        # audio kept before a detected speech start (soft onsets below threshold)
PARTIAL_EVERY_MS = 300  # transcript.user.delta cadence, in audio time (protocol.md 4.7)
MAX_UTTERANCE_MS = 120_000


class RateLimiter:
    """protocol.md 3.2: audio faster than ~1 s per 1 s of wall clock is dropped, not buffered.

    Starts counting at the first ``input.audio``; allows ``burst_ms`` of audio ahead of the wall
    clock (network jitter, a client's prebuffer). ``accept`` says whether a message may pass;
    ``should_report`` limits ``audio_rate_violation`` errors to one per second."""

    def __init__(self, burst_ms: float) -> None:
        self.burst_ms = burst_ms
        self.first: float | None = None
        self.accepted_ms = 0.0
        self.last_report: float | None = None

    def accept(self, ms: float, now: float) -> bool:
        if self.first is None:
            self.first = now
        allowed = (now - self.first) * 1000.0 + self.burst_ms
        if self.accepted_ms + ms > allowed:
            return False
        self.accepted_ms += ms
        return True

    def should_report(self, now: float) -> bool:
        if self.last_report is None or now - self.last_report >= 1.0:
            self.last_report = now
            return True
        return False


@dataclass(slots=True)
class UserTurn:
    """The utterance in progress: its ``item_id`` (shared by deltas and the final transcript)."""

    item_id: str
    start_ms: float
    last_partial_ms: float
    last_partial_text: str = ""


class AudioBuffer:
    """Recent input audio (PCM16 24 kHz) addressable by audio time.

    Outside an utterance only ``PREROLL_MS`` is kept; inside, everything up to
    ``MAX_UTTERANCE_MS``."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.start_ms = 0.0   # audio time of data[0]
        self.end_ms = 0.0     # audio time after the last byte

    def append(self, pcm: bytes) -> None:
        self.data += pcm
        self.end_ms += len(pcm) / BYTES_PER_MS

    def _offset(self, ms: float) -> int:
        off = int(max(0.0, ms - self.start_ms) * BYTES_PER_MS)
        return min(len(self.data), off - off % 2)

    def slice(self, start_ms: float, end_ms: float) -> bytes:
        """Audio between two audio times (clamped to what is kept)."""
        return bytes(self.data[self._offset(start_ms):self._offset(end_ms)])

    def trim(self, keep_from_ms: float) -> None:
        """Forget audio before ``keep_from_ms``."""
        keep_from_ms = max(keep_from_ms, self.end_ms - MAX_UTTERANCE_MS)
        cut = self._offset(keep_from_ms)
        if cut > 0:
            del self.data[:cut]
            self.start_ms += cut / BYTES_PER_MS
