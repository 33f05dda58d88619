"""The conversation half of a server connection: input audio, user turns, replies, tools.

:class:`Conversation` is the base of :class:`~voicecli.server.connection.ConnectionHandler`; it
holds the per-connection conversation state and the rules of protocol.md 6.2-6.5:

- ``input.audio`` only after ``session.ready`` (else ``invalid_format``, counted); real-time rate
  enforced by :class:`~voicecli.server.turns.RateLimiter` (3.2).
- turn detection: ``input.speech.started`` -> cumulative ``transcript.user.delta`` every ~300 ms
  of audio -> ``input.speech.stopped`` -> ``transcript.user`` (same ``item_id``) -> reply (6.2).
- barge-in while a reply streams and ``interrupt_response`` is not false (after
  ``interruption_delay`` ms of speech, if set; never during a greeting listed in
  ``uninterruptible_turns``): the reply ends as interrupted (6.3). With barge-in off, the reply to
  the new turn queues behind the one playing.
- tools (6.5): calls are issued in a reply, results are awaited after its ``reply.done``; then
  ``brain.after_tools`` gives the follow-up reply. Hold mode suppresses user-triggered replies
  and buffers ``transcript.user(.delta)`` until the hold ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from .codec import bytes_per_ms, decode_input
from .engines import BYTES_PER_MS, ReplyPlan, TurnContext
from .reply import DEFAULT_TOOL_TIMEOUT_S, Reply, ToolBatch
from .session import new_id
from .turns import PARTIAL_EVERY_MS, PREROLL_MS, AudioBuffer, RateLimiter, UserTurn

if TYPE_CHECKING:
    from .options import Faults, ServerOptions
    from .session import Engines, Session

log = logging.getLogger("voicecli.server")


class Conversation:
    """Conversation state and rules of one connection (see module docstring)."""

    # provided by ConnectionHandler
    session: Session | None
    ready: bool
    options: ServerOptions
    faults: Faults

    @property
    def stats(self) -> Counter[str]:
        raise NotImplementedError

    @property
    def engines(self) -> Engines:
        raise NotImplementedError

    @property
    def session_config(self) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, event_type: str, **fields: Any) -> None:
        raise NotImplementedError

    async def send_error(self, code: str, message: str, param: str | None = None) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        raise NotImplementedError

    def abort(self, why: str) -> None:
        raise NotImplementedError

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None
        self.buffer = AudioBuffer()
        self.turn: UserTurn | None = None
        self.interrupt_at_ms: float | None = None
        self.replies: list[tuple[Reply, asyncio.Task[None]]] = []
        self.current: Reply | None = None
        self.replies_started = 0
        self.replies_completed = 0
        self.batch: ToolBatch | None = None
        self.answered_calls: set[str] = set()
        self.stale_calls: set[str] = set()
        self.held: list[tuple[str, dict[str, Any]]] = []

    @property
    def session_history(self) -> list[tuple[str, str]]:
        assert self.session is not None
        return self.session.history

    @property
    def turn_detection(self) -> dict[str, Any]:
        td = self.session_config["input"].get("turn_detection")
        return td if isinstance(td, dict) else {}

    def context(self, user_text: str = "", speech_seconds: float = 0.0,
                instructions: str | None = None) -> TurnContext:
        """What the brain sees for the next reply."""
        assert self.session is not None
        cfg = self.session.config
        return TurnContext(user_text=user_text, speech_seconds=speech_seconds,
                           system_prompt=cfg.get("system_prompt") or "", instructions=instructions,
                           tools=list(cfg.get("tools") or []), history=list(self.session.history),
                           turn_index=self.session.turn_index)

    # -- input audio ----------------------------------------------------------------------
    async def on_audio(self, raw: bytes) -> None:
        """``input.audio`` (protocol.md 3.2)."""
        if not self.ready or self.session is None:
            self.stats["audio_before_ready"] += 1
            await self.send_error("invalid_format", "input.audio before session.ready: send "
                                  "session.update and wait for session.ready")
            return
        encoding = (self.session_config["input"].get("format") or {}).get("encoding", "audio/pcm")
        if encoding == "audio/pcm" and len(raw) % 2:
            await self.send_error("invalid_audio", "PCM16 audio must have an even number of bytes")
            return
        ms = len(raw) / bytes_per_ms(encoding)
        if self.options.enforce_realtime:
            if self.limiter is None:
                self.limiter = RateLimiter(self.options.burst_allowance_ms)
            now = asyncio.get_running_loop().time()
            if not self.limiter.accept(ms, now):
                self.stats["rate_violations"] += 1
                self.stats["audio_dropped_ms"] += int(ms)
                if self.limiter.should_report(now):
                    await self.send_error("audio_rate_violation", "Audio is being sent faster than "
                                          "real time; the excess was dropped")
                return
        self.session.audio_ms += ms
        await self.feed(decode_input(raw, encoding))

    async def feed(self, pcm: bytes) -> None:
        """Run turn detection on accepted audio (PCM16 24 kHz) and act on its events."""
        detector = self.engines.detector
        self.buffer.append(pcm)
        for event in detector.feed(pcm):
            if event.kind == "started":
                await self.speech_started(event.at_ms)
            else:
                await self.speech_stopped(event.at_ms)
        now_ms = self.buffer.end_ms
        if self.turn is not None and detector.in_speech:
            if self.interrupt_at_ms is not None and now_ms >= self.interrupt_at_ms:
                self.interrupt_at_ms = None
                await self.interrupt_replies()
            if now_ms - self.turn.last_partial_ms >= PARTIAL_EVERY_MS:
                await self.send_partial(self.turn, now_ms)
            self.buffer.trim(self.turn.start_ms)  # caps a runaway utterance at MAX_UTTERANCE_MS
        elif self.turn is None:
            self.buffer.trim(now_ms - PREROLL_MS)

    async def send_partial(self, turn: UserTurn, now_ms: float) -> None:
        turn.last_partial_ms = now_ms
        text = self.engines.stt.partial(self.buffer.slice(turn.start_ms, now_ms))
        if text and text != turn.last_partial_text:
            turn.last_partial_text = text
            await self.send_transcript("transcript.user.delta", item_id=turn.item_id, text=text)

    async def send_transcript(self, event_type: str, **fields: Any) -> None:
        """User transcripts are buffered during a hold and flushed when it ends (6.5)."""
        if self.batch is not None and self.batch.hold:
            self.held.append((event_type, fields))
        else:
            await self.send(event_type, **fields)

    async def flush_held(self) -> None:
        held, self.held = self.held, []
        for event_type, fields in held:
            await self.send(event_type, **fields)

    async def speech_started(self, at_ms: float) -> None:
        """``input.speech.started``, then barge-in if the agent is talking (6.3)."""
        self.turn = UserTurn(new_id("msg_"), max(self.buffer.start_ms, at_ms - PREROLL_MS), at_ms)
        await self.send("input.speech.started")
        reply = self.current
        if reply is None or reply.phase != "streaming":
            return
        td = self.turn_detection
        if td.get("interrupt_response") is False:
            return
        if reply.kind == "greeting" and "greeting" in (td.get("uninterruptible_turns") or []):
            return
        delay = td.get("interruption_delay") or 0
        if delay > 0:
            self.interrupt_at_ms = at_ms + delay
        else:
            await self.interrupt_replies()

    async def speech_stopped(self, at_ms: float) -> None:
        """``input.speech.stopped`` -> ``transcript.user`` -> the reply (6.2)."""
        turn, self.turn, self.interrupt_at_ms = self.turn, None, None
        if turn is None or self.session is None:
            return
        await self.send("input.speech.stopped")
        pcm = self.buffer.slice(turn.start_ms, at_ms)
        text = self.engines.stt.final(pcm)
        await self.send_transcript("transcript.user", item_id=turn.item_id, text=text)
        self.stats["user_turns"] += 1
        ctx = self.context(user_text=text, speech_seconds=len(pcm) / BYTES_PER_MS / 1000.0)
        self.session.history.append(("user", text))
        self.session.turn_index += 1
        self.buffer.trim(at_ms - PREROLL_MS)
        if self.batch is not None and self.batch.hold:
            return  # user-triggered replies are suppressed while a hold tool runs (6.5)
        await self.start_reply(self.engines.brain.reply(ctx), "turn", False)

    # -- replies --------------------------------------------------------------------------
    async def start_reply(self, plan: ReplyPlan, kind: str, interrupt: bool) -> None:
        """Run a reply cycle. ``interrupt``: end the reply in progress first (``reply.create``,
        3.4); otherwise queue behind it."""
        if interrupt:
            await self.interrupt_replies()
        reply = Reply(plan, kind)
        previous = [task for _, task in self.replies if not task.done()]
        task = asyncio.get_running_loop().create_task(self._run_reply(reply, previous))
        self.replies = [(r, t) for r, t in self.replies if not t.done()] + [(reply, task)]

    async def _run_reply(self, reply: Reply, previous: list[asyncio.Task[None]]) -> None:
        if previous:
            await asyncio.wait(previous)
        try:
            await reply.run(self)  # type: ignore[arg-type]
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("reply %s failed", reply.reply_id)
        finally:
            if self.current is reply and reply.phase == "done":
                self.current = None

    def reply_started(self, reply: Reply) -> None:
        """Called by the reply as it sends ``reply.started``: a newer reply supersedes tool calls
        still waiting for results in interactive mode (the client must drop them, 3.3)."""
        self.current = reply
        self.replies_started += 1
        if self.batch is not None and self.batch.done_sent and not self.batch.hold:
            self.abandon_batch(self.batch)

    def reply_completed(self, reply: Reply) -> None:
        """Called after ``reply.done{completed}``: history, tool wait, drop fault."""
        assert self.session is not None
        self.replies_completed += 1
        self.stats["replies_completed"] += 1
        if reply.plan.text.strip():
            self.session.history.append(("assistant", reply.plan.text))
        if reply.batch is not None and reply.batch is self.batch:
            reply.batch.start_clock(asyncio.get_running_loop().time())
            reply.batch.waiter = self.spawn(self.await_tools(reply.batch))
        n = self.faults.drop_after_replies
        if n and not self.faults.drop_mid_reply and self.replies_completed == n:
            self.abort(f"drop-after-replies={n}")

    def maybe_drop_mid_reply(self, reply: Reply) -> None:
        """Fault ``drop_mid_reply``: abort halfway through the Nth reply's audio."""
        if self.faults.drop_mid_reply and not getattr(self, "dropped", False) \
                and self.replies_started == (self.faults.drop_after_replies or 1) \
                and reply.sent_ms >= reply.duration_ms / 2:
            self.abort("drop-mid-reply")

    async def interrupt_replies(self) -> None:
        """End the reply in progress as interrupted (6.3) and drop queued ones. A reply whose
        audio is all delivered (phase ``finishing``) is let finish instead."""
        entries = [(r, t) for r, t in self.replies if not t.done()]
        self.replies = []
        if not entries:
            return
        now = asyncio.get_running_loop().time()
        for reply, task in entries:
            if reply.phase != "finishing":
                task.cancel()
        await asyncio.wait([t for _, t in entries])
        for reply, _ in entries:
            if reply.phase == "streaming":
                await self._finish_interrupted(reply, now)
        self.current = None

    async def _finish_interrupted(self, reply: Reply, now: float) -> None:
        reply.phase = "done"
        spoken = reply.spoken_text(now)
        self.stats["replies_interrupted"] += 1
        if spoken and self.session is not None:
            self.session.history.append(("assistant", spoken))
        if reply.batch is not None:
            self.abandon_batch(reply.batch)
        await self.send("transcript.agent", reply_id=reply.reply_id, item_id=reply.item_id,
                        text=spoken, interrupted=True)
        await self.send("reply.done", reply_id=reply.reply_id, status="interrupted")

    async def cancel_reply(self, reply_id: str) -> None:
        """``reply.cancel`` (schema-only, 3.8): interrupts the current reply; the status is
        ``interrupted`` (the documented enum) rather than the SDK prose's ``cancelled``."""
        if self.current is not None and reply_id in ("", self.current.reply_id):
            await self.interrupt_replies()

    async def cancel_replies(self) -> None:
        """Stop every reply without wire events (session end, disconnect)."""
        entries, self.replies = self.replies, []
        for _, task in entries:
            task.cancel()
        if entries:
            await asyncio.wait([t for _, t in entries])
        self.current = None

    # -- tools ----------------------------------------------------------------------------
    async def issue_tool_calls(self, reply: Reply) -> None:
        """Send the reply's ``tool.call`` events (4.14); duplicates keep their ``call_id``."""
        if self.batch is not None:
            self.abandon_batch(self.batch)
        batch = ToolBatch(reply.reply_id)
        declared = {t.get("name"): t for t in self.session_config.get("tools") or []
                    if isinstance(t, dict)}
        calls = [(call.call_id or new_id("call_", 16), call) for call in reply.plan.tool_calls]
        for call_id, call in calls:
            spec = declared.get(call.name, {})
            batch.add(call_id, call.name, float(spec.get("timeout_seconds") or DEFAULT_TOOL_TIMEOUT_S))
            batch.hold = batch.hold or spec.get("execution_mode") == "hold"
        reply.batch = self.batch = batch
        for call_id, call in calls:
            self.stats["tool_calls"] += 1
            await self.send("tool.call", call_id=call_id, name=call.name, arguments=dict(call.arguments))

    def abandon_batch(self, batch: ToolBatch) -> None:
        """Forget a batch whose reply was interrupted or superseded; later results are stale."""
        self.stale_calls.update(cid for cid in batch.calls if cid not in batch.outcomes)
        self.answered_calls.update(batch.outcomes)
        if batch.waiter is not None and batch.waiter is not asyncio.current_task():
            batch.waiter.cancel()
        if self.batch is batch:
            self.batch = None
            if self.held:
                self.spawn(self.flush_held())

    async def on_tool_result(self, call_id: str, result: str, is_error: bool) -> None:
        """``tool.result`` (3.3). Unknown ``call_id`` -> ``invalid_value`` (session open)."""
        batch = self.batch
        if batch is not None and call_id in batch.calls:
            if call_id in batch.outcomes:
                self.stats["tool_results_duplicate"] += 1
                return
            if not batch.done_sent:
                self.stats["tool_results_before_done"] += 1
                log.warning("tool.result for %s arrived before reply.done (protocol.md 3.3)", call_id)
            batch.add_result(call_id, result, is_error)
        elif call_id in self.answered_calls:
            self.stats["tool_results_duplicate"] += 1
        elif call_id in self.stale_calls:
            self.stats["tool_results_stale"] += 1
        else:
            self.stats["tool_results_unknown"] += 1
            await self.send_error("invalid_value", f"unknown call_id {call_id!r}", "call_id")

    async def await_tools(self, batch: ToolBatch) -> None:
        """After ``reply.done``: wait for every result (or timeout), then the follow-up reply."""
        outcomes = await batch.wait()
        if self.batch is not batch or self.session is None:
            return
        self.batch = None
        for outcome in outcomes:
            (self.stale_calls if outcome.timed_out else self.answered_calls).add(outcome.call_id)
            self.stats["tool_timeouts"] += outcome.timed_out
            self.session.history.append(("tool", f"{outcome.name}: {outcome.result}"))
        await self.flush_held()
        plan = self.engines.brain.after_tools(self.context(), outcomes)
        await self.start_reply(plan, "tools", False)
