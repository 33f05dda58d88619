"""The brains of the default engine once speech recognition works: an OpenAI-compatible LLM
(:class:`LlmBrain`) or, without one, the honest :class:`EchoBrain`.

:class:`LlmBrain` is a :class:`~voicecli.server.engines.StreamingBrain` over
:func:`voicecli.speech.llm.stream_chat` (the session's ``llm`` entry, protocol.md 5.2/6.9, or
``serve --llm-url/--llm-model``). Messages, oldest first:

1. ``system``: the session's ``system_prompt`` plus a short note that replies are spoken (kept
   identical across turns so the provider's prefix cache holds, audio-lab 7.4);
2. the conversation history (``user``/``assistant`` turns, ``conversation.message`` items with their
   own role; results of earlier tool rounds as ``system`` notes);
3. the new user turn, or for ``reply.create`` its ``instructions`` as a ``system`` message;
4. for the follow-up of tool calls: the assistant message that made the calls and one ``tool``
   message per outcome (protocol.md 6.5), so the model answers from the results.

The session's ``tools`` go to the model as OpenAI function tools. A failure of the endpoint
(refused, timeout, HTTP error, malformed or truncated stream) is yielded as one
:class:`~voicecli.server.engines.BrainError` after whatever text came before it; the reply
pipeline sends ``reply.error`` (protocol.md 4.15) and speaks :data:`APOLOGY`. The api_key is never
logged (``LlmEndpoint`` masks it in its repr).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from .brain import speakable
from .engines import BrainError, ReplyPiece, TextDelta, ToolCallRequest, ToolOutcome, TurnContext

log = logging.getLogger("voicecli.server")

VOICE_NOTE = ("Your replies are spoken aloud by a text-to-speech voice: answer in one to three short "
              "sentences of plain text, no lists, markup or emoji. Call a tool when the user's request "
              "needs it.")
APOLOGY = "Sorry, I could not reach my language model. Please try again."
NO_LLM_HINT = "Connect a language model with --llm-url to get answers."
HEARD_CHARS = 160


class LlmBrain:
    """One session's LLM brain (it keeps the tool round in progress: use one per session)."""

    def __init__(self, endpoint: Any, timeout_s: float = 15.0) -> None:
        self.endpoint = endpoint            # voicecli.speech.llm.LlmEndpoint
        self.timeout_s = timeout_s
        self._round: dict[str, Any] | None = None   # the assistant message that made tool calls

    def messages(self, ctx: TurnContext, outcomes: list[ToolOutcome] | None) -> list[dict[str, Any]]:
        """The chat messages for one reply (see module docstring)."""
        from voicecli.speech.llm import tool_message

        system = (ctx.system_prompt.strip() + "\n\n" if ctx.system_prompt.strip() else "") + VOICE_NOTE
        msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
        history = list(ctx.history)
        if outcomes is not None:
            while history and history[-1][0] == "tool":   # replaced by real tool messages below
                history.pop()
            said = (self._round or {}).get("content")
            if said and history and history[-1] == ("assistant", said):
                history.pop()
        for role, text in history:
            if role == "tool":
                msgs.append({"role": "system", "content": f"Earlier tool result: {text}"})
            elif role in ("user", "assistant", "system"):
                msgs.append({"role": role, "content": text})
        if outcomes is not None:
            if self._round is not None:
                msgs.append(self._round)
                for o in outcomes:
                    result = ("error: the tool timed out" if o.timed_out
                              else f"error: {o.result}" if o.is_error else o.result)
                    msgs.append(tool_message(o.call_id, result))
            else:   # no round of ours (e.g. a scripted earlier reply): say what came back
                for o in outcomes:
                    msgs.append({"role": "system", "content": f"Tool {o.name} returned: {o.result}"})
        elif ctx.instructions is not None:
            if ctx.instructions.strip():
                msgs.append({"role": "system", "content": ctx.instructions})
        elif ctx.user_text:
            msgs.append({"role": "user", "content": ctx.user_text})
        return msgs

    def stream(self, ctx: TurnContext, outcomes: list[ToolOutcome] | None) -> Iterator[ReplyPiece]:
        from voicecli.speech.llm import LlmError, assistant_message, stream_chat

        msgs = self.messages(ctx, outcomes)
        text: list[str] = []
        calls: list[ToolCallRequest] = []
        try:
            for item in stream_chat(self.endpoint, msgs, ctx.tools, self.timeout_s):
                if isinstance(item, ToolCallRequest):
                    calls.append(item)
                else:
                    text.append(item.text)
                yield item
        except LlmError as e:
            log.warning("llm %s failed: %s", self.endpoint.base_url, e.message)
            yield BrainError(e.code, e.message, e.retryable, e.status_code, APOLOGY)
            return
        except Exception as e:  # noqa: BLE001 - any failure of the brain ends in reply.error, never a hang
            log.exception("llm brain failed")
            yield BrainError("llm_error", f"{type(e).__name__}: {e}", False, None, APOLOGY)
            return
        self._round = assistant_message("".join(text), calls) if calls else None


class EchoBrain:
    """No LLM, but real speech recognition: say back what was understood and how to get answers
    (tool results are read back as :class:`~voicecli.server.brain.DefaultBrain` does)."""

    def __init__(self) -> None:
        from .brain import DefaultBrain

        self._default = DefaultBrain()

    def stream(self, ctx: TurnContext, outcomes: list[ToolOutcome] | None) -> Iterator[ReplyPiece]:
        if outcomes is not None:
            yield TextDelta(self._default.after_tools(ctx, outcomes).text)
            return
        if ctx.instructions is not None:
            yield TextDelta(self._default.reply(ctx).text)
            return
        heard = speakable(ctx.user_text, HEARD_CHARS).rstrip(".!?")
        secs = f"{max(ctx.speech_seconds, 0.0):.1f}"
        if heard:
            yield TextDelta(f"I heard: {heard}. That was {secs} seconds of speech. {NO_LLM_HINT}")
        else:
            yield TextDelta(f"I heard {secs} seconds of speech but could not make out any words. "
                            f"{NO_LLM_HINT}")
