"""``voicecli chat``: a live voice conversation through real audio devices (issue 3).

A pump over :class:`~voicecli.app.conversation.Conversation` (the client session) plus small parts
with one injected clock: :class:`~voicecli.app.chat_mic.Mic` (capture -> ``input.audio``),
:class:`~voicecli.app.chat_speaker.Speaker` (``reply.audio`` -> jitter buffer -> output callback,
barge-in flushes, play-out facts), the view (:class:`~voicecli.ui.chatview.ChatView`) and the tool
dispatcher. :class:`ChatRunner` holds the options; :meth:`ChatRunner.run` opens the devices and runs
one :class:`_Chat`, whose parts all exist from its constructor on.

Barge-in (protocol.md 6.3): on ``input.speech.started`` every reply that is still playing is cut
from the buffer (the speaker is silent within one device block) and gated; when the session says a
reply was interrupted (``reply.done{interrupted}`` or ``transcript.agent{interrupted}``) it is cut too
and the session drops its late audio and tool results. The transcript shows such a reply as
interrupted with what was actually heard. A ticker (10 Hz) reveals captions, polls playback for
latency figures, updates the status line and watches the devices: a stalled or failed stream is
reopened by :class:`~voicecli.app.chat_devices.ChatDevices` (exit 6 only when none opens for 5 s).

Exit: ``q`` or the server ending the session -> returns ``ExitStatus.OK``; Ctrl-C or SIGTERM ->
``session.end``, a short wait for ``session.ended``, terminal restored, then KeyboardInterrupt for
the one exit map (130). A second Ctrl-C skips only that wait: the streams still close, the terminal
is restored and ``--record`` is written (issue 12 item 6).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voicecli.app.chat_devices import ChatDevices, moved_line
from voicecli.app.chat_mic import Mic
from voicecli.app.chat_speaker import Cut, OutputIdle, Speaker
from voicecli.app.conversation import ConnectionSettings, Conversation
from voicecli.app.recording import ChatRecorder
from voicecli.app.toolcalls import ToolDispatcher
from voicecli.audio import devices
from voicecli.audio.jitter import JitterBuffer
from voicecli.audio.pipeline import CapturePipeline
from voicecli.errors import AudioDeviceError
from voicecli.protocol.events import (
    ConversationMessage,
    InputSpeechStarted,
    InputSpeechStopped,
    ReplyAudio,
    ReplyCreate,
    ReplyDone,
    ReplyStarted,
    SessionReady,
    TranscriptUser,
)
from voicecli.session.client import Received
from voicecli.status import ExitStatus
from voicecli.tools import ToolRunner
from voicecli.ui.chatview import ChatLine, ChatLiveOutput, ChatView
from voicecli.ui.keys import KeyReader
from voicecli.ui.output import Output

STALL_S = 2.0        # no device callback for this long = the device is gone
MAX_TYPED = 2000     # characters in one typed turn
TICK_S = 0.1         # captions, status, latency polling, watchdog
TICK_FALLBACK_S = 0.25   # the ticker's own clock, for when the mic's wake-ups do not run the ticks
ECHO_NOTICE = {
    "aec": "echo: aec (echo cancellation on; you can talk over the agent)",
    "half": "echo: half (half duplex: the mic is closed while the agent speaks)",
    "off": "echo: off (full duplex without echo cancellation: use headphones)",
}
SELF_INTERRUPT_HINT = {   # by "is echo cancellation on"
    False: "the agent keeps getting interrupted right after it starts speaking: the mic probably hears "
           "the speaker. Use headphones, or run with --echo aec (or --echo half)",
    True: "the agent keeps getting interrupted right after it starts speaking although echo cancellation "
          "is on: it is not removing the speaker from the mic. Use headphones, lower the speaker volume, "
          "or run with --echo half",
}
DEVICE_HINT = "check that the device is still connected (`voicecli devices`), then start the chat again"


@dataclass
class ChatOptions:
    input_device: str | None = None
    output_device: str | None = None
    echo: str = "off"               # aec (echo cancellation) | half (half duplex) | off (full duplex)
    echo_guard_ms: int = 300        # aec: mic closed this long after each reply becomes audible
    prebuffer_ms: int = 60
    max_buffer_ms: int = 30000
    chunk_ms: int = 20
    # Device blocks. Output: 20 ms. A barge-in drops what the device and the server hold (pause +
    # restart), so the block size does not set the flush; half the wake-ups of 10 ms blocks are
    # ~0.2 % of a core while the agent talks. Input: 20 ms: each block wakes a PortAudio thread
    # (~0.4 % CPU per 100 wakeups/s here) and a chunk cannot leave before its last sample anyway.
    out_block_ms: int = 20
    in_block_ms: int = 20
    quiet_batching: bool = True     # a quiet mic's chunks are delivered ~100 ms at a time (CaptureStream)
    hangover_ms: int = 300
    record_dir: Path | None = None
    ptt: bool = False
    keys: bool = True
    stdin: IO[str] | None = None    # where keys are read (the Environment's stdin); None: sys.stdin


class ChatRunner:
    """One chat. ``await ChatRunner(...).run()`` returns the exit status or raises (a VoicecliError,
    or KeyboardInterrupt after a clean shutdown on Ctrl-C/SIGTERM)."""

    def __init__(self, settings: ConnectionSettings, opts: ChatOptions, output: Output,
                 runner: ToolRunner | None = None, view: ChatView | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.opts, self.runner = settings, opts, runner or ToolRunner()
        self.output = output
        self.view = view or ChatView()
        self.clock = clock

    async def run(self) -> ExitStatus:
        sd = devices.backend()
        in_s = devices.resolve_stream(self.opts.input_device, "input", sd, "float32")
        out_s = devices.resolve_stream(self.opts.output_device, "output", sd, "int16")
        chat = _Chat(self, in_s, out_s, sd)
        return await chat.run()


class _Chat:
    """One running chat: the devices are resolved; every part exists from here on."""

    def __init__(self, runner: ChatRunner, in_s: devices.StreamSettings, out_s: devices.StreamSettings,
                 sd: Any) -> None:
        opts, clock = runner.opts, runner.clock
        self.opts, self.output, self.view, self.clock, self.sd = opts, runner.output, runner.view, clock, sd
        self.in_s, self.out_s = in_s, out_s
        self.recorder = ChatRecorder(opts.record_dir, clock()) if opts.record_dir else None
        self.buffer = JitterBuffer(out_s.rate, opts.prebuffer_ms, opts.max_buffer_ms)
        self.speaker = Speaker(self.buffer, out_s.rate, clock, self.recorder)
        self.conv = Conversation(runner.settings, self.output, clock=clock)
        self.conv.listeners.append(self.on_event)
        self.ring: Any = None
        self.aec: Any = None
        if opts.echo == "aec":          # numpy and the canceller only when asked for (lazy, issue 10)
            from voicecli.audio.aec import EchoCanceller, FarEndRing
            self.ring = FarEndRing(out_s.rate)
            self.aec = EchoCanceller(self.ring, in_s.rate)
        self.mic = Mic(CapturePipeline(in_s.rate, in_s.channels, opts.chunk_ms), self.conv,
                       half_duplex=opts.echo == "half", hangover_ms=opts.hangover_ms, ptt=opts.ptt,
                       recorder=self.recorder, agent_audible=lambda: self.buffer.audible,
                       input_latency=lambda: self.in_stream.latency_s if self.in_stream else 0.0,
                       aec=self.aec, echo_guard_ms=opts.echo_guard_ms if self.aec else 0)
        self.tools = ToolDispatcher(self.conv, runner.runner)
        self.keys = KeyReader(self.on_key, opts.stdin)
        self.stop_requested = asyncio.Event()
        self.interrupted = False          # Ctrl-C / SIGTERM asked us to stop
        self.failure: AudioDeviceError | None = None
        self.barge_ins = 0
        self.typed_turns = 0
        self.generation = 0
        self.dropped_reported = 0.0
        self.out_stream: devices.PlaybackStream | None = None
        self.in_stream: devices.CaptureStream | None = None
        self._user_turn = False         # the server is in a user turn (see _set_user_turn)
        self.speaker.out_latency = lambda: self.out_stream.latency_s if self.out_stream else 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.devices = ChatDevices(opts.input_device, opts.output_device, sd, self._open_pair,
                                   self._close_pair, clock)
        self.devices.current = {"input": in_s, "output": out_s}
        self.recovery: asyncio.Task[None] | None = None
        self._last_tick = clock()
        self._ticking = False              # ticks start once the session is open (the ticker task)
        self._tick_blocks, self._tick_change = (-1, -1), clock()
        # the output stream pauses while there is nothing to play (OutputIdle); with aec too: the
        # canceller's reference is then silence, and it realigns on the restarted stream
        self.out_idle = OutputIdle()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> ExitStatus:
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[Any]] = []
        self._install_signals(loop)
        restore_c_stderr = devices.quiet_c_stderr()
        try:
            self._open_streams(loop)
            if not await self._until_stopped(self.conv.open()):
                return self._outcome()
            if self.opts.keys and self.keys.start():
                self.output.notice("talk now; keys: m mute, r agent speaks, t type, q quit"
                                   + (", space talk/stop" if self.opts.ptt else ""), "debug")
            tasks = [loop.create_task(self.mic.sender()), loop.create_task(self._ticker())]
            await self._until_stopped(self.conv.finished.wait())
            if self.conv.finished.is_set() and self.failure is None and self.conv.failure is None \
                    and not self.stop_requested.is_set():
                self.output.notice("the server ended the session", "info")
            return self._outcome()
        finally:
            try:
                await self._shutdown(tasks, loop)
            finally:
                restore_c_stderr()

    def _open_streams(self, loop: asyncio.AbstractEventLoop) -> None:
        opts, in_s, out_s = self.opts, self.in_s, self.out_s
        self.loop = loop
        self._open_pair(in_s, out_s)
        self.devices.watch(loop, self._device_moved)
        self.output.notice(f"mic: {in_s.device.name} ({in_s.rate} Hz, {in_s.channels} ch); speaker: "
                           f"{out_s.device.name} ({out_s.rate} Hz)", "debug")
        self.output.notice(ECHO_NOTICE[opts.echo], "info")

    def _open_pair(self, in_s: devices.StreamSettings, out_s: devices.StreamSettings) -> None:
        """Open the output, then the input stream (also :class:`ChatDevices`' reopen, from a thread)."""
        opts, loop = self.opts, self.loop
        assert loop is not None
        self.out_stream = self._new_output(out_s)
        wake = in_s.rate * opts.chunk_ms // 1000
        quiet = devices.quiet_frames_for(wake, in_s.rate) if opts.quiet_batching else 0
        self.in_stream = devices.CaptureStream(in_s, loop, self._on_mic_blocks, self._device_failed,
                                               max(64, in_s.rate * opts.in_block_ms // 1000), wake, self.sd,
                                               quiet)
        self.in_stream.prompt = self._user_turn

    def _new_output(self, out_s: devices.StreamSettings) -> devices.PlaybackStream:
        assert self.loop is not None
        return devices.PlaybackStream(out_s, self.loop, self.speaker.buffer, self._device_failed,
                                      max(64, out_s.rate * self.opts.out_block_ms // 1000), self.sd,
                                      ring=self.ring)

    def _close_pair(self) -> None:
        for stream in (self.in_stream, self.out_stream):
            if stream is not None:
                stream.close()

    def _outcome(self) -> ExitStatus:
        """The chat's result for the exit map: a device failure, the conversation's failure,
        KeyboardInterrupt for Ctrl-C/SIGTERM, else OK."""
        if self.failure is not None:
            raise self.failure
        self.conv.raise_if_failed()
        if self.interrupted:
            raise KeyboardInterrupt
        return ExitStatus.OK

    async def _until_stopped(self, aw: Awaitable[Any]) -> bool:
        """Run ``aw`` until it finishes (True) or a stop is requested (False)."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stop_requested.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done:
            task.result()
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
        """Every step runs whatever an earlier one raised: the streams close, the terminal is given
        back and the recording is written. A second Ctrl-C only cuts the wait for ``session.ended``."""
        try:
            self.devices.close()
            if self.recovery is not None:      # a reopen in progress: let its attempt finish
                await asyncio.gather(self.recovery, return_exceptions=True)
            if self.in_stream is not None:
                self.in_stream.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.tools.cancel()
            await self.conv.close()            # session.end, then a short wait for session.ended
        finally:
            try:
                if self.out_stream is not None:
                    self.out_stream.close()
            finally:
                self.keys.close()
                self._remove_signals(loop)
                if self.conv.generation > 0:    # never connected: nothing to sum up or record
                    self._wrap_up()

    def _wrap_up(self) -> None:
        """The transcript's last lines (a reply cut by the stop), the summary, the recording."""
        try:
            self._report_replies(final=True)
            self.output.refresh()
            self._summary()
        finally:
            if self.recorder is not None:
                for rid in self.recorder.pending_replies():
                    self.speaker.record(rid)
                wav, js = self.recorder.write()
                self.output.notice(f"recorded {self.recorder.wav.duration_s:.1f} s to {wav} and {js}", "info")

    def stop(self) -> None:
        self.stop_requested.set()

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
        """First Ctrl-C (or SIGTERM): a clean stop. A second one during the shutdown skips only the
        wait for ``session.ended``: every other step of :meth:`_shutdown` (each one bounded) still
        runs, so the terminal is restored and the recording written."""
        if self.interrupted or self.stop_requested.is_set():
            self.conv.finished.set()          # Conversation.close stops waiting for session.ended
            self.output.notice("not waiting for the server any longer", "debug")
        self.interrupted = True
        self.stop()

    def on_key(self, ch: str) -> None:
        if self.view.chat.typing is not None:
            self._typing_key(ch)
        elif ch in ("t", "T"):
            self.view.chat.typing = ""
            self.output.notice("type a message: Enter sends it, Esc cancels", "info"
                               if not isinstance(self.output, ChatLiveOutput) else "debug")
            self.output.refresh()
        elif ch in ("q", "Q"):
            self.stop()
        elif ch in ("m", "M"):
            self.mic.muted = not self.mic.muted
            self.output.notice("microphone muted" if self.mic.muted else "microphone on", "debug")
        elif ch == " " and self.opts.ptt:
            self.mic.talking = not self.mic.talking
        elif ch in ("r", "R") and self.conv.session.ready:
            # "speak now": a reply without a user turn (protocol.md 3.4)
            task = asyncio.get_running_loop().create_task(self.conv.send(ReplyCreate()))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
            self.output.notice("asked the agent to speak (reply.create)", "debug")

    def _typing_key(self, ch: str) -> None:
        """A key while the one-line input is open: Enter sends, Esc cancels, Backspace edits."""
        text = self.view.chat.typing or ""
        if ch in ("\r", "\n"):
            self.view.chat.typing = None
            if text.strip():
                self.send_typed(text.strip())
        elif ch == "\x1b":
            self.view.chat.typing = None
            self.output.notice("message not sent", "debug")
        elif ch in ("\x7f", "\b"):
            self.view.chat.typing = text[:-1]
        elif ch == "\x15":                          # Ctrl-U: clear the line
            self.view.chat.typing = ""
        elif ch.isprintable() and len(text) < MAX_TYPED:
            self.view.chat.typing = text + ch
        self.output.refresh()

    def send_typed(self, text: str) -> None:
        """A typed user turn: ``conversation.message`` (role user) then ``reply.create`` (protocol.md
        3.4-3.5), shown and recorded as a typed user turn."""
        if not self.conv.session.ready:
            self.output.notice("not connected: the message was not sent; type it again once connected",
                               "warning")
            return
        self.typed_turns += 1
        self.view.typed(f"typed_{self.typed_turns}", text)
        self.output.client_event("user.typed", text=text)
        if self.recorder is not None:
            self.recorder.entry("user", text, self.clock(), typed=True)

        async def send() -> None:
            await self.conv.send(ConversationMessage("user", text))
            await self.conv.send(ReplyCreate())

        task = asyncio.get_running_loop().create_task(send())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _device_failed(self, message: str) -> None:
        """A stream died or stalled: reopen the devices (:class:`ChatDevices`) and go on; the chat
        fails (exit 6) only when none could be opened again within its bounded retry."""
        if self.stop_requested.is_set() or self.failure is not None or self.devices.recovering:
            return
        self.recovery = asyncio.get_running_loop().create_task(self._recover(message))

    def _rerate(self, in_s: devices.StreamSettings, out_s: devices.StreamSettings) -> None:
        """Devices reopened at other rates (the old one was not offered): rebuild what depends on the
        rate. A reply playing is cut cleanly (heard so far, its late audio gated), as by a barge-in."""
        old_in, old_out = self.in_s, self.out_s
        self.in_s, self.out_s = in_s, out_s
        if out_s.rate != old_out.rate:
            for rid in self.speaker.barge_in_targets(self.conv.session.current_reply):
                cut = self.speaker.cut(rid)
                if cut is not None:
                    self.view.interrupted(rid, cut.played_ms)
                    self.output.client_event("reply.cut", reply_id=rid, played_ms=round(cut.played_ms, 1),
                                             reason=f"the speaker came back at {out_s.rate} Hz")
            self.speaker.rerate(out_s.rate)
            self.buffer = self.speaker.buffer
            if self.ring is not None:
                from voicecli.audio.aec import FarEndRing
                self.ring = FarEndRing(out_s.rate)
            if self.out_stream is not None:
                self.out_stream.buffer, self.out_stream.ring = self.buffer, self.ring
        if (in_s.rate, in_s.channels) != (old_in.rate, old_in.channels) or out_s.rate != old_out.rate:
            if self.ring is not None:
                from voicecli.audio.aec import EchoCanceller
                self.aec = EchoCanceller(self.ring, in_s.rate)
            self.mic.rerate(in_s.rate, in_s.channels, self.aec)

    def _device_moved(self, kind: str, before: str, now_on: str) -> None:
        self.output.notice(moved_line(kind, before, now_on), "warning")
        self.output.client_event("device.moved", stream=kind, **{"from": before, "to": now_on})

    async def _recover(self, message: str) -> None:
        try:
            done = await self.devices.recover(message)
        except AudioDeviceError as exc:
            if self.devices.closed:            # stopped meanwhile: the stop decides the outcome
                return
            if exc.hint is None or "voicecli devices" not in exc.hint:
                exc.hint = DEVICE_HINT
            self.failure = exc
            self.stop()
            return
        self._rerate(done.input, done.output)
        self.mic.resync()
        self.output.notice(done.line(), "warning")
        self.output.client_event("device.reopened", **done.fields())

    # ------------------------------------------------------------------ server events

    def on_event(self, rec: Received) -> None:
        """Act on the session's verdicts: it has resolved the reply id and whether it is
        interrupted; nothing here re-derives them."""
        ev, rid = rec.event, rec.reply_id or ""
        if isinstance(ev, ReplyAudio):
            if not rec.stale and not rec.interrupted:
                self.speaker.audio(rid, ev.data)
                if self._out_paused() and self.buffer.depth_frames > 0:
                    self._wake_output()
            return
        if rec.newly_interrupted:
            self.cut(rid, "reply.done")
        if isinstance(ev, InputSpeechStarted) and not rec.stale:
            self._set_user_turn(True)
            for target in self.speaker.barge_in_targets(self.conv.session.current_reply):
                self.cut(target, "input.speech.started")
        elif isinstance(ev, InputSpeechStopped):
            self.speaker.speech_stopped()
        elif isinstance(ev, ReplyStarted):
            self._set_user_turn(False)
            self.speaker.started(ev.reply_id)
            self._wake_output()          # audio follows: start the stream before it arrives
        elif isinstance(ev, ReplyDone):
            if not rec.interrupted:
                self.speaker.done(rid)
            else:
                self.speaker.finished.add(rid)
        elif isinstance(ev, TranscriptUser):
            self._set_user_turn(False)
            if self.recorder is not None:
                self.recorder.entry("user", ev.text, self.clock(), item_id=ev.item_id)
        elif isinstance(ev, SessionReady):
            self.view.chat.connection = "connected"
        self.view.apply(rec)

    def _set_user_turn(self, on: bool) -> None:
        """The server hears a user turn (``input.speech.started`` until its ``transcript.user`` or a
        reply): the mic delivers every chunk at once meanwhile, however quiet, so the silence that
        ends the turn reaches the server's turn detection without waiting in a held delivery."""
        self._user_turn = on
        if self.in_stream is not None:
            self.in_stream.prompt = on

    def cut(self, rid: str, trigger: str) -> None:
        """Flush ``rid`` from playback (idempotent) and say so. If it was playing, what the device
        and the sound server still hold of it is dropped too (:meth:`_drop_queued`)."""
        playing = self.buffer.audible and self.buffer.current_reply == rid
        cut: Cut | None = self.speaker.cut(rid)
        if cut is None:
            return
        dropped = playing and self._drop_queued()
        self.barge_ins += 1
        self.view.interrupted(rid, cut.played_ms)
        self.output.client_event("barge_in", reply_id=rid, played_ms=round(cut.played_ms, 1),
                                 flushed_ms=round(cut.flushed_ms, 1), trigger=trigger,
                                 device_dropped=dropped)
        if self.opts.echo != "half" and self.speaker.detector.should_warn():
            self.output.notice(SELF_INTERRUPT_HINT[self.opts.echo == "aec"], "warning")

    # ------------------------------------------------------------------ ticker

    async def _ticker(self) -> None:
        """The fallback clock of :meth:`_tick`. While the mic delivers, its wake-ups run the ticks
        (:meth:`_on_mic_blocks`), so this task only wakes every ``TICK_FALLBACK_S`` and finds
        nothing to do; when the mic stops delivering it ticks at that rate itself (the watchdog still
        sees the stall). On this project's 2-core VMs every wake-up of a thread costs ~0.2 ms of CPU:
        ten of them a second were ~0.5 % of a core (issue 10, Cost)."""
        self._ticking = True
        while True:
            await asyncio.sleep(TICK_FALLBACK_S)
            now = self.clock()
            if now - self._last_tick >= TICK_FALLBACK_S:
                self._tick(now)

    def _on_mic_blocks(self, blocks: list[Any], captured_at: float, adc_time: float | None) -> None:
        """The capture stream's delivery, on the loop: the mic's chunks first (sent at once), then
        a tick if one is due."""
        self.mic.on_blocks(blocks, captured_at, adc_time)
        now = self.clock()
        if self._ticking and now - self._last_tick >= TICK_S:
            self._tick(now)

    def _tick(self, now: float) -> None:
        """Watchdog, latency figures, captions and status, ~10 times a second."""
        self._last_tick = now
        blocks = (self.in_stream.blocks if self.in_stream else 0,
                  self.out_stream.blocks if self.out_stream else 0)
        last_blocks = self._tick_blocks
        if self.devices.recovering:
            self._tick_blocks, self._tick_change = (-1, -1), now
        elif blocks[0] != last_blocks[0] and (blocks[1] != last_blocks[1] or self._out_paused()):
            self._tick_blocks, self._tick_change = blocks, now
        elif now - self._tick_change > STALL_S:
            which = "input" if blocks[0] == last_blocks[0] else "output"
            self._device_failed(f"the {which} device stopped delivering audio for {STALL_S:g} s")
        for stream in (self.in_stream, self.out_stream):
            if stream is not None and not self.devices.recovering:
                stream.check_alive()
        self._idle_output(now)
        for turn in self.speaker.poll():
            self.output.client_event("metrics", scope="turn", **turn)
        playing = self.buffer.current_reply
        if playing:
            self.view.set_played(playing, self.speaker.heard_ms(playing))
        self._report_replies(final=False)
        self._update_status(now)
        self.output.refresh()

    def _drop_queued(self) -> bool:
        """A barge-in cut the reply that was playing: throw away what the device and the sound
        server still hold of it too, at once. Pausing aborts the stream (ALSA's ``snd_pcm_drop``,
        which the pulse plugin turns into a flush of the server's buffer) and the restart follows
        right away (:meth:`_wake_output`: the pinned-sink and lost-server cases included). The
        speaker falls silent within ~1-2 ms instead of the 20-30 ms those buffers hold
        (``bench/cost_bench.py`` flush p50 31 -> 3.5 ms); ~2 ms on the loop. With the echo canceller
        the dropped part of its far-end reference becomes silence (it never reaches the speaker)."""
        stream = self.out_stream
        if stream is None or stream.paused or self.devices.recovering or not stream.pause():
            return False
        if self.ring is not None and stream.paused_at is not None:
            self.ring.drop_after(stream.paused_at)   # what the device held never plays: no echo of it
        self.devices.paused("output")
        self._wake_output()
        return True

    def _out_paused(self) -> bool:
        return self.out_stream is not None and self.out_stream.paused

    def _idle_output(self, now: float) -> None:
        """Pause the output stream once the speaker has been idle for a while (:class:`OutputIdle`;
        the tick, on the loop: never from the callback thread)."""
        idle, stream = self.out_idle, self.out_stream
        if stream is None:
            return
        if self.devices.recovering or stream.paused:
            idle.reset()
            return
        busy = OutputIdle.busy(self.buffer, self.conv.session.current_reply is not None)
        if idle.due(now, busy) and stream.pause():
            idle.reset()
            self.devices.paused("output")

    def _wake_output(self) -> None:
        """A reply starts or its audio arrives: a paused output stream starts again (on the loop,
        ~1.5 ms to its first callback, before the jitter buffer's prebuffer can fill). A start that
        fails goes the way of any failed stream (:meth:`_device_failed`)."""
        stream = self.out_stream
        if stream is None or not stream.paused or self.devices.recovering:
            return
        self.out_idle.reset()
        if self.devices.restart_needs_reopen("output"):
            self._reopen_output(stream)
        elif stream.resume():
            self.devices.resumed("output")   # a new stream on the sound server: where is it?
            if self.aec is not None:
                self.aec.output_restarted()

    def _reopen_output(self, old: devices.PlaybackStream) -> None:
        """A paused output stream whose pinned sink went away: a fresh one in its place (on the loop:
        a few ms; the mic and the buffer are untouched); one that does not open is a device failure."""
        old.close()
        self.out_stream = None
        try:
            self.out_stream = self._new_output(self.out_s)
        except AudioDeviceError as exc:
            self._device_failed(f"the speaker could not be opened again: {exc.message}")
            return
        self.devices.resumed("output")

    def _report_replies(self, final: bool) -> None:
        """Emit ``voicecli.reply.heard`` for agent lines that are done (played through or cut).
        ``final`` (the chat is ending): a reply still playing keeps what was heard so far, marked cut."""
        if final:
            for line in self.view.lines:
                if line.role == "agent" and not line.final:
                    self.view.set_played(line.key, self.speaker.heard_ms(line.key))
                    self.view.cut(line.key, self.speaker.heard_ms(line.key))
        for line in self.view.lines[-20:]:
            if line.role != "agent" or not line.final or not isinstance(line, ChatLine) or line.reported:
                continue
            line.reported = True              # on the line itself: bounded with the view's lines
            heard_s = line.heard_s
            cut = {"cut": True} if line.cut else {}
            self.output.client_event("reply.heard", reply_id=line.key, text=line.text,
                                     interrupted=line.interrupted, played_s=heard_s, **cut)
            if self.recorder is not None:
                self.recorder.entry("agent", line.text, self.clock(), reply_id=line.key,
                                    interrupted=line.interrupted, played_s=heard_s, **cut)

    def _update_status(self, now: float) -> None:
        """The reconnect notice, and the status line's figures where a live view draws them (the
        mic level alone, computed for the meter, was ~0.13 ms a tick here: issue 10, Cost)."""
        s = self.view.chat
        if self.conv.connected.is_set():
            s.connection = "connected"
            if self.conv.generation != self.generation:
                self.generation = self.conv.generation
                lost = self.conv.dropped_audio_ms - self.dropped_reported
                if self.generation > 1 and lost > 0:
                    self.output.notice(f"{lost / 1000:.1f} s of microphone audio was not sent while "
                                       "reconnecting; please repeat what you said", "warning")
                self.dropped_reported = self.conv.dropped_audio_ms
        elif self.conv.generation > 0:
            s.connection = "reconnecting"
        if not isinstance(self.output, ChatLiveOutput):
            return
        s.level_db = self.mic.capture.measure_level()
        s.muted = self.mic.muted
        s.ptt = self.mic.talking if self.opts.ptt else None
        s.gated = self.mic.half_duplex and not self.mic.gate.mic_open(now)
        s.buffer_ms = self.buffer.depth_ms
        s.underruns = self.buffer.stats.underruns
        s.device_xruns = self._device_flags("underflows") + self._device_flags("overflows")
        last = self.speaker.latency.last
        if last is not None:
            s.last_total_ms, s.last_server_ms, s.last_local_ms = last.total_ms, last.server_ms, last.local_ms

    def _device_flags(self, which: str) -> int:
        return sum(getattr(s, which) for s in (self.in_stream, self.out_stream) if s is not None)

    def _summary(self) -> None:
        stats = self.buffer.stats
        summary = self.speaker.latency.summary()
        self.output.client_event(
            "metrics", scope="session", **summary, barge_ins=self.barge_ins, underruns=stats.underruns,
            underrun_ms=round(stats.underrun_frames * 1000 / self.buffer.rate, 1),
            overflow_ms=round(stats.overflow_frames * 1000 / self.buffer.rate, 1),
            mic_dropped_ms=round(self.conv.dropped_audio_ms, 1),
            input_status_flags=self.in_stream.status_flags if self.in_stream else 0,
            output_status_flags=self.out_stream.status_flags if self.out_stream else 0,
            output_pauses=self.out_stream.pauses if self.out_stream else 0,
            device_underflows=self._device_flags("underflows"),
            device_overflows=self._device_flags("overflows"),
            device_reopens=self.devices.reopened, device_checks=self.devices.move_checks,
            echo=self.opts.echo, **({"aec": self.aec.stats()} if self.aec else {}))
        if summary["turns"]:
            t, srv, loc = summary["total_ms"], summary["server_ms"], summary["local_ms"]
            self.output.notice(f"{summary['turns']} turn(s): end of speech -> agent heard p50 "
                               f"{t['p50']:.0f} ms, "
                               f"p95 {t['p95']:.0f} ms (server p50 {srv['p50']:.0f} ms + local p50 "
                               f"{loc['p50']:.0f} ms); {self.barge_ins} barge-in(s), {stats.underruns} "
                               f"underrun(s), device underflows {self._device_flags('underflows')}/"
                               f"overflows {self._device_flags('overflows')}", "info")
