"""The agent's replies and tool calls, sans-I/O (protocol.md 4.9-4.14, 6.2-6.5).

:class:`Replies` is the reply half of the agent session (``agent.py`` owns one). It queues reply
jobs, hands one at a time to the pump (:class:`~voicecli.server.effects.StartReply`), turns what
the pipeline produced into wire events, and keeps the tool calls of the session. Reply states and
tool-call states are the rule table's (``Machine("reply"/"call", Role.SERVER)``, via
:class:`~voicecli.server.effects.Wire`); this module only adds the bookkeeping the table does not
hold (queue, pacing position, tool batches).

One reply on the wire::

    reply.started{reply_id, item_id}                      when its first clause is synthesized
    transcript.agent.delta{delta, start_ms, end_ms} x words   per clause, ahead of that audio
    reply.audio{data, reply_id} x N                        paced by the pipeline
    tool.call{call_id, name, arguments} x calls            after the (transition) audio
    transcript.agent{text, interrupted:false}              if it said anything
    reply.done{status:"completed"}

A reply is interruptible from ``reply.started`` until ``reply.done``. Interrupted (barge-in,
``reply.create``, ``reply.cancel``): ``transcript.agent{interrupted:true, text: the words
played}`` then ``reply.done{interrupted}`` and its pipeline is cancelled; "played" is the time
since the first chunk, capped at the audio sent (6.3). Its tool calls are void.

Tools (6.5): a reply's calls wait for results after its ``reply.done`` (deadlines from
``timeout_seconds``); then the follow-up reply asks the brain with the outcomes. A newer reply
supersedes unanswered interactive calls; hold mode (``execution_mode: "hold"``) suppresses
user-turn replies and buffers ``transcript.user(.delta)`` until the results are in.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicecli.protocol.constants import DEFAULT_TOOL_TIMEOUT_S
from voicecli.protocol.events import (
    RemoteProtocolError,
    ReplyAudio,
    ReplyDone,
    ReplyError,
    ReplyStarted,
    ServerEvent,
    ToolCall,
    TranscriptAgent,
    TranscriptAgentDelta,
)
from voicecli.session.rules import DROP, CallState, ReplyState, Role

from .effects import ArmTimer, CancelReply, CancelTimer, ReplyJob, StartReply, Wire
from .engines import BrainError, ToolCallRequest, ToolOutcome, TurnContext, WordTiming
from .session import Session, new_id

log = logging.getLogger("voicecli.server")

TOOLS_TIMER = "tools"


@dataclass(eq=False, slots=True)
class ToolBatch:
    """The tool calls of one reply (call order kept), their results and deadlines."""

    reply_id: str
    calls: dict[str, str] = field(default_factory=dict)          # call_id -> tool name
    timeouts: dict[str, float] = field(default_factory=dict)     # call_id -> seconds
    hold: bool = False
    done_sent: bool = False
    outcomes: dict[str, ToolOutcome] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        return [cid for cid in self.calls if cid not in self.outcomes]


@dataclass(eq=False, slots=True)
class LiveReply:
    """The reply the pipeline is producing: what was sent, for trimming an interrupted one."""

    job: ReplyJob
    started: bool = False
    words: list[WordTiming] = field(default_factory=list)   # ms from the start of the reply audio
    sent_ms: float = 0.0
    t_first: float | None = None
    batch: ToolBatch | None = None

    def played_ms(self, now: float) -> float:
        """Audio the client has played by ``now``: time since the first chunk, capped at the audio
        sent (protocol.md 6.3)."""
        if self.t_first is None:
            return 0.0
        return min((now - self.t_first) * 1000.0, self.sent_ms)

    def spoken_text(self, now: float) -> str:
        played = self.played_ms(now)
        return " ".join(w.word for w in self.words if w.end_ms <= played)


class Replies:
    """Reply queue, the reply in progress, and the session's tool calls (see module docstring)."""

    def __init__(self, wire: Wire, session: Callable[[], Session]) -> None:
        self.wire = wire
        self._session = session
        self.queue: deque[ReplyJob] = deque()
        self.live: LiveReply | None = None
        self.batch: ToolBatch | None = None
        self.held: list[ServerEvent] = []

    @property
    def session(self) -> Session:
        return self._session()

    def context(self, user_text: str = "", speech_seconds: float = 0.0,
                instructions: str | None = None) -> TurnContext:
        """What the brain sees for the next reply."""
        s = self.session
        return TurnContext(user_text=user_text, speech_seconds=speech_seconds,
                           system_prompt=s.config.get("system_prompt") or "", instructions=instructions,
                           tools=list(s.config.get("tools") or []), history=list(s.history),
                           turn_index=s.turn_index)

    # -- scheduling -----------------------------------------------------------------------
    def enqueue(self, kind: str, *, text: str | None = None, ctx: TurnContext | None = None,
                outcomes: list[ToolOutcome] | None = None, now: float, interrupt: bool = False) -> None:
        """Queue a reply; ``interrupt`` (``reply.create``, 3.4) ends the one in progress first."""
        if interrupt:
            self.interrupt(now)
        self.queue.append(ReplyJob(new_id("resp_"), new_id("msg_"), kind, text, ctx or TurnContext(),
                                   outcomes))
        self._next()

    def _next(self) -> None:
        if self.live is None and self.queue:
            self.live = LiveReply(self.queue.popleft())
            self.wire.do(StartReply(self.live.job))

    @property
    def streaming(self) -> LiveReply | None:
        """The reply on the wire (``reply.started`` sent, no ``reply.done`` yet), if any."""
        return self.live if self.live is not None and self.live.started else None

    def interrupt(self, now: float) -> None:
        """End the reply in progress as interrupted (6.3) and drop queued ones. A reply not yet
        started is dropped without wire events."""
        self.queue.clear()
        live, self.live = self.live, None
        if live is None:
            return
        self.wire.do(CancelReply(live.job.reply_id))
        if not live.started:
            return
        spoken = live.spoken_text(now)
        self.session.stats["replies_interrupted"] += 1
        if spoken:
            self.session.history.append(("assistant", spoken))
        if live.batch is not None:
            self.abandon(live.batch)
        job = live.job
        self.wire.send(TranscriptAgent(job.reply_id, spoken, job.item_id, interrupted=True))
        self.wire.send(ReplyDone(job.reply_id, "interrupted"))

    def stop_all(self) -> None:
        """Stop every reply and tool wait without wire events (session end, disconnect)."""
        self.queue.clear()
        if self.live is not None:
            self.wire.do(CancelReply(self.live.job.reply_id))
            self.live = None
        self.wire.do(CancelTimer(TOOLS_TIMER))

    # -- what the pipeline produced -------------------------------------------------------
    def _current(self, reply_id: str) -> LiveReply | None:
        live = self.live
        return live if live is not None and live.job.reply_id == reply_id else None

    def is_current(self, reply_id: str) -> bool:
        """False once the reply was interrupted or dropped: its pipeline should stop."""
        return self._current(reply_id) is not None

    def begin(self, reply_id: str) -> None:
        """``reply.started``; a newer reply supersedes interactive calls still owed (6.5)."""
        live = self._current(reply_id)
        if live is None or live.started:
            return
        live.started = True
        if self.batch is not None and self.batch.done_sent and not self.batch.hold:
            self.abandon(self.batch)
        self.wire.send(ReplyStarted(reply_id, live.job.item_id))

    def words(self, reply_id: str, words: Sequence[WordTiming], last: bool) -> None:
        """``transcript.agent.delta`` per word, ms from the start of the reply audio (4.11). The
        deltas concatenate to the spoken text; ``last``: these end the reply's text."""
        live = self._current(reply_id)
        if live is None:
            return
        live.words.extend(words)
        for i, w in enumerate(words):
            delta = w.word if last and i == len(words) - 1 else w.word + " "
            self.wire.send(TranscriptAgentDelta(reply_id, delta, live.job.item_id, w.start_ms, w.end_ms))

    def audio(self, reply_id: str, chunk: bytes, ms: float, now: float) -> bool:
        """One ``reply.audio`` chunk of ``ms`` milliseconds; False if the reply is no longer live."""
        live = self._current(reply_id)
        if live is None:
            return False
        if live.t_first is None:
            live.t_first = now
        live.sent_ms += ms
        return self.wire.send(ReplyAudio(chunk, reply_id))

    def error(self, reply_id: str, error: BrainError) -> None:
        """``reply.error`` (4.15) after ``reply.started``; the reply then ends as usual."""
        if self._current(reply_id) is None:
            return
        self.begin(reply_id)
        self.session.stats["reply_errors"] += 1
        self.wire.send(ReplyError(reply_id, error.code, error.message, error.retryable,
                                  error.status_code))

    def tool_calls(self, reply_id: str, calls: Iterable[ToolCallRequest]) -> None:
        """The reply's ``tool.call`` events (4.14); a repeated ``call_id`` is sent again (seen
        live) and counts once."""
        live = self._current(reply_id)
        if live is None:
            return
        if self.batch is not None:
            self.abandon(self.batch)
        batch = ToolBatch(reply_id)
        declared = {t.get("name"): t for t in self.session.config.get("tools") or [] if isinstance(t, dict)}
        issued = [(c.call_id or new_id("call_", 16), c) for c in calls]
        for call_id, call in issued:
            spec: dict[str, Any] = declared.get(call.name, {})
            batch.calls.setdefault(call_id, call.name)
            batch.timeouts.setdefault(call_id, float(spec.get("timeout_seconds") or DEFAULT_TOOL_TIMEOUT_S))
            batch.hold = batch.hold or spec.get("execution_mode") == "hold"
        live.batch = self.batch = batch
        for call_id, call in issued:
            self.session.stats["tool_calls"] += 1
            self.wire.calls.step(call_id, Role.SERVER, "tool.call")
            self.wire.send(ToolCall(call_id, call.name, dict(call.arguments)))

    def complete(self, reply_id: str, text: str, now: float) -> None:
        """``transcript.agent`` (if it said anything) and ``reply.done{completed}``; then the tool
        wait starts and the next reply may run."""
        live = self._current(reply_id)
        if live is None:
            return
        self.begin(reply_id)   # a reply that said nothing still has a cycle (6.5 "no audio")
        job = live.job
        if text.strip():
            self.wire.send(TranscriptAgent(reply_id, text, job.item_id, interrupted=False))
        self.wire.send(ReplyDone(reply_id, "completed"))
        self.live = None
        self.session.stats["replies_completed"] += 1
        if text.strip():
            self.session.history.append(("assistant", text))
        if live.batch is not None and live.batch is self.batch:
            live.batch.done_sent = True
            live.batch.deadlines = {cid: now + t for cid, t in live.batch.timeouts.items()}
            self._check_tools(now)
        self._next()

    # -- tool results ---------------------------------------------------------------------
    def tool_result(self, call_id: str, result: str, is_error: bool, now: float) -> None:
        """``tool.result`` (3.3): the call machine's state decides (SENT: duplicate, DROPPED:
        stale, unknown: RemoteProtocolError -> ``invalid_value``)."""
        before = self.wire.calls.get(call_id)
        try:
            self.wire.calls.step(call_id, Role.CLIENT, "tool.result")
        except RemoteProtocolError as exc:
            self.session.stats["tool_results_unknown"] += 1
            raise RemoteProtocolError(f"unknown call_id {call_id!r}", "invalid_value", "call_id") from exc
        if before is CallState.SENT:
            self.session.stats["tool_results_duplicate"] += 1
            return
        if before is CallState.DROPPED:
            self.session.stats["tool_results_stale"] += 1
            return
        batch = self.batch
        if batch is None or call_id not in batch.calls:   # pending in a batch no longer kept
            self.session.stats["tool_results_stale"] += 1
            return
        if not batch.done_sent:
            self.session.stats["tool_results_before_done"] += 1
            log.warning("tool.result for %s arrived before reply.done (protocol.md 3.3)", call_id)
        batch.outcomes[call_id] = ToolOutcome(call_id, batch.calls[call_id], result, is_error)
        if batch.done_sent:
            self._check_tools(now)

    def timer(self, now: float) -> None:
        """The tools deadline timer fired."""
        self._check_tools(now)

    def _check_tools(self, now: float) -> None:
        batch = self.batch
        if batch is None or not batch.done_sent:
            return
        for cid in batch.pending:
            if batch.deadlines[cid] <= now:
                batch.outcomes[cid] = ToolOutcome(cid, batch.calls[cid], "", timed_out=True)
                self.wire.calls.step(cid, Role.LOCAL, DROP)
                self.session.stats["tool_timeouts"] += 1
        if batch.pending:
            self.wire.do(ArmTimer(TOOLS_TIMER, min(batch.deadlines[c] for c in batch.pending)))
            return
        self.wire.do(CancelTimer(TOOLS_TIMER))
        self.batch = None
        outcomes = [batch.outcomes[cid] for cid in batch.calls]
        for o in outcomes:
            self.session.history.append(("tool", f"{o.name}: {o.result}"))
        self.flush_held()
        self.enqueue("tools", ctx=self.context(), outcomes=outcomes, now=now)

    def abandon(self, batch: ToolBatch) -> None:
        """Forget a batch whose reply was interrupted or superseded: its calls are void."""
        for cid in batch.calls:
            self.wire.calls.step(cid, Role.LOCAL, DROP)
        if self.batch is batch:
            self.batch = None
            self.wire.do(CancelTimer(TOOLS_TIMER))
            self.flush_held()

    # -- hold mode ------------------------------------------------------------------------
    @property
    def holding(self) -> bool:
        """A hold-mode tool call is running: user-turn replies are suppressed (6.5)."""
        return self.batch is not None and self.batch.hold

    def user_transcript(self, event: ServerEvent) -> None:
        """``transcript.user(.delta)``, buffered while a hold tool runs (6.5)."""
        if self.holding:
            self.held.append(event)
        else:
            self.wire.send(event)

    def flush_held(self) -> None:
        held, self.held = self.held, []
        for event in held:
            self.wire.send(event)


__all__ = ["TOOLS_TIMER", "LiveReply", "Replies", "ReplyState", "ToolBatch"]
