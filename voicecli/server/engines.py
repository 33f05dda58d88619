"""Engine interfaces of the local server: turn detection, speech-to-text, reply brain, text-to-speech.

All audio here is PCM16 LE mono at 24 kHz (the protocol rate, ``voicecli.protocol.constants``).
Engines are plain synchronous classes (the offline ones in ``voicecli/speech/`` too). The server
never calls one on its event loop, except the turn detector (a few microseconds per 10 ms frame):
speech-to-text, the brain's iterator and text-to-speech run in the session's worker threads
(``server/workers.py``), one call at a time per engine instance.

Streaming shapes (design.md 15):

- :class:`SpeechToText` ``partial(pcm)`` gives the cumulative text of the utterance so far (asked
  every ``PARTIAL_EVERY_MS`` of speech), ``final(pcm)`` the final one (asked once the detector
  reports the end of speech; the reply waits for it). An optional ``configure(keyterms)`` gets
  ``input.keyterms`` at the start and whenever an update changes them.
- :class:`StreamingBrain` ``stream(ctx, outcomes)`` yields :class:`TextDelta` pieces as they are
  produced and :class:`ToolCallRequest` items (an OpenAI-compatible client's shape). A
  :class:`Brain` that returns a whole :class:`ReplyPlan` is adapted by :func:`brain_stream`.
- :class:`TextToSpeech` ``synthesize(text, voice)`` is called per clause/sentence
  (:func:`split_clauses`, or the engine's own ``split_clauses`` when it has one); an optional
  ``clause_gap_ms`` attribute is the silence put between two clauses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from voicecli.protocol.constants import BYTES_PER_MS, RATE

__all__ = [
    "BYTES_PER_MS", "RATE", "Brain", "BrainError", "ReplyPiece", "ReplyPlan", "Speech", "SpeechLike",
    "SpeechToText",
    "StreamingBrain", "TextDelta", "TextToSpeech", "ToolCallPlan", "ToolCallRequest", "ToolOutcome",
    "TurnContext", "TurnDetector", "TurnEvent", "WordTiming", "brain_stream", "split_clauses",
]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """``started``/``stopped`` at ``at_ms`` of input-audio time (ms since the first input sample,
    counted in samples, not wall clock, so audio sent faster than real time still works)."""

    kind: Literal["started", "stopped"]
    at_ms: float


@runtime_checkable
class TurnDetector(Protocol):
    def configure(self, turn_detection: dict[str, Any] | None) -> None:
        """Apply ``input.turn_detection`` (vad_threshold, min_silence, max_silence; None = defaults)."""

    def feed(self, pcm: bytes) -> list[TurnEvent]:
        """Consume input audio; return the turn boundaries it completes (in order)."""

    @property
    def in_speech(self) -> bool:
        """True between a ``started`` and its ``stopped``."""

    def reset(self) -> None: ...


@runtime_checkable
class SpeechToText(Protocol):
    def partial(self, pcm: bytes) -> str:
        """Cumulative transcript of the utterance so far (``pcm`` = all of it so far)."""

    def final(self, pcm: bytes) -> str:
        """Final transcript of a finished utterance."""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the brain makes (``call_id`` None: the server makes one)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None


ToolCallPlan = ToolCallRequest  # the name the scripted scenarios and DefaultBrain use


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Text the brain produced, in order (any size: a token, a word, the whole reply)."""

    text: str


@dataclass(frozen=True, slots=True)
class BrainError:
    """The brain failed (e.g. its LLM endpoint): the pipeline sends ``reply.error`` (protocol.md
    4.15) with these fields, then speaks ``apology``. Yielded last; nothing follows it."""

    code: str
    message: str
    retryable: bool = False
    status_code: int | None = None
    apology: str = ""


ReplyPiece = TextDelta | ToolCallRequest | BrainError


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """A whole reply at once: what the agent says (``text``) and the tool calls it makes."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One tool call's result as the brain sees it (the only ToolOutcome of the server)."""

    call_id: str
    name: str
    result: str
    is_error: bool = False
    timed_out: bool = False


@dataclass(slots=True)
class TurnContext:
    """Everything a brain may look at to compose a reply."""

    user_text: str = ""
    speech_seconds: float = 0.0
    system_prompt: str = ""
    instructions: str | None = None           # from reply.create
    tools: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), oldest first
    turn_index: int = 0                         # 0-based count of completed user turns


@runtime_checkable
class Brain(Protocol):
    def reply(self, ctx: TurnContext) -> ReplyPlan:
        """Reply to a finished user turn (or to ``reply.create`` when ``ctx.instructions`` is set)."""

    def after_tools(self, ctx: TurnContext, outcomes: list[ToolOutcome]) -> ReplyPlan:
        """The follow-up reply once tool results (or timeouts) are in."""


@runtime_checkable
class StreamingBrain(Protocol):
    def stream(self, ctx: TurnContext, outcomes: list[ToolOutcome] | None) -> Iterable[ReplyPiece]:
        """Text and tool calls as they are produced (a blocking iterator: it runs in a worker
        thread). ``outcomes`` is None for a reply to a turn / ``reply.create``, else the results of
        the previous reply's tool calls."""


def brain_stream(brain: Brain | StreamingBrain, ctx: TurnContext,
                 outcomes: list[ToolOutcome] | None) -> Iterator[ReplyPiece]:
    """The pieces of one reply from either kind of brain (a ReplyPlan is one TextDelta, then its
    tool calls)."""
    if isinstance(brain, StreamingBrain):
        yield from brain.stream(ctx, outcomes)
        return
    plan = brain.reply(ctx) if outcomes is None else brain.after_tools(ctx, outcomes)
    if plan.text:
        yield TextDelta(plan.text)
    yield from plan.tool_calls


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One spoken word and when (ms from the start of its audio)."""

    word: str
    start_ms: int
    end_ms: int


class SpeechLike(Protocol):
    """What the reply pipeline reads from a TTS result (:class:`Speech` or an offline engine's)."""

    @property
    def pcm(self) -> bytes: ...

    @property
    def words(self) -> Sequence[WordTiming]: ...


@dataclass(frozen=True, slots=True)
class Speech:
    """Synthesised speech: PCM16 mono 24 kHz, and when each word is spoken in it."""

    pcm: bytes
    words: tuple[WordTiming, ...]

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / BYTES_PER_MS


@runtime_checkable
class TextToSpeech(Protocol):
    def synthesize(self, text: str, voice: str | None = None) -> SpeechLike: ...


_CLAUSE_END = re.compile(r"(?<=[.!?;:,])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_clauses(text: str) -> list[str]:
    """Text split for speaking: the first clause alone (so the first audio is ready soonest),
    then whole sentences. Joining the parts with single spaces gives back ``" ".join(text.split())``."""
    text = " ".join(text.split())
    if not text:
        return []
    first, *rest = _CLAUSE_END.split(text, maxsplit=1)
    parts = [first]
    if rest:
        parts += [s for s in _SENTENCE_END.split(rest[0]) if s]
    return parts
