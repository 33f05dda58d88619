"""The streaming reply pipeline on a real event loop (no socket): a token-streaming brain with a
tool call, per-clause TTS in worker threads, audio that starts before the brain has finished."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

from srvutil import UNIT, run

from voicecli.server.agent import AgentSession
from voicecli.server.brain import DurationSTT
from voicecli.server.effects import Effect, Send, StartReply
from voicecli.server.engines import (
    Brain,
    ReplyPiece,
    StreamingBrain,
    TextDelta,
    ToolCallRequest,
    ToolOutcome,
    TurnContext,
    brain_stream,
    split_clauses,
)
from voicecli.server.options import ServerOptions
from voicecli.server.pipeline import ClauseCutter, run_reply
from voicecli.server.session import Engines
from voicecli.server.tts import ToneTTS
from voicecli.server.vad import EnergyTurnDetector
from voicecli.server.workers import SessionWorkers, make_pool

TOKEN_S = 0.05 * UNIT


class TokenBrain:
    """An LLM-like brain: tokens one by one (slowly, blocking), then a tool call."""

    def __init__(self) -> None:
        self.finished_at: float | None = None

    def stream(self, ctx: TurnContext, outcomes: list[ToolOutcome] | None) -> Iterator[ReplyPiece]:
        for token in ["Sure,", "let", "me", "look", "that", "up", "for", "you.", "One", "moment", "please."]:
            time.sleep(TOKEN_S)
            yield TextDelta(token + " ")
        yield ToolCallRequest("lookup", {"q": "x"}, "call_t1")
        self.finished_at = time.monotonic()


class RecordingTTS(ToneTTS):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def synthesize(self, text: str, voice: str | None = None) -> Any:
        self.calls.append((text, threading.current_thread().name))
        return super().synthesize(text, voice)


def test_clause_cutter_and_plan_adapter() -> None:
    assert split_clauses("Hello there, this is it. And more, here.") == [
        "Hello there,", "this is it.", "And more, here."]
    cutter = ClauseCutter()
    out: list[str] = []
    for token in ["Hi,", "you.", "Two"]:
        out += cutter.push(token + " ")
    assert out == ["Hi,", "you."] and cutter.flush() == ["Two"]

    class Plain:
        def reply(self, ctx: TurnContext) -> Any:
            from voicecli.server.engines import ReplyPlan
            return ReplyPlan("Hello.", (ToolCallRequest("t"),))

        def after_tools(self, ctx: TurnContext, outcomes: list[ToolOutcome]) -> Any:
            raise AssertionError

    assert isinstance(Plain(), Brain) and isinstance(TokenBrain(), StreamingBrain)
    assert list(brain_stream(Plain(), TurnContext(), None)) == [TextDelta("Hello."), ToolCallRequest("t")]


def test_streaming_brain_audio_starts_before_the_brain_is_done() -> None:
    brain, tts = TokenBrain(), RecordingTTS()
    sent: list[tuple[float, Any]] = []
    jobs = []

    async def main() -> None:
        options = ServerOptions(enforce_realtime=False, reply_lead_ms=60_000)  # no pacing waits
        agent = AgentSession(options, owner="me", max_session_duration_s=None,
                             make_engines=lambda: Engines(EnergyTurnDetector(), DurationSTT(), brain, tts),
                             lookup=lambda sid: None, mint_resume=lambda sid, who: "t", connected=time.time())
        agent.receive('{"type":"session.update","session":{"tools":[{"type":"function","name":"lookup"}]}}',
                      time.time())
        agent.timer("ready", time.time())
        pool = make_pool()

        async def apply(effects: list[Effect]) -> None:
            for e in effects:
                if isinstance(e, Send):
                    sent.append((time.monotonic(), e.event))
                elif isinstance(e, StartReply):
                    jobs.append(e.job)

        await apply(agent.receive('{"type":"reply.create"}', time.time()))
        await asyncio.wait_for(run_reply(jobs[0], agent, SessionWorkers(pool), agent.options, apply), 10 * UNIT)
        pool.shutdown()

    run(main())
    kinds = [e.type for _, e in sent]
    assert kinds[0] == "reply.started" and kinds[-3:] == ["tool.call", "transcript.agent", "reply.done"]
    first_audio = next(t for t, e in sent if e.type == "reply.audio")
    assert brain.finished_at is not None and first_audio < brain.finished_at   # streamed, not batched
    assert [text for text, _ in tts.calls] == ["Sure,", "let me look that up for you.", "One moment please."]
    assert all(thread != threading.main_thread().name for _, thread in tts.calls)   # off the loop
    deltas = "".join(e.delta for _, e in sent if e.type == "transcript.agent.delta")
    assert deltas == "Sure, let me look that up for you. One moment please."
    starts = [e.start_ms for _, e in sent if e.type == "transcript.agent.delta"]
    assert starts == sorted(starts)   # later clauses are offset by the audio before them
    assert sent[-2][1].text.strip() == deltas
    audio = b"".join(e.data for _, e in sent if e.type == "reply.audio")
    assert audio == ToneTTS().synthesize(deltas).pcm   # clause by clause == the whole text at once
