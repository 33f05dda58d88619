"""Peer compatibility from the protocol (issue 9): real sessions against the local server over
loopback, every server message and every client message checked against the strict wire schema of
tests/wire_schema.py. The server side is driven by a raw client (greeting, user turn, barge-in,
tools, resume, errors, text sessions, configs with every optional field); the client side is
``voicecli ask`` itself, through a recording proxy in front of the server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from srvutil import FAST_TD, UNIT, Client, client, module_server, run, tone_speech
from websockets.exceptions import ConnectionClosed

from tests.conftest import EXAMPLES, run_cli
from tests.proxy import RecordingProxy
from tests.wire_schema import check_client, check_server
from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()


WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}

EVERY_FIELD: dict[str, Any] = {   # section 5, every optional field the inline mode has
    "system_prompt": "Be brief.",
    "greeting": "Hi.",
    "input": {"type": "audio", "format": {"encoding": "audio/pcm", "sample_rate": 24000},
              "keyterms": ["AssemblyAI"], "transcription_mode": "balanced",
              "transcription_prompt": "A weather call.", "language_codes": ["en"],
              "voice_focus": "near-field", "voice_focus_threshold": 0.85, "continuous_partials": False,
              "turn_detection": {"vad_threshold": 0.5, "min_silence": 200, "max_silence": 1000,
                                 "interrupt_response": True, "interruption_delay": 0,
                                 "type": "server_vad", "uninterruptible_turns": ["greeting"]}},
    "output": {"type": "audio", "voice": "anna", "format": {"encoding": "audio/pcm"}, "volume": 80},
    "tools": [dict(WEATHER_TOOL, execution_mode="interactive", timeout_seconds=30,
                   response_instructions={"success": "Say it.", "error": "Apologise."},
                   http={"url": "https://tools.example/weather"}, session_update={"enabled": False},
                   deployment_id="d1", image_tag="t1")],
    "pre_connect_requests": [],
    "webhook": {"url": "https://hooks.example/voice", "events": ["session.ended"], "secret": "whsec_1"},
}

CONFIGS = [   # agent-less configs: (first session.update, what the echo must hold)
    ({}, {}),
    (EVERY_FIELD, {"greeting": "Hi."}),
    ({"input": {"format": {"sample_rate": 24000}}},
     {"input.format": {"encoding": "audio/pcm", "sample_rate": 24000}}),
    ({"input": {"format": {"encoding": "audio/pcmu"}}, "output": {"format": {"encoding": "audio/pcma",
                                                                             "sample_rate": 8000}}},
     {"input.format": {"encoding": "audio/pcmu"}, "output.format": {"encoding": "audio/pcma"}}),
    ({"input": {"type": "text"}, "output": {"type": "text"}},
     {"input": {"type": "text"}, "output": {"type": "text"}}),
    ({"input": {"turn_detection": {"vad_threshold": 0.4}}, "tools": [{"type": "function", "name": "ping"}]},
     {"input.turn_detection.min_silence": None, "tools.0.description": "",
      "tools.0.parameters": {"type": "object", "properties": {}, "required": []}}),
    ({"llm": [{"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-never-echoed"}]},
     {"llm": [{"base_url": "http://127.0.0.1:9/v1", "model": "m"}]}),
]


def _at(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class Checked(Client):
    """A raw client whose every sent and received message is checked against the schema."""

    async def send(self, obj: dict[str, Any] | str | bytes) -> None:
        if isinstance(obj, dict):
            check_client(obj)
        await super().send(obj)

    async def recv(self, timeout: float = 5 * UNIT) -> dict[str, Any]:
        event = await super().recv(timeout)
        check_server(event)
        return event


def checked(url: str, **kw: Any) -> Any:
    class _Ctx:
        async def __aenter__(self) -> Checked:
            self._cm = client(url, **kw)
            raw = await self._cm.__aenter__()
            self.c = Checked(raw.ws)
            return self.c

        async def __aexit__(self, *exc: Any) -> None:
            await self._cm.__aexit__(*exc)
    return _Ctx()


@pytest.mark.parametrize(("session", "expect"), CONFIGS, ids=range(len(CONFIGS)))
def test_resolved_config_of_every_config_matches_the_schema(srv, session, expect):
    async def main() -> None:
        async with checked(srv.url) as c:
            ready = await c.start(session)
            assert c.events[0]["config"] == ready["config"]
            for path, value in expect.items():
                assert _at(ready["config"], path) == value, path
            assert "sk-never-echoed" not in json.dumps(c.events) and "whsec_1" not in json.dumps(c.events)
            await c.send({"type": "session.update", "session": {"system_prompt": "Later."}})
            assert (await c.until("session.updated"))[-1]["config"]["system_prompt"] == "Later."
            await c.send({"type": "session.end"})
            await c.until("session.ended")
    run(main())


def test_a_stored_agent_reference_validates_as_a_client_event():
    check_client({"type": "session.update", "session": {"agent_id": "7ad24396-b822-4dca-871a-be9cc4781cf9"}})
    with pytest.raises(AssertionError):
        check_client({"type": "session.update", "session": {"agent_id": "a", "greeting": "hi"}})
    with pytest.raises(AssertionError):
        check_server({"type": "session.ended", "session_duration_seconds": 1.0, "timestamp": 1.0})
    with pytest.raises(AssertionError):
        check_server({"type": "reply.done", "reply_id": "resp_" + "0" * 32, "status": "completed",
                      "timestamp": 1.0, "extra": 1})


def test_greeting_turn_barge_in_and_end(srv):
    async def main() -> None:
        async with checked(srv.url, query="scenario=long") as c:
            await c.start({"greeting": "Hello there.", "input": {"turn_detection": FAST_TD}})
            await c.until("reply.done")                                   # the greeting
            await c.send_pcm(tone_speech("tell me a story"))
            await c.until("reply.audio")
            await asyncio.sleep(0.8)
            await c.send_pcm(tone_speech("stop"))
            got = await c.until("reply.done", status="interrupted")
            assert any(e["type"] == "transcript.agent" and e["interrupted"] for e in got)
            await c.until("reply.done", status="completed")
            await c.send({"type": "conversation.message", "role": "user", "content": "My order is 12."})
            await c.send({"type": "reply.create", "instructions": "Say okay."})
            await c.until("reply.done")
            await c.send({"type": "reply.create"})
            await c.until("reply.started")
            await c.send({"type": "reply.cancel", "reply_id": c.events[-1]["reply_id"]})
            await c.until("reply.done")
            await c.send({"type": "session.end"})
            await c.until("session.ended")
            assert {"transcript.user", "input.speech.started",
                    "input.speech.stopped", "transcript.agent.delta", "reply.audio"} <= {
                        e["type"] for e in c.events}
    run(main())


def test_tools_round_trip(srv):
    async def main() -> None:
        async with checked(srv.url, query="scenario=tools") as c:
            await c.start({"input": {"turn_detection": FAST_TD}, "tools": [WEATHER_TOOL]})
            await c.send_pcm(tone_speech("what is the weather in paris"))
            got = await c.until("reply.done")
            call = next(e for e in got if e["type"] == "tool.call")
            await c.send({"type": "tool.result", "call_id": call["call_id"], "result": json.dumps("sunny"),
                          "is_error": False})
            follow = await c.until("reply.done")
            assert follow[-2]["text"] == "The weather in Paris is sunny."
    run(main())


def test_errors_and_resume(srv):
    async def main() -> None:
        async with checked(srv.url, query="fault=drop-after-replies=1&scenario=echo") as c:
            await c.send({"type": "input.audio", "audio": "AAAA"})            # before ready
            assert (await c.recv())["code"] == "invalid_format"
            await c.send("not json")
            assert (await c.recv())["code"] == "invalid_format"
            await c.send('{"type":"nope"}')
            assert (await c.recv())["param"] == "type"
            ready = await c.start({"greeting": "Hi.", "input": {"turn_detection": FAST_TD}})
            await c.send({"type": "session.update", "session": {"greeting": "Changed."}})
            assert (await c.until("session.error"))[-1]["code"] == "immutable_field"
            await c.send('{"type":"input.audio","audio":"***"}')
            assert (await c.until("session.error"))[-1]["code"] == "invalid_audio"
            await c.send('{"type":"tool.result","call_id":"call_x","result":"{}"}')
            assert (await c.until("session.error"))[-1]["code"] == "invalid_value"
            await c.until("reply.done")                                     # greeting, then the drop
            with pytest.raises(ConnectionClosed):
                await c.recv(3 * UNIT)
        async with checked(srv.url, key=ready["resume_token"], query="scenario=echo") as c:
            await c.send({"type": "session.resume", "session_id": ready["session_id"]})
            again = await c.recv()
            assert again["type"] == "session.ready" and again["session_id"] == ready["session_id"]
            await c.send({"type": "session.end"})
            await c.until("session.ended")
        async with checked(srv.url) as c:
            await c.send({"type": "session.resume", "session_id": "sess_" + "0" * 32})
            assert (await c.recv())["code"] == "session_not_found"
    run(main())


# -- our client, through a recording proxy ---------------------------------------------------------


def test_what_voicecli_ask_sends_matches_the_schema(srv, tmp_path: Path):
    cfg = tmp_path / "voicecli.toml"
    cfg.write_text(
        'greeting = "Hi."\nsystem_prompt = "Be brief."\n'
        '[input]\nkeyterms = ["Paris"]\ntranscription_mode = "balanced"\nvoice_focus = "near-field"\n'
        '[input.format]\nencoding = "audio/pcm"\nsample_rate = 24000\n'
        '[input.turn_detection]\nvad_threshold = 0.5\ninterrupt_response = true\n'
        '[output]\nvoice = "anna"\nvolume = 80\n[output.format]\nencoding = "audio/pcm"\n'
        '[[tools]]\nname = "get_weather"\ndescription = "Weather for a city."\n'
        'parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }\n'
        'command = ["python3", "-c", "print(\\"sunny\\")"]\n')
    with RecordingProxy(srv.url) as proxy:
        r = run_cli("ask", str(EXAMPLES / "weather.wav"), str(EXAMPLES / "thanks.wav"), "--config", str(cfg),
                    "--url", proxy.url + "?scenario=tools&fault=drop-after-replies=3", "--api-key", "k",
                    "--pace", "fast", "--trailing-silence", "800", "--json")
    assert r.code == 0, r.stderr
    sent = [json.loads(m) for m in proxy.sent]
    kinds = [check_client(m) for m in sent]
    assert {"session.update", "input.audio", "tool.result", "session.resume", "session.end"} <= set(kinds), (
        sorted(set(kinds)), [json.loads(m).get("type") for m in proxy.received if "audio" not in m][:40],
        r.stdout[-3000:])
    received = [json.loads(m) for m in proxy.received]
    assert {check_server(m) for m in received} >= {"session.ready", "tool.call", "reply.done", "session.ended"}
    first = sent[0]["session"]
    assert first["tools"][0]["name"] == "get_weather" and "command" not in first["tools"][0]
    assert all(base64.b64decode(m["audio"]) for m in sent if m["type"] == "input.audio")
