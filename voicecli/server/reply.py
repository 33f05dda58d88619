"""One agent reply cycle, and the tool calls it makes (protocol.md 4.9-4.14, 6.2, 6.3, 6.5).

A :class:`Reply` runs as an asyncio task owned by the connection so input keeps flowing while the
agent talks. Its wire sequence (6.2)::

    reply.started{reply_id, item_id}
    transcript.agent.delta{reply_id, item_id, delta, start_ms, end_ms}   x words, early burst
    reply.audio{data, reply_id}        x N, reply_chunk_ms each, paced at real time + reply_lead_ms
    tool.call{call_id, name, arguments}   x calls, after the (transition) audio
    transcript.agent{reply_id, item_id, text, interrupted:false}   if it said anything
    reply.done{reply_id, status:"completed"}

Phases: ``queued`` -> ``streaming`` (interruptible; includes the ~250 ms between ``tool.call`` and
``reply.done``, so a barge-in there voids the calls) -> ``finishing`` (runs to the end) -> ``done``. An interruption (barge-in, ``reply.create``, ``reply.cancel``) cancels a
streaming reply; the connection then sends ``transcript.agent{interrupted:true, text: spoken
words}`` and ``reply.done{status:"interrupted"}`` (6.3). "Spoken" = words whose ``end_ms`` is
within the audio played so far, i.e. wall time since the first chunk, capped at audio sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .codec import bytes_per_ms, encode_output
from .engines import ReplyPlan, Speech, ToolOutcome
from .session import new_id

if TYPE_CHECKING:
    from .connection import ConnectionHandler

DEFAULT_TOOL_TIMEOUT_S = 120.0  # protocol.md 5.7
TOOL_DONE_GAP_S = 0.25  # reply.done came ~260 ms after tool.call live (protocol.md 6.5)


@dataclass(slots=True)
class Word:
    text: str
    start_ms: int
    end_ms: int


def align_words(text: str, speech: Speech | None) -> list[Word]:
    """Word timings for ``text``. When the TTS found as many words as ``text.split()`` has, the
    tokens of ``text`` itself are used, so the deltas concatenate back to ``text`` exactly."""
    if speech is None:
        return []
    tokens = text.split()
    if len(tokens) == len(speech.words):
        return [Word(t, w.start_ms, w.end_ms) for t, w in zip(tokens, speech.words)]
    return [Word(w.word, w.start_ms, w.end_ms) for w in speech.words]


class Reply:
    """One reply of the agent; created by the connection, run with :meth:`run` in a task."""

    def __init__(self, plan: ReplyPlan, kind: str) -> None:
        self.plan = plan
        self.kind = kind  # "greeting" | "turn" | "create" | "tools"
        self.reply_id = new_id("resp_")
        self.item_id = new_id("msg_")
        self.phase = "queued"
        self.words: list[Word] = []
        self.sent_ms = 0.0
        self.duration_ms = 0.0
        self.t_first: float | None = None
        self.batch: ToolBatch | None = None

    def played_ms(self, now: float) -> float:
        """Audio the client has played by ``now`` (loop time): wall time since the first chunk,
        capped at the audio sent (protocol.md 6.3)."""
        if self.t_first is None:
            return 0.0
        return min((now - self.t_first) * 1000.0, self.sent_ms)

    def spoken_text(self, now: float) -> str:
        """The words fully played by ``now`` (the ``text`` of an interrupted transcript.agent)."""
        played = self.played_ms(now)
        return " ".join(w.text for w in self.words if w.end_ms <= played)

    async def run(self, conn: ConnectionHandler) -> None:
        """Send the whole cycle. Cancelled = interrupted: the connection finishes the wire side."""
        loop = asyncio.get_running_loop()
        text = self.plan.text
        cfg_out = conn.session_config["output"]
        encoding = (cfg_out.get("format") or {}).get("encoding", "audio/pcm")
        speech = conn.engines.tts.synthesize(text, cfg_out.get("voice")) if text.strip() else None
        self.words = align_words(text, speech)
        audio = encode_output(speech.pcm, encoding, cfg_out.get("volume")) if speech else b""
        bpm = bytes_per_ms(encoding)
        self.duration_ms = len(audio) / bpm
        self.phase = "streaming"
        conn.reply_started(self)
        await conn.send("reply.started", reply_id=self.reply_id, item_id=self.item_id)
        await conn.send_unknown_event()
        for i, word in enumerate(self.words):  # early burst, protocol.md 4.11
            delta = word.text if i == len(self.words) - 1 else word.text + " "
            await conn.send("transcript.agent.delta", reply_id=self.reply_id, item_id=self.item_id,
                            delta=delta, start_ms=word.start_ms, end_ms=word.end_ms)
        chunk_bytes = max(1, int(conn.options.reply_chunk_ms * bpm))
        if encoding == "audio/pcm":
            chunk_bytes -= chunk_bytes % 2
        lead_s = conn.options.reply_lead_ms / 1000.0
        for offset in range(0, len(audio), chunk_bytes):
            chunk = audio[offset:offset + chunk_bytes]
            if self.t_first is None:
                self.t_first = loop.time()
            else:
                delay = self.t_first + self.sent_ms / 1000.0 - lead_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.sent_ms += len(chunk) / bpm
            await conn.send("reply.audio", data=chunk, reply_id=self.reply_id)
            conn.maybe_drop_mid_reply(self)
        if self.plan.tool_calls:
            await conn.issue_tool_calls(self)
            await asyncio.sleep(TOOL_DONE_GAP_S)  # still interruptible: then the calls are void
        self.phase = "finishing"
        if text.strip():
            await conn.send("transcript.agent", reply_id=self.reply_id, item_id=self.item_id,
                            text=text, interrupted=False)
        await conn.send("reply.done", reply_id=self.reply_id, status="completed")
        self.phase = "done"
        conn.reply_completed(self)


@dataclass(eq=False)
class ToolBatch:
    """The tool calls of one reply, waiting for ``tool.result`` (protocol.md 6.5).

    Deadlines start when the reply's ``reply.done`` is sent (``start_clock``). ``wait`` returns
    one outcome per distinct ``call_id``, in call order, with ``timed_out=True`` for calls whose
    ``timeout_seconds`` ran out."""

    reply_id: str
    calls: dict[str, str] = field(default_factory=dict)          # call_id -> tool name
    timeouts: dict[str, float] = field(default_factory=dict)     # call_id -> seconds
    hold: bool = False
    done_sent: bool = False
    outcomes: dict[str, ToolOutcome] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiter: asyncio.Task[None] | None = None  # the connection's await_tools task

    def add(self, call_id: str, name: str, timeout_s: float) -> None:
        self.calls.setdefault(call_id, name)
        self.timeouts.setdefault(call_id, timeout_s)

    def start_clock(self, now: float) -> None:
        self.done_sent = True
        self.deadlines = {cid: now + t for cid, t in self.timeouts.items()}
        self.changed.set()

    def add_result(self, call_id: str, result: str, is_error: bool) -> None:
        self.outcomes[call_id] = ToolOutcome(call_id, self.calls[call_id], result, is_error)
        self.changed.set()

    async def wait(self) -> list[ToolOutcome]:
        """Until every call has a result or has timed out (call after :meth:`start_clock`)."""
        loop = asyncio.get_running_loop()
        while True:
            pending = [cid for cid in self.calls if cid not in self.outcomes]
            if not pending:
                return [self.outcomes[cid] for cid in self.calls]
            now = loop.time()
            for cid in pending:
                if self.deadlines[cid] <= now:
                    self.outcomes[cid] = ToolOutcome(cid, self.calls[cid], "", timed_out=True)
            if any(cid not in self.outcomes for cid in pending):
                nearest = min(self.deadlines[cid] for cid in pending if cid not in self.outcomes)
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), max(0.0, nearest - now))
                except TimeoutError:
                    pass
