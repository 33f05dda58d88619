"""stream_chat against a real local HTTP server speaking OpenAI streaming chat completions.

The server is a documented test double of a provider (tests/speech/openai_double.py), not a mock."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("openai", reason="the `llm` extra (openai) is not installed")

from tests.conftest import unit
from tests.speech.openai_double import (
    Answer,
    Garbage,
    HttpError,
    OpenAIDouble,
    Stall,
    ToolCall,
    ToolCalls,
    Truncated,
)
from voicecli.speech.llm import (
    BAD_STREAM,
    CONNECTION_FAILED,
    HTTP_ERROR,
    STREAM_TRUNCATED,
    TIMEOUT,
    LlmEndpoint,
    LlmError,
    StreamItem,
    TextDelta,
    ToolCallRequest,
    assistant_message,
    openai_tools,
    stream_chat,
    tool_message,
)

SECRET = "sk-test-secret-1234"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "execution_mode": "interactive", "timeout_seconds": 30}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


@pytest.fixture()
def llm() -> Iterator[OpenAIDouble]:
    with OpenAIDouble() as double:
        yield double


def endpoint(double: OpenAIDouble) -> LlmEndpoint:
    return LlmEndpoint(double.base_url, "double-model", SECRET)


def collect(it: Iterator[StreamItem]) -> list[StreamItem]:
    return list(it)


def test_plain_answer_streams_text_in_order(llm: OpenAIDouble) -> None:
    llm.script(Answer("Hello there, how can I help?", chunk_chars=3))
    items = collect(stream_chat(endpoint(llm), MESSAGES, timeout_s=unit(10)))
    assert all(isinstance(i, TextDelta) for i in items)
    assert len(items) > 5
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == "Hello there, how can I help?"
    req = llm.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.authorization == f"Bearer {SECRET}"
    assert req.body["stream"] is True and req.body["model"] == "double-model"
    assert req.body["messages"] == MESSAGES
    assert "tools" not in req.body


def test_tool_call_deltas_assembled(llm: OpenAIDouble) -> None:
    llm.script(ToolCalls((ToolCall("get_weather", {"city": "Paris", "days": 2}, "call_a"),
                          ToolCall("get_time", {"zone": "Europe/Paris"}, "call_b")), text="Let me check."))
    items = collect(stream_chat(endpoint(llm), MESSAGES, [WEATHER], timeout_s=unit(10)))
    text = "".join(i.text for i in items if isinstance(i, TextDelta))
    calls = [i for i in items if isinstance(i, ToolCallRequest)]
    assert text == "Let me check."
    assert calls == [ToolCallRequest("get_weather", {"city": "Paris", "days": 2}, "call_a"),
                     ToolCallRequest("get_time", {"zone": "Europe/Paris"}, "call_b")]
    assert isinstance(items[-1], ToolCallRequest)  # calls come after all text
    assert llm.requests[0].body["tools"] == openai_tools([WEATHER])


def test_openai_tools_shape() -> None:
    assert openai_tools([WEATHER, {"type": "other", "name": "x"}, {"type": "function", "name": "bare"}]) == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                          "parameters": WEATHER["parameters"]}},
        {"type": "function", "function": {"name": "bare", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}},
    ]


def test_follow_up_messages_round_trip(llm: OpenAIDouble) -> None:
    call = ToolCallRequest("get_weather", {"city": "Paris"}, "call_a")
    msgs = [*MESSAGES, assistant_message("", [call]), tool_message("call_a", "sunny")]
    llm.script(Answer("It is sunny."))
    items = collect(stream_chat(endpoint(llm), msgs, [WEATHER], timeout_s=unit(10)))
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == "It is sunny."
    sent = llm.requests[0].body["messages"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failure(ep: LlmEndpoint, timeout_s: float) -> LlmError:
    with pytest.raises(LlmError) as info:
        collect(stream_chat(ep, MESSAGES, timeout_s=timeout_s))
    assert SECRET not in str(info.value) and SECRET not in repr(ep)
    return info.value


def test_refused_connection() -> None:
    err = failure(LlmEndpoint(f"http://127.0.0.1:{free_port()}/v1", "m", SECRET), unit(5))
    assert (err.code, err.retryable, err.status_code) == (CONNECTION_FAILED, True, None)


def test_timeout_when_provider_stalls(llm: OpenAIDouble) -> None:
    llm.script(Stall(unit(10)))
    t0 = time.monotonic()
    err = failure(endpoint(llm), timeout_s=unit(0.5))
    assert (err.code, err.retryable) == (TIMEOUT, True)
    assert time.monotonic() - t0 < unit(5)


def test_http_500(llm: OpenAIDouble) -> None:
    llm.script(HttpError(500, "the model fell over"))
    err = failure(endpoint(llm), unit(5))
    assert (err.code, err.retryable, err.status_code) == (HTTP_ERROR, True, 500)
    assert "the model fell over" in err.message


def test_http_401_not_retryable(llm: OpenAIDouble) -> None:
    llm.script(HttpError(401, "bad key"))
    err = failure(endpoint(llm), unit(5))
    assert (err.code, err.retryable, err.status_code) == (HTTP_ERROR, False, 401)


def test_garbage_stream(llm: OpenAIDouble) -> None:
    llm.script(Garbage())
    err = failure(endpoint(llm), unit(5))
    assert err.code == BAD_STREAM


def test_truncated_stream_after_some_text(llm: OpenAIDouble) -> None:
    llm.script(Truncated("Half an ans"))
    got: list[str] = []
    with pytest.raises(LlmError) as info:
        for item in stream_chat(endpoint(llm), MESSAGES, timeout_s=unit(5)):
            assert isinstance(item, TextDelta)
            got.append(item.text)
    assert "".join(got) == "Half an ans"
    assert (info.value.code, info.value.retryable) == (STREAM_TRUNCATED, True)


def test_endpoint_from_config() -> None:
    ep = LlmEndpoint.from_config({"base_url": "http://x/v1", "model": "m", "api_key": SECRET})
    assert ep == LlmEndpoint("http://x/v1", "m", SECRET)
    assert SECRET not in repr(ep)
    with pytest.raises(ValueError, match="llm.model"):
        LlmEndpoint.from_config({"base_url": "http://x/v1"})
