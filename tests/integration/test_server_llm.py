"""Local server with an LLM brain, against tests/speech/openai_double.py: a real local HTTP server
speaking OpenAI's streaming chat completions (SSE, tool-call deltas) with scripted answers - a test
double of the provider. Engine "basic" (the user's words are "[speech N s]" placeholders), so
these run without the speech models; the LLM path is the same with whisper.

Covers: a plain answer, a tool call round trip with a client tool (the model asked for it), history
across turns, an interrupted reply, and each failure (refused, timeout, 500, garbage, truncated)
-> reply.error + a spoken apology, never a hung session.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from srvutil import FAST_TD, client, run, start_server, tone_speech, types

pytest.importorskip("openai", reason="the `llm` extra (openai) is not installed")

from tests.speech.openai_double import (  # noqa: E402
    Answer,
    Garbage,
    HttpError,
    OpenAIDouble,
    Stall,
    ToolCall,
    ToolCalls,
    Truncated,
)
from voicecli.server.app import ServerThread  # noqa: E402
from voicecli.server.llm_brain import APOLOGY  # noqa: E402

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module", name="llm")
def _llm() -> Iterator[OpenAIDouble]:
    with OpenAIDouble() as double:
        yield double


@pytest.fixture(scope="module", name="srv")
def _srv(llm: OpenAIDouble) -> Iterator[ServerThread]:
    thread = start_server(llm_url=llm.base_url, llm_model="double-model", llm_api_key="sk-secret",
                          llm_timeout_s=1.0)
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def _fresh_script(llm: OpenAIDouble) -> None:
    """Each test starts with an empty script (the double is shared by the module)."""
    while not llm._queue.empty():
        llm._queue.get_nowait()


def session(**extra: Any) -> dict[str, Any]:
    return dict({"system_prompt": "You are terse.", "input": {"turn_detection": FAST_TD}}, **extra)


async def turn(c: Any) -> list[dict[str, Any]]:
    await c.send_pcm(tone_speech("what is the weather in paris"))
    return await c.until("reply.done")


def agent_text(events: list[dict[str, Any]]) -> str:
    return next(e["text"] for e in events if e["type"] == "transcript.agent")


def test_plain_answer_is_spoken_and_the_request_carries_prompt_history_and_key(
        srv: ServerThread, llm: OpenAIDouble) -> None:
    llm.script(Answer("It is sunny in Paris. Anything else?"), Answer("You asked about Paris."))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start(session())
            got = await turn(c)
            assert agent_text(got) == "It is sunny in Paris. Anything else?"
            assert "reply.audio" in types(got, skip_audio=False)
            got2 = await turn(c)
            assert agent_text(got2) == "You asked about Paris."
    before = len(llm.requests)
    run(main())
    first, second = llm.requests[before:before + 2]
    assert first.authorization == "Bearer sk-secret"
    assert first.body["model"] == "double-model" and first.body["stream"] is True
    msgs = second.body["messages"]
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("You are terse.")
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user"]   # history across turns
    assert msgs[2]["content"] == "It is sunny in Paris. Anything else?"


def test_the_model_calls_a_client_tool_and_speaks_the_follow_up(srv: ServerThread, llm: OpenAIDouble) -> None:
    llm.script(ToolCalls((ToolCall("get_weather", {"city": "Paris"}, "call_m1"),), text="Let me check."),
               Answer("Paris is sunny and 22 degrees."))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start(session(tools=[WEATHER]))
            got = await turn(c)
            call = next(e for e in got if e["type"] == "tool.call")
            assert call == {**call, "call_id": "call_m1", "name": "get_weather", "arguments": {"city": "Paris"}}
            assert agent_text(got) == "Let me check."
            await c.send({"type": "tool.result", "call_id": "call_m1", "result": json.dumps({"temp_c": 22})})
            follow = await c.until("reply.done")
            assert agent_text(follow) == "Paris is sunny and 22 degrees."
    before = len(llm.requests)
    run(main())
    ask, answer = llm.requests[before:before + 2]
    assert ask.body["tools"][0]["function"]["name"] == "get_weather"
    tail = answer.body["messages"][-2:]
    assert tail[0]["role"] == "assistant" and tail[0]["tool_calls"][0]["id"] == "call_m1"
    assert tail[1] == {"role": "tool", "tool_call_id": "call_m1", "content": '{"temp_c": 22}'}


def test_reply_create_instructions_reach_the_model(srv: ServerThread, llm: OpenAIDouble) -> None:
    llm.script(Answer("Welcome back!"))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start(session())
            await c.send({"type": "reply.create", "instructions": "Greet the user warmly."})
            got = await c.until("reply.done")
            assert agent_text(got) == "Welcome back!"
    before = len(llm.requests)
    run(main())
    assert llm.requests[before].body["messages"][-1] == {"role": "system", "content": "Greet the user warmly."}


def test_an_interrupted_llm_reply_is_trimmed_and_the_next_turn_answers(srv: ServerThread, llm: OpenAIDouble) -> None:
    long = " ".join(["This is a long answer that keeps going."] * 8)
    llm.script(Answer(long), Answer("Yes?"))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start(session())
            await c.send_pcm(tone_speech("tell me a story"))
            await c.until("reply.audio")
            await c.send_pcm(tone_speech("stop"))
            got = await c.until("reply.done", status="interrupted")
            cut = [e for e in got if e["type"] == "transcript.agent"][-1]
            assert cut["interrupted"] is True and len(cut["text"]) < len(long)
            follow = await c.until("reply.done", status="completed")
            assert agent_text(follow) == "Yes?"
    run(main())


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"   # nothing listens there


@pytest.mark.parametrize("behaviour, code", [
    (HttpError(500, "boom"), "llm_http_error"),
    (Garbage(), "llm_bad_stream"),
    (Stall(3.0), "llm_timeout"),
    (Truncated(), "llm_stream_truncated"),
    (None, "llm_connection_failed"),
])
def test_each_llm_failure_gives_reply_error_and_an_apology(srv: ServerThread, llm: OpenAIDouble,
                                                           behaviour: Any, code: str) -> None:
    if behaviour is not None:
        llm.script(behaviour)
    llm_entry = {"base_url": _refused_url() if behaviour is None else llm.base_url, "model": "m",
                 "api_key": "sk-session"}

    async def main() -> None:
        async with client(srv.url) as c:
            ready = await c.start(session(llm=[llm_entry]))
            assert "api_key" not in json.dumps(ready)   # the key is write-only (5.10)
            got = await turn(c)
            err = next(e for e in got if e["type"] == "reply.error")
            assert err["code"] == code and isinstance(err["retryable"], bool) and "sk-" not in err["message"]
            if code == "llm_http_error":
                assert err["status_code"] == 500
            seq = types(got)
            assert seq.index("reply.started") < seq.index("reply.error") < seq.index("reply.done")
            assert agent_text(got).endswith(APOLOGY) and got[-1]["status"] == "completed"
            if behaviour is not None:     # the session is not hung: the next turn is answered
                llm.script(Answer("Back again."))
                assert agent_text(await turn(c)) == "Back again."
    run(main())


def test_a_bad_llm_entry_is_refused_at_session_update(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            await c.send({"type": "session.update", "session": session(llm=[{"base_url": "http://x/v1"}])})
            err = await c.until("session.error")
            assert err[-1]["code"] == "invalid_value" and err[-1]["param"] == "llm"
    run(main())


def test_hold_mode_with_the_model_waits_for_the_result_then_speaks_the_follow_up(
        srv: ServerThread, llm: OpenAIDouble) -> None:
    llm.script(ToolCalls((ToolCall("get_weather", {"city": "Paris"}, "call_h1"),)),
               Answer("Paris: sunny."))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start(session(tools=[dict(WEATHER, execution_mode="hold")]))
            got = await turn(c)
            assert any(e["type"] == "tool.call" for e in got)
            await c.send_pcm(tone_speech("are you there"))      # during hold: no reply to this turn
            held = await c.quiet(1.5)
            assert not {"reply.started", "transcript.user"} & set(types(held))
            await c.send({"type": "tool.result", "call_id": "call_h1", "result": '"sunny"'})
            follow = await c.until("reply.done")
            seq = types(follow)
            assert seq.index("transcript.user") < seq.index("reply.started")   # buffered, then flushed
            assert agent_text(follow) == "Paris: sunny."
    run(main())
