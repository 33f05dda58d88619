"""Local server: tool calls over a real socket (protocol.md 3.3, 4.14, 6.5). The tool rules themselves
(duplicates, stale and early results, timeouts, hold mode) are unit tests on AgentSession
(tests/unit/test_agent_session.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from srvutil import FAST_TD, client, module_server, run, tone_speech, types

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


def test_scenario_never_calls_a_tool_the_session_did_not_declare(srv: ServerThread) -> None:
    """Issue 9: ``?scenario=tools`` without a declared get_weather emits no tool.call; the agent
    says why in the transcript."""
    async def main() -> None:
        async with client(srv.url, query="scenario=tools") as c:
            await c.start({"input": {"turn_detection": FAST_TD},
                           "tools": [dict(weather_tool(), name="get_time")]})
            got = await ask_weather(c)
            assert "tool.call" not in types(got)
            said = [e for e in got if e["type"] == "transcript.agent"][-1]["text"]
            assert "get_weather" in said and "did not declare" in said
            assert "tool.call" not in types(await c.quiet(0.3))
    run(main())
