"""`voicecli ask --local` with the real offline engines (silero, whisper tiny.en, piper): what README's
first command does. And the tool round trip of examples/tools.toml with an LLM brain: the test double
of an OpenAI-compatible provider (tests/speech/openai_double.py) asks for the tool, voicecli runs
examples/weather.py, the model's follow-up is spoken."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_cli
from voicecli.speech.available import detect

ENGINES = detect()
pytestmark = pytest.mark.skipif(
    ENGINES.stt != "whisper" or ENGINES.vad != "silero",
    reason="the speech extra is not installed (pip install 'voicecli[speech]')")

EX = ROOT / "examples"


def lines(out: str, who: str) -> list[str]:
    return [line[len(who) + 2:] for line in out.splitlines() if line.startswith(who + ": ")]


@pytest.mark.parametrize("wav, words", [
    ("hello.wav", "hello can you hear me"),
    ("weather.wav", "what is the weather like in paris today"),
])
def test_ask_local_prints_the_words_of_the_prompt_and_says_them_back(wav: str, words: str) -> None:
    r = run_cli("ask", "--local", "--transcript", str(EX / wav), "--trailing-silence", "800", timeout=90)
    assert r.code == 0, r.stderr
    user = lines(r.stdout, "user")
    assert len(user) == 1
    heard = "".join(c for c in user[0].lower() if c.isalnum() or c == " ")
    assert heard.split() == words.split()
    agent = lines(r.stdout, "agent")[-1]
    assert agent.startswith("I heard: ") and "paris" in agent.lower() if "paris" in words else "hear" in agent
    assert "Connect a language model with --llm-url" in agent


def test_ask_local_with_an_llm_makes_the_tool_call_the_model_asked_for() -> None:
    pytest.importorskip("openai", reason="the `llm` extra (openai) is not installed")
    from tests.speech.openai_double import Answer, OpenAIDouble, ToolCall, ToolCalls

    with OpenAIDouble() as llm:
        llm.script(ToolCalls((ToolCall("get_weather", {"city": "Paris"}, "call_1"),), text="Let me look."),
                   Answer("In Paris it is sunny and 22 degrees."))
        # the must-show command: the model given with --llm-url answers, not tools.toml's
        # scripted local_scenario
        r = run_cli("ask", "--local", "--config", str(EX / "tools.toml"), "--llm-url", llm.base_url,
                    "--llm-model", "double", "--transcript", str(EX / "weather.wav"),
                    "--trailing-silence", "800", env={"VOICECLI_LLM_API_KEY": "sk-test"}, timeout=90)
        assert r.code == 0, r.stderr
        first = llm.requests[0].body
        assert "paris" in first["messages"][-1]["content"].lower()     # whisper's words went to the model
        assert first["tools"][0]["function"]["name"] == "get_weather"
        tool_msg = llm.requests[1].body["messages"][-1]
        assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_1"
        assert "Paris" in tool_msg["content"]                          # examples/weather.py's output
    assert "In Paris it is sunny and 22 degrees." in r.stdout
