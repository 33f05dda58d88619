"""The reply pipeline: brain -> clauses -> text-to-speech -> paced audio (design.md 15).

One :func:`run_reply` task per reply, started by the pump for a
:class:`~voicecli.server.effects.StartReply`. Stages, each in a worker thread (``workers.py``):

1. the brain (:func:`~voicecli.server.engines.brain_stream`) yields text and tool calls as it
   produces them (the greeting is its text, verbatim);
2. the text is cut into clauses (the TTS engine's own ``split_clauses`` if it has one, else
   :func:`~voicecli.server.engines.split_clauses`): a part is spoken once the next one has begun,
   the rest when the brain is done;
3. each clause is synthesized and encoded while the previous one plays (after the first, with the
   engine's ``clause_gap_ms`` of silence in front, if it has one: the pause it puts between
   words, so clause-by-clause audio equals whole-text audio);
4. the consumer (this task) reports each clause to the agent session (``reply.started`` with the
   first, then its word deltas, ahead of its audio; the first audio waits up to ``LOOKAHEAD_S``
   for the clauses after the first, so a quick TTS gives the early burst of deltas seen live) and
   sends the audio in ``reply_chunk_ms`` chunks, ``reply_speedup`` x real time (2x, as the live
   service imitation does) but at most ``reply_lead_ms`` ahead of real time;
   then the tool calls, ~250 ms of quiet (still interruptible), and ``reply_complete``.

The agent session decides what goes on the wire; an interrupted reply's task is cancelled by the
pump, and anything it reports after the interruption is dropped by the session (stale).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .agent import AgentSession
from .codec import bytes_per_ms, encode_output
from .effects import Effect, ReplyJob
from .engines import (
    BYTES_PER_MS,
    BrainError,
    ReplyPiece,
    Speech,
    TextDelta,
    ToolCallRequest,
    WordTiming,
    brain_stream,
    split_clauses,
)
from .options import ServerOptions
from .session import Session
from .workers import SessionWorkers

TOOL_DONE_GAP_S = 0.25  # reply.done came ~260 ms after tool.call live (protocol.md 6.5)
LOOKAHEAD_S = 0.1       # after the first clause, how long the first audio waits for more clauses

Apply = Callable[[list[Effect]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Clause:
    text: str
    speech: Speech
    audio: bytes      # in the output encoding
    last: bool
    error: BrainError | None = None   # set: no audio; send reply.error here, in order


class ClauseCutter:
    """Text pieces in, speakable parts out: a part is complete once text after it has begun."""

    def __init__(self, split: Callable[[str], list[str]] = split_clauses) -> None:
        self.split = split
        self.buffer = ""

    def push(self, text: str) -> list[str]:
        """Add a piece; returns the parts that are complete now (never the last one)."""
        self.buffer += text
        parts = self.split(self.buffer)
        if len(parts) < 2:
            return []
        self.buffer = parts[-1] + (" " if self.buffer[-1:].isspace() else "")
        return parts[:-1]

    def flush(self) -> list[str]:
        """The brain is done: the remaining parts."""
        parts, self.buffer = self.split(self.buffer), ""
        return parts


async def _pieces(job: ReplyJob, session: Session, workers: SessionWorkers) -> AsyncIterator[ReplyPiece]:
    if job.text is not None:
        yield TextDelta(job.text)
        return
    brain = session.engines.brain

    def make() -> Iterator[ReplyPiece]:
        return brain_stream(brain, job.ctx, job.outcomes)

    async for piece in workers.iterate(make):
        yield piece


async def _produce(job: ReplyJob, session: Session, workers: SessionWorkers, out: dict[str, Any],
                   clauses: asyncio.Queue[Clause | None], calls: list[ToolCallRequest],
                   text: list[str]) -> None:
    """Stages 1-3: fill ``clauses`` (then None), collect ``calls`` and the whole ``text``."""
    tts = session.engines.tts
    cutter = ClauseCutter(getattr(tts, "split_clauses", split_clauses))
    encoding = (out.get("format") or {}).get("encoding", "audio/pcm")
    voice, volume = out.get("voice"), out.get("volume")

    gap_ms = int(getattr(tts, "clause_gap_ms", 0))
    spoken = 0

    def speak(part: str) -> tuple[Speech, bytes]:
        nonlocal spoken
        speech = tts.synthesize(part, voice)
        pcm, words = speech.pcm, tuple(speech.words)
        if spoken and gap_ms and pcm:   # the pause the engine puts between words, between clauses
            pcm = bytes(gap_ms * BYTES_PER_MS) + pcm
            words = tuple(WordTiming(w.word, w.start_ms + gap_ms, w.end_ms + gap_ms) for w in words)
        spoken += 1
        return Speech(pcm, words), encode_output(pcm, encoding, volume) if pcm else b""

    async def emit(parts: list[str], final: bool) -> None:
        parts = [p for p in parts if p.strip()]
        for i, part in enumerate(parts):
            speech, audio = await workers.run(speak, part)
            await clauses.put(Clause(part, speech, audio, final and i == len(parts) - 1))

    try:
        async for piece in _pieces(job, session, workers):
            if isinstance(piece, ToolCallRequest):
                calls.append(piece)
            elif isinstance(piece, TextDelta) and piece.text:
                text.append(piece.text)
                await emit(cutter.push(piece.text), final=False)
            elif isinstance(piece, BrainError):   # what was said, reply.error, then the apology
                await emit(cutter.flush(), final=False)
                await clauses.put(Clause("", Speech(b"", ()), b"", False, piece))
                if piece.apology:
                    apology = (" " if text else "") + piece.apology
                    text.append(apology)
                    cutter.push(apology)
                break
        await emit(cutter.flush(), final=True)
    finally:   # the consumer always gets its end mark, even when the brain or the TTS failed
        await clauses.put(None)


async def run_reply(job: ReplyJob, agent: AgentSession, workers: SessionWorkers, options: ServerOptions,
                    apply: Apply) -> None:
    """Produce one reply (see module docstring). Cancel it to stop it."""
    session = agent.session
    assert session is not None
    out = session.config["output"]
    encoding = (out.get("format") or {}).get("encoding", "audio/pcm")
    bpm = bytes_per_ms(encoding)
    chunk_bytes = max(1, int(options.reply_chunk_ms * bpm))
    if encoding == "audio/pcm":
        chunk_bytes -= chunk_bytes % 2
    lead_s = options.reply_lead_ms / 1000.0
    speedup = options.reply_speedup
    loop = asyncio.get_running_loop()
    clauses: asyncio.Queue[Clause | None] = asyncio.Queue(maxsize=4)
    calls: list[ToolCallRequest] = []
    text: list[str] = []
    producer = loop.create_task(_produce(job, session, workers, out, clauses, calls, text))
    rid = job.reply_id
    try:
        pending = bytearray()
        offset_ms, sent_ms, t_first = 0.0, 0.0, None
        done = False

        async def take(clause: Clause | None) -> None:
            nonlocal done, offset_ms
            if clause is None:
                done = True
                return
            if clause.error is not None:
                await apply(agent.reply_error(rid, clause.error))
                return
            await apply(agent.reply_speech(rid, clause.speech, offset_ms, clause.text, clause.last))
            offset_ms += len(clause.audio) / bpm
            pending.extend(clause.audio)

        await take(await clauses.get())
        deadline = loop.time() + LOOKAHEAD_S   # the early burst of deltas (4.11): wait briefly
        while not done and (left := deadline - loop.time()) > 0:   # for the clauses that follow
            try:
                await take(await asyncio.wait_for(clauses.get(), left))
            except TimeoutError:
                break
        while True:
            while not done and not clauses.empty():
                await take(clauses.get_nowait())
            if len(pending) >= chunk_bytes or (done and pending):
                chunk = bytes(pending[:chunk_bytes])
                del pending[:chunk_bytes]
                if t_first is None:
                    t_first = loop.time()
                else:
                    at = max(t_first + sent_ms / 1000.0 / speedup, t_first + sent_ms / 1000.0 - lead_s)
                    delay = at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent_ms += len(chunk) / bpm
                await apply(agent.reply_audio(rid, chunk, len(chunk) / bpm, time.time()))
            elif done:
                break
            else:
                await take(await clauses.get())
        await producer   # re-raises a failure of the brain or the TTS
        if calls:
            await apply(agent.reply_tool_calls(rid, calls))
            await asyncio.sleep(TOOL_DONE_GAP_S)  # still interruptible: then the calls are void
        await apply(agent.reply_complete(rid, "".join(text), time.time()))
    finally:
        if not producer.done():
            producer.cancel()
