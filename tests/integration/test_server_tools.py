"""Local server: tool calls, results, timeouts, duplicates, hold mode (protocol.md 3.3, 4.14, 6.5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from srvutil import FAST_TD, UNIT, client, module_server, run, tone_speech, types

from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()


def weather_tool(**extra: Any) -> dict[str, Any]:
    return dict({"type": "function", "name": "get_weather", "description": "Weather for a city.",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}}, **extra)


def session_with(tool: dict[str, Any]) -> dict[str, Any]:
    return {"input": {"turn_detection": FAST_TD}, "tools": [tool]}


async def ask_weather(c: Any) -> list[dict[str, Any]]:
    """Speak the first turn; return events up to the reply.done of the tool-calling reply."""
    await c.send_pcm(tone_speech("what is the weather in paris"))
    return await c.until("reply.done")


def test_tool_round_trip(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            ready = await c.start(session_with(weather_tool()))
            got = await ask_weather(c)
            seq = types(got)
            i = seq.index("reply.started")
            assert seq[i:] == ["reply.started"] + ["transcript.agent.delta"] * 3 + [
                "tool.call", "transcript.agent", "reply.done"]  # "Let me check." = 3 words
            call = got[-3]
            assert call["name"] == "get_weather" and call["arguments"] == {"city": "Paris"}
            assert call["call_id"].startswith("call_") and "reply_id" not in call
            audio_before_call = [e for e in got[got.index(call):] if e["type"] == "reply.audio"]
            assert audio_before_call == []  # the call comes after the transition phrase's audio
            assert got[-2]["text"] == "Let me check." and got[-1]["status"] == "completed"
            await c.send({"type": "tool.result", "call_id": call["call_id"],
                          "result": json.dumps("sunny and 22 degrees")})
            follow = await c.until("reply.done")
            assert follow[0]["type"] == "reply.started"
            assert follow[0]["reply_id"] != got[-1]["reply_id"]
            assert follow[-2]["text"] == "The weather in Paris is sunny and 22 degrees."
            stats = srv.session(ready["session_id"]).stats
            assert stats["tool_calls"] == 1 and stats["tool_results_before_done"] == 0
    run(main())


def test_result_before_reply_done_is_accepted_but_counted(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            ready = await c.start(session_with(weather_tool()))
            await c.send_pcm(tone_speech("what is the weather in paris"))
            call = (await c.until("tool.call"))[-1]
            await c.send({"type": "tool.result", "call_id": call["call_id"], "result": '{"temp_c": 22}'})
            await c.until("reply.done")
            follow = await c.until("reply.done")
            assert follow[-2]["text"] == 'The weather in Paris is {"temp_c": 22}.'
            assert srv.session(ready["session_id"]).stats["tool_results_before_done"] == 1
    run(main())


def test_tool_timeout_makes_the_agent_apologise(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            ready = await c.start(session_with(weather_tool(timeout_seconds=1)))
            got = await ask_weather(c)
            call = next(e for e in got if e["type"] == "tool.call")
            loop_time = __import__("asyncio").get_running_loop().time
            t0 = loop_time()
            follow = await c.until("reply.done", timeout=5 * UNIT)
            assert loop_time() - t0 >= 0.8
            assert follow[-2]["text"] == "Sorry, the get_weather tool did not answer in time."
            # a late result is ignored (counted as stale), no error
            await c.send({"type": "tool.result", "call_id": call["call_id"], "result": '"late"'})
            assert await c.quiet(0.2 * UNIT) == []
            stats = srv.session(ready["session_id"]).stats
            assert stats["tool_timeouts"] == 1 and stats["tool_results_stale"] == 1
    run(main())


def test_unknown_call_id_is_invalid_value_and_session_stays_open(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            ready = await c.start(session_with(weather_tool()))
            await c.send({"type": "tool.result", "call_id": "call_nope", "result": "{}"})
            error = await c.recv()
            assert error["type"] == "session.error" and error["code"] == "invalid_value"
            assert error["param"] == "call_id" and error["session_id"] == ready["session_id"]
            await c.send({"type": "tool.result", "call_id": "call_nope", "result": {"not": "a string"}})
            error = await c.recv()
            assert error["param"] == "result"
            await c.send({"type": "session.end"})
            assert (await c.recv())["type"] == "session.ended"
    run(main())


def test_duplicate_tool_call_same_call_id(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=duplicate_tool") as c:
            ready = await c.start(session_with(weather_tool()))
            got = await ask_weather(c)
            calls = [e for e in got if e["type"] == "tool.call"]
            assert len(calls) == 2 and calls[0]["call_id"] == calls[1]["call_id"]
            await c.send({"type": "tool.result", "call_id": calls[0]["call_id"], "result": '"rainy"'})
            follow = await c.until("reply.done")
            assert follow[-2]["text"] == "The weather in Paris is rainy."
            await c.send({"type": "tool.result", "call_id": calls[0]["call_id"], "result": '"rainy"'})
            assert await c.quiet(0.3 * UNIT) == []  # one follow-up only; a second result is ignored
            assert srv.session(ready["session_id"]).stats["tool_results_duplicate"] == 1
    run(main())


def test_hold_mode_suppresses_user_replies_until_the_result(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            await c.start(session_with(weather_tool(execution_mode="hold")))
            got = await ask_weather(c)
            call = next(e for e in got if e["type"] == "tool.call")
            await c.send_pcm(tone_speech("thanks"))  # user speaks during the hold
            held = await c.quiet(0.8 * UNIT)
            seq = types(held)
            assert "input.speech.stopped" in seq and "reply.started" not in seq
            assert "transcript.user" not in seq  # buffered until the hold ends
            await c.send({"type": "reply.create", "instructions": "Still working on it."})
            status = await c.until("reply.done")  # reply.create is allowed during a hold
            assert status[-2]["text"] == "Still working on it."
            await c.send({"type": "tool.result", "call_id": call["call_id"], "result": '"cloudy"'})
            after = await c.until("reply.done")
            seq = types(after)
            assert seq.index("transcript.user") < seq.index("reply.started")
            assert [e["text"] for e in after if e["type"] == "transcript.user"] == ["thanks"]
            assert after[-2]["text"] == "The weather in Paris is cloudy."
    run(main())
