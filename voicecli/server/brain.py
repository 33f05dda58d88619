"""The default reply brain of the local server, and the placeholder speech-to-text it pairs with.

Without offline speech recognition the server cannot know what the user said, so
:class:`DefaultBrain` is honest about it: it tells the user how long they spoke (and, from the second
turn on, the turn count and total talk time), acknowledges ``reply.create`` instructions by quoting
them, and reads tool results back. It never calls tools itself: choosing a tool and its arguments
needs the user's words, and inventing calls from nothing would make the server look smarter than it
is (scripted scenarios, ``server/scripted.py``, are the way to exercise tool calls).

Replies are one or two short sentences: they are spoken by TTS and tests wait for them.

:class:`DurationSTT` returns "[speech 1.2 s]"-style placeholders (the utterance's duration so far),
so transcripts show that speech was heard and how much, without pretending to know the words.
"""

from __future__ import annotations

import json
import re
from typing import Any

from voicecli.server.engines import BYTES_PER_MS, ReplyPlan, ToolOutcome, TurnContext

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_SPACE = re.compile(r"\s+")
_QUOTES = str.maketrans({'"': "", "\u201c": "", "\u201d": "", "`": ""})

INSTRUCTION_QUOTE_CHARS = 80
RESULT_SUMMARY_CHARS = 90
MAX_TOOLS_READ = 3


def speakable(text: object, limit: int) -> str:
    """One line for TTS: control characters and double quotes removed, whitespace collapsed,
    at most ``limit`` characters (cut at a word boundary, "..." appended)."""
    s = text if isinstance(text, str) else str(text)
    s = _SPACE.sub(" ", _CONTROL.sub(" ", s).translate(_QUOTES)).strip()
    if len(s) > limit:
        cut = s[:limit].rsplit(" ", 1)[0] if " " in s[:limit] else s[:limit]
        s = cut.rstrip(" ,;:.") + "..."
    return s


def _secs(x: float) -> str:
    return f"{max(x, 0.0):.1f} second" + ("" if f"{max(x, 0.0):.1f}" == "1.0" else "s")


def _sentence(s: str) -> str:
    return s if s.endswith((".", "!", "?")) else s + "."


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "nothing"
    if isinstance(v, (dict, list)):
        return f"{len(v)} items" if isinstance(v, list) else f"{len(v)} fields"
    return str(v)


def summarize_result(result: str) -> str:
    """Short spoken summary of a tool result: JSON objects as "key value, key value" (first four
    fields; nested ones counted), lists by length and first items, other text as is; trimmed."""
    try:
        data = json.loads(result)
    except (ValueError, TypeError):
        data = result
    if isinstance(data, dict):
        if not data:
            text = "an empty result"
        else:
            items = [f"{k.replace('_', ' ')} {_scalar(v)}" for k, v in list(data.items())[:4]]
            text = ", ".join(items)
    elif isinstance(data, list):
        head = ", ".join(_scalar(v) for v in data[:3])
        text = f"{len(data)} items" + (f": {head}" if head else "")
    else:
        text = _scalar(data) if not isinstance(data, str) else data
        text = text or "an empty result"
    return speakable(text, RESULT_SUMMARY_CHARS)


class DefaultBrain:
    """Honest replies without STT or an LLM. Keeps per-session counts: use one instance per session."""

    def __init__(self) -> None:
        self.turns = 0
        self.total_speech_seconds = 0.0

    def reply(self, ctx: TurnContext) -> ReplyPlan:
        if ctx.instructions is not None:
            quote = speakable(ctx.instructions, INSTRUCTION_QUOTE_CHARS)
            if not quote:
                return ReplyPlan("You asked for a reply, but this server has no language model.")
            return ReplyPlan(f'Noted: "{quote}". Without a language model I can only acknowledge it.')
        self.turns += 1
        secs = ctx.speech_seconds
        self.total_speech_seconds += max(secs, 0.0)
        if self.turns == 1:
            text = (
                f"I heard about {_secs(secs)} of speech. "
                "This server has no speech recognition yet, so I can't tell what you said."
            )
        elif self.turns % 2 == 0:
            text = (
                f"Turn {self.turns}: about {_secs(secs)}, {_secs(self.total_speech_seconds)} in total. "
                "I still can't understand words."
            )
        else:
            text = (
                f"That was about {_secs(secs)}, turn {self.turns}, {_secs(self.total_speech_seconds)} so far."
            )
        return ReplyPlan(text)

    def after_tools(self, ctx: TurnContext, outcomes: list[ToolOutcome]) -> ReplyPlan:
        if not outcomes:
            return ReplyPlan("No tool results came back.")
        parts: list[str] = []
        for o in outcomes[:MAX_TOOLS_READ]:
            name = speakable(o.name, 40) or "unnamed"
            if o.timed_out:
                parts.append(f"The {name} tool timed out.")
            elif o.is_error:
                why = summarize_result(o.result)
                parts.append(
                    _sentence(f"The {name} tool failed: {why}" if why else f"The {name} tool failed")
                )
            else:
                parts.append(_sentence(f"The {name} tool returned: {summarize_result(o.result)}"))
        rest = len(outcomes) - MAX_TOOLS_READ
        if rest > 0:
            parts.append(f"{rest} more tool{'s' if rest > 1 else ''} finished too.")
        return ReplyPlan(" ".join(parts))


class DurationSTT:
    """Placeholder speech-to-text for :class:`DefaultBrain`: "[speech 1.2 s]", the duration of the
    audio it is given (partials: the cumulative utterance so far). Honest: it never guesses words."""

    def partial(self, pcm: bytes) -> str:
        return self._label(pcm)

    def final(self, pcm: bytes) -> str:
        return self._label(pcm)

    @staticmethod
    def _label(pcm: bytes) -> str:
        return f"[speech {len(pcm) / BYTES_PER_MS / 1000:.1f} s]"
