"""Engine interfaces of the local server: turn detection, speech-to-text, reply brain, text-to-speech.

The server session (``server/session.py``) drives these; each is small so a later issue can plug
in offline speech models (faster-whisper, silero VAD, piper) without touching the protocol code.
All audio here is PCM16 LE mono at 24 kHz (the protocol rate). Engines are synchronous and must
be quick (the server calls them from its event loop; a slow engine runs in a thread executor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000  # 48


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
class ToolCallPlan:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None  # None: the server makes one


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """What the agent says (``text``, spoken by TTS) and the tool calls it makes in that reply."""

    text: str
    tool_calls: tuple[ToolCallPlan, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolOutcome:
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


@dataclass(frozen=True, slots=True)
class WordTiming:
    word: str
    start_ms: int
    end_ms: int


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
    def synthesize(self, text: str, voice: str | None = None) -> Speech: ...
