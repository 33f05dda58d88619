"""The agent's side of a chat: ``reply.audio`` into the jitter buffer, barge-in flushes, and what
was heard when (latency, self-interruption, recording). Loop-side only: the output callback reads
the buffer on PortAudio's thread (design.md principle 5).

The session decides whether audio is stale or a reply interrupted (:class:`Received`); this class
only acts on those verdicts. A local barge-in (``input.speech.started``) cuts playback at once but
leaves the reply's tool results to the server's verdict: speech may be a back-channel the server
does not treat as an interruption (protocol.md 6.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from voicecli.app.latency import LatencyTracker
from voicecli.app.recording import ChatRecorder
from voicecli.audio.gate import SelfInterruptDetector
from voicecli.audio.jitter import JitterBuffer
from voicecli.audio.pipeline import PlaybackPipeline
from voicecli.protocol.constants import RATE


@dataclass(frozen=True, slots=True)
class Cut:
    """A reply flushed from playback: how much of it was heard and how much was thrown away."""

    reply_id: str
    played_ms: float
    flushed_ms: float


class RecentSet:
    """A set of reply ids that keeps only the ``cap`` most recently added (issue 12 item 9: a chat's
    per-reply state is bounded however many replies the server sends)."""

    def __init__(self, cap: int = 64) -> None:
        self.cap = cap
        self._ids: dict[str, None] = {}

    def add(self, reply_id: str) -> None:
        self._ids.pop(reply_id, None)
        self._ids[reply_id] = None
        while len(self._ids) > self.cap:
            self._ids.pop(next(iter(self._ids)))

    def discard(self, reply_id: str) -> None:
        self._ids.pop(reply_id, None)

    def __contains__(self, reply_id: object) -> bool:
        return reply_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ids))

    def __len__(self) -> int:
        return len(self._ids)


IDLE_PAUSE_S = 0.5   # the output stream pauses after the speaker has been idle this long (see OutputIdle)


class OutputIdle:
    """When the chat's output stream may pause (issue 10, Cost: a 10 ms callback stream playing
    zeros costs ~2.8 % of a core here in wake-ups). The speaker is *busy* while audio is queued,
    the last device block had audio in it, or a reply is in progress (``reply.started`` until its
    ``reply.done``: no pause in a pause between two clauses). :meth:`due` is True once it has not been
    busy for ``idle_s``. Half a second: 25x the output latency (20 ms: what the device still holds
    when the buffer runs dry, and an abort drops), longer than the gap between two replies the
    server sends back to back, while a pause/resume costs ~2 ms of CPU (abort 0.8 ms, start 0.8 ms),
    what 70 ms of running costs; each idle second after that saves ~28 ms of CPU. Pure: the chat's
    ticker asks with its clock."""

    def __init__(self, idle_s: float = IDLE_PAUSE_S) -> None:
        self.idle_s = idle_s
        self.since: float | None = None      # when the speaker was last seen busy -> idle

    def due(self, now: float, busy: bool) -> bool:
        if busy:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.idle_s

    def reset(self) -> None:
        """Start counting again (the stream was resumed or reopened)."""
        self.since = None

    @staticmethod
    def busy(buffer: JitterBuffer, reply_in_progress: bool) -> bool:
        return reply_in_progress or buffer.audible or buffer.depth_frames > 0


class Speaker:
    """Plays replies and keeps their play-out facts. ``out_latency`` reads the output stream's
    latency (seconds) when asked, since the stream opens after this object exists."""

    def __init__(self, buffer: JitterBuffer, device_rate: int, clock: Callable[[], float],
                 recorder: ChatRecorder | None = None) -> None:
        self.buffer = buffer
        self.playback = PlaybackPipeline(buffer, device_rate)
        self.clock = clock
        self.recorder = recorder
        self.latency = LatencyTracker()
        self.detector = SelfInterruptDetector()
        self.out_latency: Callable[[], float] = lambda: 0.0
        self.unplayed = RecentSet()         # replies whose first sample is not heard yet
        self.finished = RecentSet()         # reply.done received

    # -- from the server ------------------------------------------------------------------
    def audio(self, reply_id: str, pcm: bytes) -> None:
        """Queue a live reply's audio (the caller checked the session's verdict)."""
        if self.buffer.is_gated(reply_id):     # cut locally by a barge-in
            return
        self.playback.push(pcm, reply_id)
        self.latency.audio_received(reply_id, self.clock())
        if self.recorder is not None:
            self.recorder.agent_audio(reply_id, pcm)

    def started(self, reply_id: str) -> None:
        self.unplayed.add(reply_id)
        self.detector.reply_started(reply_id, self.clock())

    def done(self, reply_id: str) -> None:
        self.finished.add(reply_id)
        self.playback.end(reply_id)

    def speech_stopped(self) -> None:
        self.latency.speech_stopped(self.clock())

    # -- barge-in --------------------------------------------------------------------------
    def barge_in_targets(self, current_reply: str | None) -> list[str]:
        """Replies to cut when the user starts talking: the one in progress and the one playing."""
        targets = [current_reply] if current_reply else []
        playing = self.buffer.current_reply
        if playing and playing not in targets and (self.buffer.depth_frames > 0 or self.buffer.audible):
            targets.append(playing)
        return targets

    def cut(self, reply_id: str) -> Cut | None:
        """Flush ``reply_id`` from playback and gate its late audio; None if it was cut before."""
        if self.buffer.is_gated(reply_id):
            return None
        flushed = self.playback.interrupt(reply_id)
        played = self.buffer.played_ms(reply_id)
        self.latency.dropped(reply_id)
        self.detector.reply_interrupted(reply_id, self.clock())
        self.record(reply_id)
        return Cut(reply_id, played, flushed * 1000 / self.buffer.rate)

    def rerate(self, rate: int) -> None:
        """The output device was reopened at another rate (a hot-swap): a new, empty buffer and
        resampler at ``rate`` (the caller cut what was playing; those cuts stay gated)."""
        old = self.buffer
        self.buffer = JitterBuffer(rate, round(old.prebuffer_frames * 1000 / old.rate),
                                   round(old.max_frames * 1000 / old.rate))
        for rid in old.gated_ids():
            self.buffer.interrupt(rid)
        self.playback = PlaybackPipeline(self.buffer, rate)

    # -- play-out (ticker) -----------------------------------------------------------------
    def poll(self) -> list[dict[str, object]]:
        """Note replies whose first sample was heard; returns the per-turn latency figures."""
        lat, turns = self.out_latency(), []
        for rid in list(self.unplayed):
            first = self.buffer.first_played_at(rid)
            if first is None:
                continue
            self.unplayed.discard(rid)
            self.detector.reply_audio_played(rid, first + lat)
            turn = self.latency.heard(rid, first + lat)
            if turn is not None:
                turns.append(turn.to_dict())
            for older in self.recorder.pending_replies() if self.recorder else []:
                if older != rid:
                    self.record(older)
        return turns

    def heard_ms(self, reply_id: str) -> float:
        """Playback position of ``reply_id`` as heard: everything once it has all been played."""
        played = self.buffer.played_ms(reply_id)
        received_ms = self.playback.received_frames.get(reply_id, 0) * 1000 / RATE
        if reply_id in self.finished and played >= received_ms - 2.0:
            return math.inf
        return max(0.0, played - self.out_latency() * 1000.0)

    def record(self, reply_id: str) -> None:
        if self.recorder is not None:
            first = self.buffer.first_played_at(reply_id)
            self.recorder.agent_played(reply_id, None if first is None else first + self.out_latency(),
                                       self.buffer.played_ms(reply_id))


class ReplyPlayer:
    """``ask --play``: the agent's audio on a speaker as it arrives, through the chat's parts (a
    :class:`Speaker` over a :class:`~voicecli.audio.jitter.JitterBuffer`, a callback
    :class:`~voicecli.audio.devices.PlaybackStream`). It listens to the session's verdicts like chat
    does: stale or interrupted audio is not played, an interrupted reply (or the user's speech, e.g.
    ``--barge-in-after``) is cut. :meth:`open` resolves and opens the device (AudioDeviceError, exit 6,
    before anything is sent); :meth:`drain` waits until what arrived has been played."""

    PREBUFFER_MS = 120        # ask is not interactive: a little more cushion than chat's 60 ms
    BLOCK_MS = 20
    STALL_S = 2.0             # no device callback for this long while draining: give up on the rest

    def __init__(self, device: str | None, clock: Callable[[], float]) -> None:
        self.device, self.clock = device, clock
        self.stream: Any = None
        self.speaker: Speaker | None = None
        self.failure: str | None = None

    def open(self, loop: Any) -> str:
        """Open the speaker; returns its name for the notice."""
        from voicecli.audio import devices
        sd = devices.backend()
        out_s = devices.resolve_stream(self.device, "output", sd, "int16")
        buffer = JitterBuffer(out_s.rate, self.PREBUFFER_MS, 60000)
        self.speaker = Speaker(buffer, out_s.rate, self.clock)
        self.stream = devices.PlaybackStream(out_s, loop, buffer, self._failed,
                                             max(64, out_s.rate * self.BLOCK_MS // 1000), sd)
        return f"{out_s.device.name} ({out_s.rate} Hz)"

    def _failed(self, message: str) -> None:
        self.failure = message

    def on_event(self, rec: Any) -> None:
        """A conversation listener (the session's verdicts, see :class:`Received`)."""
        from voicecli.protocol.events import InputSpeechStarted, ReplyAudio, ReplyDone
        spk, ev, rid = self.speaker, rec.event, rec.reply_id or ""
        if spk is None:
            return
        if isinstance(ev, ReplyAudio):
            if not rec.stale and not rec.interrupted:
                spk.audio(rid, ev.data)
        elif rec.newly_interrupted:
            spk.cut(rid)
        elif isinstance(ev, InputSpeechStarted) and not rec.stale:
            for target in spk.barge_in_targets(None):
                spk.cut(target)
        elif isinstance(ev, ReplyDone) and not rec.interrupted:
            spk.done(rid)

    async def drain(self, limit_s: float = 120.0) -> None:
        """Wait until the buffer has played out (bounded; a stopped device ends the wait)."""
        import asyncio
        if self.speaker is None:
            return
        buffer, deadline = self.speaker.buffer, self.clock() + limit_s
        blocks, moved = -1, self.clock()
        while (buffer.depth_frames > 0 or buffer.audible) and self.failure is None \
                and self.clock() < deadline:
            await asyncio.sleep(0.02)
            now = self.clock()
            if self.stream is None or self.stream.blocks != blocks:
                blocks, moved = (self.stream.blocks if self.stream is not None else -1), now
            elif now - moved > self.STALL_S:
                self.failure = f"the speaker stopped playing for {self.STALL_S:g} s"
        lat = self.stream.latency_s if self.stream is not None else 0.0
        await asyncio.sleep(min(lat, 0.5))       # what the device still holds

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
