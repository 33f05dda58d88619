"""DefaultBrain and DurationSTT."""

from __future__ import annotations

import json
import re

import pytest

from voicecli.server.brain import DefaultBrain, DurationSTT, speakable, summarize_result
from voicecli.server.engines import BYTES_PER_MS, Brain, SpeechToText, ToolOutcome, TurnContext
from voicecli.server.tts import EspeakTTS


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


def test_protocols() -> None:
    assert isinstance(DefaultBrain(), Brain)
    assert isinstance(DurationSTT(), SpeechToText)


def test_first_turn_is_honest_and_short() -> None:
    plan = DefaultBrain().reply(TurnContext(user_text="[speech 2.4 s]", speech_seconds=2.43))
    assert plan.tool_calls == ()
    assert "2.4 seconds" in plan.text
    assert "speech recognition" in plan.text
    assert 1 <= sentences(plan.text) <= 2
    assert len(plan.text.split()) <= 30


def test_later_turns_vary_and_count() -> None:
    brain = DefaultBrain()
    texts = [
        brain.reply(TurnContext(speech_seconds=s, turn_index=i)).text for i, s in enumerate([1.2, 2.0, 0.5])
    ]
    assert len(set(texts)) == 3
    assert "turn 2" in texts[1].lower() and "3.2 seconds" in texts[1]
    assert "turn 3" in texts[2].lower() and "3.7 seconds" in texts[2]
    for t in texts:
        assert 1 <= sentences(t) <= 2 and len(t.split()) <= 30
    assert brain.turns == 3 and brain.total_speech_seconds == pytest.approx(3.7)


def test_singular_second() -> None:
    assert "1.0 second " in DefaultBrain().reply(TurnContext(speech_seconds=1.02)).text


def test_instructions_are_quoted_sanitised() -> None:
    brain = DefaultBrain()
    plan = brain.reply(TurnContext(instructions='Greet the user\n\x1b[31m "warmly"\x00 and  briefly.'))
    assert plan.tool_calls == ()
    assert '"Greet the user [31m warmly and briefly."' in plan.text
    assert "\x1b" not in plan.text and "\n" not in plan.text
    long = brain.reply(TurnContext(instructions="word " * 100)).text
    assert "..." in long and len(long) < 200
    assert brain.turns == 0  # reply.create is not a user turn
    assert "no language model" in brain.reply(TurnContext(instructions="  ")).text


def test_after_tools_reads_results() -> None:
    brain = DefaultBrain()
    outcomes = [
        ToolOutcome("c1", "get_weather", json.dumps({"temp_c": 21, "conditions": "sunny", "city": "Paris"})),
        ToolOutcome("c2", "book_table", json.dumps({"error": "no tables left"}), is_error=True),
        ToolOutcome("c3", "slow_tool", "", timed_out=True),
    ]
    plan = brain.after_tools(TurnContext(), outcomes)
    assert plan.tool_calls == ()
    assert "The get_weather tool returned: temp c 21, conditions sunny, city Paris." in plan.text
    assert "The book_table tool failed: error no tables left." in plan.text
    assert "The slow_tool tool timed out." in plan.text
    assert "{" not in plan.text and '"' not in plan.text


def test_after_tools_many_and_none() -> None:
    brain = DefaultBrain()
    many = [ToolOutcome(f"c{i}", f"t{i}", "ok") for i in range(5)]
    text = brain.after_tools(TurnContext(), many).text
    assert text.count("tool returned") == 3 and "2 more tools finished too." in text
    assert brain.after_tools(TurnContext(), []).text == "No tool results came back."


def test_summaries() -> None:
    assert summarize_result('["a", "b", "c", "d"]') == "4 items: a, b, c"
    assert summarize_result("{}") == "an empty result"
    assert summarize_result("") == "an empty result"
    assert summarize_result("plain text") == "plain text"
    assert summarize_result("42") == "42"
    assert (
        summarize_result('{"nested": {"a": 1}, "ok": true, "v": null}')
        == "nested 1 fields, ok true, v nothing"
    )
    s = summarize_result(json.dumps({"text": "x" * 500}))
    assert len(s) <= 93 and s.endswith("...")
    assert speakable("  a\n\tb  ", 10) == "a b"


def test_replies_are_speakable() -> None:
    brain = DefaultBrain()
    tts = EspeakTTS()
    for text in (
        brain.reply(TurnContext(speech_seconds=2.4)).text,
        brain.reply(TurnContext(speech_seconds=3.1)).text,
        brain.after_tools(TurnContext(), [ToolOutcome("c", "get_weather", '{"temp_c": 21}')]).text,
    ):
        sp = tts.synthesize(text)
        assert len(sp.words) == len(text.split())
        assert 1000 < sp.duration_ms < 9000, (text, sp.duration_ms)


def test_duration_stt() -> None:
    stt = DurationSTT()
    assert stt.partial(b"\x00" * (400 * BYTES_PER_MS)) == "[speech 0.4 s]"
    assert stt.final(b"\x00" * (1234 * BYTES_PER_MS + 1)) == "[speech 1.2 s]"
    assert stt.final(b"") == "[speech 0.0 s]"
