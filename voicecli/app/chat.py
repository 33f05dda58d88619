"""``voicecli chat``: a live voice conversation through real audio devices (issue 3).

Wiring (design.md principle 5): the PortAudio input callback hands each block to the loop
(``call_soon_threadsafe``); :meth:`ChatRunner._on_block` downmixes, resamples and cuts 20-50 ms
chunks (:class:`~voicecli.audio.pipeline.CapturePipeline`) that a sender task writes as
``input.audio`` once the session is ready. ``reply.audio`` goes through
:class:`~voicecli.audio.pipeline.PlaybackPipeline` into the jitter buffer the output callback reads.

Barge-in (protocol.md 6.3): on ``input.speech.started`` every reply that is still playing is cut
from the buffer (the speaker is silent within one device block) and gated, and the server's
in-progress reply is marked interrupted in the session, so its late ``reply.audio`` is dropped;
``reply.done{interrupted}`` does the same. The transcript shows such a reply as interrupted with what
was actually heard. A ticker (10 Hz) reveals captions, polls playback for latency figures, updates
the status line and watches the devices (a stalled or failed stream ends the chat with exit 6).

Exit: ``q`` or the server ending the session -> 0; Ctrl-C or SIGTERM -> ``session.end``, a short wait
for ``session.ended``, terminal restored, 130. A second Ctrl-C quits at once.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicecli.app.conversation import ConnectionSettings, Conversation
from voicecli.app.latency import LatencyTracker
from voicecli.app.recording import ChatRecorder
from voicecli.app.toolcalls import ToolDispatcher
from voicecli.audio import devices
from voicecli.audio.gate import HalfDuplexGate, SelfInterruptDetector
from voicecli.audio.jitter import JitterBuffer
from voicecli.audio.pipeline import CapturePipeline, PlaybackPipeline
from voicecli.errors import EXIT_INTERRUPTED, EXIT_OK, AudioDeviceError
from voicecli.protocol.events import (
    InputSpeechStarted,
    InputSpeechStopped,
    ReplyAudio,
    ReplyCreate,
    ReplyDone,
    ReplyStarted,
    SessionReady,
    TranscriptAgent,
    TranscriptUser,
)
from voicecli.session.client import Received
from voicecli.tools import ToolRunner
from voicecli.ui.chatview import ChatLine, ChatView
from voicecli.ui.keys import KeyReader

STALL_S = 2.0        # no device callback for this long = the device is gone
TICK_S = 0.1         # captions, status, latency polling, watchdog
SEND_QUEUE = 50      # chunks (1 s at 20 ms) buffered towards the socket before dropping
DEVICE_HINT = "check that the device is still connected (`voicecli devices`), then start the chat again"


@dataclass
class ChatOptions:
    input_device: str | None = None
    output_device: str | None = None
    duplex: str = "full"            # full | half
    prebuffer_ms: int = 60
    max_buffer_ms: int = 30000
    chunk_ms: int = 20
    # Device blocks. Output: 10 ms, so a barge-in flush is heard within ~2 blocks (PortAudio keeps
    # two queued). Input: 20 ms: each block wakes a PortAudio thread (~0.4 % CPU per 100 wakeups/s
    # here) and a chunk cannot leave before its last sample anyway; the loop wakes once per chunk.
    out_block_ms: int = 10
    in_block_ms: int = 20
    hangover_ms: int = 300
    record_dir: Path | None = None
    ptt: bool = False
    keys: bool = True


class ChatRunner:
    """One chat. ``await ChatRunner(...).run()`` returns the exit status or raises a VoicecliError."""

    def __init__(self, settings: ConnectionSettings, opts: ChatOptions, output: Any,
                 runner: ToolRunner | None = None, view: ChatView | None = None) -> None:
        self.settings, self.opts, self.output = settings, opts, output
        self.runner = runner or ToolRunner()
        self.view = view or ChatView()
        self.latency = LatencyTracker()
        self.gate = HalfDuplexGate(opts.hangover_ms)
        self.detector = SelfInterruptDetector()
        self.muted = False
        self.talking = not opts.ptt
        self.exit_code = EXIT_OK
        self.failure: AudioDeviceError | None = None
        self.barge_ins = 0
        self._stop: asyncio.Event | None = None
        self._sigints = 0
        self._unplayed: set[str] = set()          # replies whose first sample is not heard yet
        self._finished_replies: set[str] = set()  # reply.done received
        self._reported: set[str] = set()          # reply.heard emitted
        self._user_t0: float | None = None
        self._user_frames = 0
        self._generation = 0
        self._dropped_reported = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sd = devices.backend()
        in_s = devices.resolve_stream(self.opts.input_device, "input", sd, "float32")
        out_s = devices.resolve_stream(self.opts.output_device, "output", sd, "int16")
        self.recorder = ChatRecorder(self.opts.record_dir, time.monotonic()) if self.opts.record_dir else None
        self.buffer = JitterBuffer(out_s.rate, self.opts.prebuffer_ms, self.opts.max_buffer_ms)
        self.playback = PlaybackPipeline(self.buffer, out_s.rate)
        self.capture = CapturePipeline(in_s.rate, in_s.channels, self.opts.chunk_ms)
        self.sendq: asyncio.Queue[bytes] = asyncio.Queue(SEND_QUEUE)
        self.conv = Conversation(self.settings, self.output)
        self.conv.listeners.append(self.on_event)
        self.tools = ToolDispatcher(self.conv, self.runner)
        keys = KeyReader(self.on_key)
        tasks: list[asyncio.Task[Any]] = []
        self.out_stream: devices.PlaybackStream | None = None
        self.in_stream: devices.CaptureStream | None = None
        self._install_signals(loop)
        try:
            self.out_stream = devices.PlaybackStream(out_s, loop, self.buffer, self._device_failed,
                                                     max(64, out_s.rate * self.opts.out_block_ms // 1000), sd)
            self.in_stream = devices.CaptureStream(in_s, loop, self._on_blocks, self._device_failed,
                                                   max(64, in_s.rate * self.opts.in_block_ms // 1000),
                                                   in_s.rate * self.opts.chunk_ms // 1000, sd)
            self.output.notice(f"mic: {in_s.device.name} ({in_s.rate} Hz, {in_s.channels} ch); speaker: "
                               f"{out_s.device.name} ({out_s.rate} Hz); {self.opts.duplex} duplex", "debug")
            if not await self._until_stopped(self.conv.open()):
                return self._finish_code()
            if self.opts.keys and keys.start():
                self.output.notice("talk now; keys: m mute, r agent speaks, q quit" + (", space talk/stop" if self.opts.ptt
                                                                        else ""), "debug")
            tasks = [loop.create_task(self._sender()), loop.create_task(self._ticker())]
            finished = loop.create_task(self.conv.finished.wait())
            await self._until_stopped(finished)
            finished.cancel()
            if self.conv.finished.is_set() and self.failure is None and self.conv.failure is None \
                    and not self._stop.is_set():
                self.output.notice("the server ended the session", "info")
            return self._finish_code()
        finally:
            await self._shutdown(keys, tasks, loop)

    def _finish_code(self) -> int:
        if self.failure is not None:
            raise self.failure
        self.conv.raise_if_failed()
        return self.exit_code

    async def _until_stopped(self, aw: Any) -> bool:
        """Run ``aw`` until it finishes (True) or a stop is requested (False)."""
        assert self._stop is not None
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def _shutdown(self, keys: KeyReader, tasks: list[asyncio.Task[Any]],
                        loop: asyncio.AbstractEventLoop) -> None:
        if self.in_stream is not None:
            self.in_stream.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.tools.cancel()
        await self.conv.close()            # session.end, then a short wait for session.ended
        if self.out_stream is not None:
            self.out_stream.close()
        keys.close()
        self._remove_signals(loop)
        if self.conv.generation == 0:
            return                          # never connected: nothing to sum up or record
        self._report_replies(final=True)
        self._summary()
        if self.recorder is not None:
            for rid in self.recorder.pending_replies():
                self._record_reply(rid)
            wav, js = self.recorder.write()
            self.output.notice(f"recorded {self.recorder.wav.duration_s:.1f} s to {wav} and {js}", "info")

    def stop(self, code: int) -> None:
        self.exit_code = code
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------------ signals and keys

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _on_signal(self) -> None:
        self._sigints += 1
        if self._sigints > 1:   # a second Ctrl-C: leave now (the terminal is restored by atexit)
            os._exit(EXIT_INTERRUPTED)
        self.stop(EXIT_INTERRUPTED)

    def on_key(self, ch: str) -> None:
        if ch in ("q", "Q"):
            self.stop(EXIT_OK)
        elif ch in ("m", "M"):
            self.muted = not self.muted
            self.output.notice("microphone muted" if self.muted else "microphone on", "debug")
        elif ch == " " and self.opts.ptt:
            self.talking = not self.talking
        elif ch in ("r", "R") and self.conv.session.ready:
            # "speak now": a reply without a user turn (protocol.md 3.4)
            task = asyncio.get_running_loop().create_task(self.conv.send(ReplyCreate()))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            self.output.notice("asked the agent to speak (reply.create)", "debug")

    # ------------------------------------------------------------------ devices

    def _device_failed(self, message: str) -> None:
        if self.failure is None:
            self.failure = AudioDeviceError(message, DEVICE_HINT)
        if self._stop is not None:
            self._stop.set()

    def mic_open(self, now: float) -> bool:
        if self.muted or not self.talking:
            return False
        return self.opts.duplex != "half" or self.gate.mic_open(now)

    def _on_blocks(self, blocks: list[np.ndarray], captured_at: float) -> None:
        """Mic blocks, on the loop: resample, chunk, queue for sending (and record)."""
        if self._user_t0 is None:
            lat = self.in_stream.latency_s if self.in_stream else 0.0
            self._user_t0 = captured_at - sum(b.shape[0] for b in blocks) / self.capture.in_rate - lat
        if self.opts.duplex == "half":
            self.gate.update(captured_at, self.buffer.audible)
        is_open = self.mic_open(captured_at)
        for block in blocks:
            for pcm in self.capture.feed(block):
                self._queue_chunk(pcm if is_open else bytes(len(pcm)))

    def _queue_chunk(self, pcm: bytes) -> None:
        if self.recorder is not None and self._user_t0 is not None:
            self.recorder.add_user(pcm, self._user_t0 + self._user_frames / 24000)
        self._user_frames += len(pcm) // 2
        if not self.conv.session.ready:
            return
        if self.sendq.full():
            self.sendq.get_nowait()
        self.sendq.put_nowait(pcm)

    async def _sender(self) -> None:
        while True:
            pcm = await self.sendq.get()
            await self.conv.send_audio(pcm)

    # ------------------------------------------------------------------ server events

    def on_event(self, rec: Received) -> None:
        ev, now = rec.event, time.monotonic()
        if isinstance(ev, ReplyAudio):
            rid = ev.reply_id or self.conv.session.current_reply or ""
            if not rec.stale and not self.buffer.is_gated(rid):
                self.playback.push(ev.data, rid)
                self.latency.audio_received(rid, now)
                if self.recorder is not None:
                    self.recorder.agent_audio(rid, ev.data)
            return
        if isinstance(ev, InputSpeechStarted) and not rec.stale:
            self.barge_in(now)
        elif isinstance(ev, InputSpeechStopped):
            self.latency.speech_stopped(now)
        elif isinstance(ev, ReplyStarted):
            self._unplayed.add(ev.reply_id)
            self.detector.reply_started(ev.reply_id, now)
        elif isinstance(ev, ReplyDone):
            self._finished_replies.add(ev.reply_id)
            if ev.interrupted:
                self.interrupt_reply(ev.reply_id, now, server_side=True)
            else:
                self.playback.end(ev.reply_id)
        elif isinstance(ev, TranscriptAgent) and ev.interrupted:
            self.interrupt_reply(ev.reply_id, now, server_side=True)
        elif isinstance(ev, TranscriptUser) and self.recorder is not None:
            self.recorder.entry("user", ev.text, now, item_id=ev.item_id)
        elif isinstance(ev, SessionReady):
            self.view.chat.connection = "connected"
        self.view.apply(rec)

    def barge_in(self, now: float) -> None:
        """The user started speaking: cut whatever reply is playing or still coming."""
        targets = []
        current = self.conv.session.current_reply
        if current:
            targets.append(current)
        playing = self.buffer.current_reply
        if playing and playing not in targets and (self.buffer.depth_frames > 0 or self.buffer.audible):
            targets.append(playing)
        for rid in targets:
            self.interrupt_reply(rid, now, server_side=False)

    def interrupt_reply(self, rid: str, now: float, server_side: bool) -> None:
        """Flush ``rid`` from playback and gate its late audio (idempotent)."""
        if self.buffer.is_gated(rid):
            return
        flushed = self.playback.interrupt(rid)
        if server_side:
            # Only the server's word ends the reply for the session (its tool results dropped):
            # input.speech.started may be a back-channel the server does not treat as a barge-in,
            # and then the reply's tool results must still go out at its reply.done (protocol.md 6.3).
            self.conv.session.interrupt(rid)
        played = self.buffer.played_ms(rid)
        self.barge_ins += 1
        self.latency.dropped(rid)
        self.detector.reply_interrupted(rid, now)
        self.view.interrupted(rid, played)
        self.output.client_event("barge_in", reply_id=rid, played_ms=round(played, 1),
                                 flushed_ms=round(flushed * 1000 / self.buffer.rate, 1),
                                 trigger="reply.done" if server_side else "input.speech.started")
        self._record_reply(rid)
        if self.opts.duplex == "full" and self.detector.should_warn():
            self.output.notice("the agent keeps getting interrupted right after it starts speaking: the mic "
                               "probably hears the speaker. Use headphones, or run with --duplex half",
                               "warning")

    # ------------------------------------------------------------------ ticker

    async def _ticker(self) -> None:
        last_blocks = (-1, -1)
        last_change = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            blocks = (self.in_stream.blocks if self.in_stream else 0,
                      self.out_stream.blocks if self.out_stream else 0)
            if blocks[0] != last_blocks[0] and blocks[1] != last_blocks[1]:
                last_blocks, last_change = blocks, now
            elif now - last_change > STALL_S:
                which = "input" if blocks[0] == last_blocks[0] else "output"
                self._device_failed(f"the {which} device stopped delivering audio for {STALL_S:g} s")
            for stream in (self.in_stream, self.out_stream):
                if stream is not None:
                    stream.check_alive()
            self._poll_playback()
            self._report_replies(final=False)
            self._update_status()
            refresh = getattr(self.output, "refresh", None)
            if refresh is not None:
                refresh()

    def _out_latency(self) -> float:
        return self.out_stream.latency_s if self.out_stream else 0.0

    def _poll_playback(self) -> None:
        lat = self._out_latency()
        for rid in list(self._unplayed):
            first = self.buffer.first_played_at(rid)
            if first is None:
                continue
            self._unplayed.discard(rid)
            self.detector.reply_audio_played(rid, first + lat)
            turn = self.latency.heard(rid, first + lat)
            if turn is not None:
                self.output.client_event("metrics", scope="turn", **turn.to_dict())
            for older in self.recorder.pending_replies() if self.recorder else []:
                if older != rid:
                    self._record_reply(older)
        playing = self.buffer.current_reply
        if playing:
            self.view.set_played(playing, self._heard_ms(playing))

    def _heard_ms(self, rid: str) -> float:
        """Playback position of ``rid`` as heard: everything once it has all been played."""
        played = self.buffer.played_ms(rid)
        received_ms = self.playback.received_frames.get(rid, 0) / 24.0
        if rid in self._finished_replies and played >= received_ms - 2.0:
            return math.inf
        return max(0.0, played - self._out_latency() * 1000.0)

    def _record_reply(self, rid: str) -> None:
        if self.recorder is not None:
            first = self.buffer.first_played_at(rid)
            self.recorder.agent_played(rid, None if first is None else first + self._out_latency(),
                                       self.buffer.played_ms(rid))

    def _report_replies(self, final: bool) -> None:
        """Emit ``voicecli.reply.heard`` for agent lines that are done (played through or cut)."""
        if final:
            for line in self.view.lines:
                if line.role == "agent" and not line.final and line.key in self._finished_replies:
                    self.view.set_played(line.key, math.inf)
        for line in self.view.lines[-20:]:
            if line.role != "agent" or not line.final or line.key in self._reported:
                continue
            self._reported.add(line.key)
            heard_s = line.heard_s if isinstance(line, ChatLine) else None
            self.output.client_event("reply.heard", reply_id=line.key, text=line.text,
                                     interrupted=line.interrupted, played_s=heard_s)
            if self.recorder is not None:
                self.recorder.entry("agent", line.text, time.monotonic(), reply_id=line.key,
                                    interrupted=line.interrupted, played_s=heard_s)

    def _update_status(self) -> None:
        s = self.view.chat
        if self.conv.connected.is_set():
            s.connection = "connected"
            if self.conv.generation != self._generation:
                self._generation = self.conv.generation
                lost = self.conv.dropped_audio_ms - self._dropped_reported
                if self._generation > 1 and lost > 0:
                    self.output.notice(f"{lost / 1000:.1f} s of microphone audio was not sent while "
                                       "reconnecting; please repeat what you said", "warning")
                self._dropped_reported = self.conv.dropped_audio_ms
        elif self.conv.generation > 0:
            s.connection = "reconnecting"
        s.level_db = self.capture.measure_level()
        s.muted = self.muted
        s.ptt = self.talking if self.opts.ptt else None
        s.gated = self.opts.duplex == "half" and not self.gate.mic_open(time.monotonic())
        s.buffer_ms = self.buffer.depth_ms
        s.underruns = self.buffer.stats.underruns
        last = self.latency.last
        if last is not None:
            s.last_total_ms, s.last_server_ms, s.last_local_ms = last.total_ms, last.server_ms, last.local_ms

    def _summary(self) -> None:
        stats = self.buffer.stats
        summary = self.latency.summary()
        self.output.client_event(
            "metrics", scope="session", **summary, barge_ins=self.barge_ins, underruns=stats.underruns,
            underrun_ms=round(stats.underrun_frames * 1000 / self.buffer.rate, 1),
            overflow_ms=round(stats.overflow_frames * 1000 / self.buffer.rate, 1),
            mic_dropped_ms=round(self.conv.dropped_audio_ms, 1),
            input_status_flags=self.in_stream.status_flags if self.in_stream else 0,
            output_status_flags=self.out_stream.status_flags if self.out_stream else 0)
        if summary["turns"]:
            t, srv, loc = summary["total_ms"], summary["server_ms"], summary["local_ms"]
            self.output.notice(f"{summary['turns']} turn(s): end of speech -> agent heard p50 {t['p50']:.0f} ms, "
                               f"p95 {t['p95']:.0f} ms (server p50 {srv['p50']:.0f} ms + local p50 "
                               f"{loc['p50']:.0f} ms); {self.barge_ins} barge-in(s), {stats.underruns} "
                               "underrun(s)", "info")
