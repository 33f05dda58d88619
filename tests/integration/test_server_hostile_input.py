"""Hostile client frames against the local server (issue 12 items 3 and 4): each gets ONE
``session.error`` (invalid_format / invalid_value with ``param``), the session goes on, the server
logs no traceback and never closes 1011. Limits come from voicecli/protocol/constants.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import pytest
from srvutil import UNIT, client, module_server, run, start_server
from websockets.exceptions import ConnectionClosed

from voicecli.protocol.constants import (
    MAX_FRAME_BYTES,
    MAX_GREETING_CHARS,
    MAX_KEYTERM_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TOOL_DESCRIPTION_CHARS,
    MAX_TOOL_NAME_CHARS,
    MAX_TOOLS,
)
from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture(name="tracebacks")
def _tracebacks() -> Iterator[list[logging.LogRecord]]:
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    yield handler.records
    logging.getLogger().removeHandler(handler)


def _update(session_json: str) -> str:
    return '{"type":"session.update","session":' + session_json + "}"


def _tool(params_json: str) -> str:
    return '{"tools":[{"type":"function","name":"f","description":"d","parameters":' + params_json + "}]}"


def _td(field: str, value: str) -> str:
    return _update('{"input":{"turn_detection":{"' + field + '":' + value + "}}}")


BEFORE_READY = [   # (frame, code, param); the session.update is the first message
    (_td("min_silence", "NaN"), "invalid_format", "input.turn_detection.min_silence"),
    (_td("max_silence", "Infinity"), "invalid_format", "input.turn_detection.max_silence"),
    (_td("min_silence", "1e999"), "invalid_value", "input.turn_detection.min_silence"),
    (_td("interruption_delay", "9" * 400), "invalid_value", "input.turn_detection.interruption_delay"),
    (_td("vad_threshold", "-Infinity"), "invalid_format", "input.turn_detection.vad_threshold"),
    (_td("uninterruptible_turns", "5"), "invalid_value", "input.turn_detection.uninterruptible_turns"),
    (_update('{"llm":5}'), "invalid_value", "llm"),
    (_update('{"llm":[{"model":"m"}]}'), "invalid_value", "llm[0].base_url"),
    (_update(_tool('{"a":' * 600 + "1" + "}" * 600)), "invalid_format", "tools[0].parameters.a.a.a.a"),
    (_update(_tool('{"type":"object","properties":' + '{"a":{"type":"object","properties":' * 15
                   + "{}" + "}}" * 15 + "}")), "invalid_value", "tools[0].parameters"),
    (_update(_tool('{"type":"string"}')), "invalid_value", "tools[0].parameters"),
    (_update(_tool("[1,2]")), "invalid_value", "tools[0].parameters"),
    ("[" * 2000 + "]" * 2000, "invalid_format", "[0][0][0][0][0][0][0][0]"),
    (_update('{"webhook":{"events":["session.ended"]}}'), "invalid_webhook", "webhook.url"),
    (_update('{"webhook":{"url":"https://hook.example","retries":3}}'), "invalid_webhook", "webhook.retries"),
    (_update(json.dumps({"greeting": "x" * (MAX_GREETING_CHARS + 1)})), "invalid_value", "greeting"),
    (_update(json.dumps({"system_prompt": "x" * (MAX_SYSTEM_PROMPT_CHARS + 1)})), "invalid_value",
     "system_prompt"),
    (_update(json.dumps({"input": {"keyterms": ["x" * (MAX_KEYTERM_CHARS + 1)]}})), "invalid_value",
     "input.keyterms"),
    (_update(json.dumps({"input": {"keyterms": ["k"] * 101}})), "invalid_value", "input.keyterms"),
    (_update(json.dumps({"tools": [{"type": "function", "name": f"t{i}"} for i in range(MAX_TOOLS + 1)]})),
     "invalid_value", "tools"),
    (_update(json.dumps({"tools": [{"type": "function", "name": "n" * (MAX_TOOL_NAME_CHARS + 1)}]})),
     "invalid_value", "tools[0].name"),
    (_update(json.dumps({"tools": [{"type": "function", "name": "f",
                                    "description": "d" * (MAX_TOOL_DESCRIPTION_CHARS + 1)}]})),
     "invalid_value", "tools[0].description"),
    (_update(json.dumps({"tools": [{"type": "function", "name": "f", "parameters": {
        "type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100}
                                         for i in range(400)}}}]})), "invalid_value", "tools[0].parameters"),
    (_update('{"input":{"type":"text","format":{"encoding":"audio/pcm"}}}'), "invalid_value", "input.format"),
]


@pytest.mark.parametrize(("frame", "code", "param"), BEFORE_READY, ids=lambda v: str(v)[:40])
def test_bad_first_frame_gets_one_error_and_the_session_goes_on(srv, tracebacks, frame, code, param):
    async def main() -> None:
        async with client(srv.url) as c:
            await c.send(frame)
            error = await c.recv()
            assert error["type"] == "session.error", error
            assert (error["code"], error["param"]) == (code, param), error
            assert await c.quiet(0.2 * UNIT) == []                       # exactly one answer
            ready = await c.start()                                      # the session goes on
            assert ready["session_id"].startswith("sess_")
    run(main())
    assert tracebacks == []


AFTER_READY = [
    (json.dumps({"type": "conversation.message", "role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}),
     "invalid_value", "content"),
    (json.dumps({"type": "reply.create", "instructions": "x" * (MAX_MESSAGE_CHARS + 1)}),
     "invalid_value", "instructions"),
    ('{"type":"conversation.message","role":"user","content":5}', "invalid_value", "content"),
    ('{"type":"input.audio","audio":"AAAA","timestamp":NaN}', "invalid_format", "timestamp"),
    (_td("min_silence", "NaN"), "invalid_format", "input.turn_detection.min_silence"),
    (_update('{"llm":5}'), "invalid_value", "llm"),
    (_update(_tool('{"a":' * 600 + "1" + "}" * 600)), "invalid_format", "tools[0].parameters.a.a.a.a"),
    ("{" * 3000, "invalid_format", None),
]


@pytest.mark.parametrize(("frame", "code", "param"), AFTER_READY, ids=lambda v: str(v)[:40])
def test_bad_frame_after_ready_gets_one_error_and_the_session_goes_on(srv, tracebacks, frame, code, param):
    async def main() -> None:
        async with client(srv.url) as c:
            await c.start()
            await c.send(frame)
            error = await c.recv()
            assert error["type"] == "session.error", error
            assert (error["code"], error["param"]) == (code, param), error
            assert error["session_id"].startswith("sess_")
            await c.send({"type": "session.update", "session": {"system_prompt": "still here"}})
            updated = await c.recv()
            assert updated["type"] == "session.updated" and updated["config"]["system_prompt"] == "still here"
            await c.send({"type": "session.end"})
            assert (await c.until("session.ended"))[-1]["type"] == "session.ended"
    run(main())
    assert tracebacks == []


def test_limits_at_the_maximum_are_accepted(srv):
    session = {"greeting": "a" * MAX_GREETING_CHARS, "input": {"keyterms": ["k" * MAX_KEYTERM_CHARS] * 100},
               "tools": [{"type": "function", "name": "n" * MAX_TOOL_NAME_CHARS,
                          "description": "d" * MAX_TOOL_DESCRIPTION_CHARS}]}

    async def main() -> None:
        async with client(srv.url) as c:
            ready = await c.start(session)
            assert ready["config"]["greeting"] == session["greeting"]
    run(main())


def test_a_frame_over_the_maximum_closes_1009(srv):
    """protocol.md 1.1: the service runs websockets with its 1 MiB default; over it -> 1009."""
    async def main() -> None:
        async with client(srv.url) as c:
            await c.start()
            await c.send(json.dumps({"type": "conversation.message", "role": "user",
                                     "content": "x" * MAX_FRAME_BYTES}))
            with pytest.raises(ConnectionClosed) as info:
                await c.quiet(2 * UNIT)
                await c.ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    run(main())


def test_a_greeting_at_the_maximum_does_not_block_another_handshake():
    """Issue 12 item 3: a maximal greeting synthesizes while another client connects and gets
    session.ready within about a second."""
    thread = start_server(tts="espeak")
    try:
        async def main() -> float:
            async with client(thread.url) as greeter:
                await greeter.send({"type": "session.update",
                                    "session": {"greeting": ("Hello there, how are you today? " * 40)
                                                [:MAX_GREETING_CHARS]}})
                await greeter.until("session.ready")
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                async with client(thread.url) as other:
                    await other.start()
                    return time.monotonic() - t0
        took = run(main())
        assert took < 1.0 * UNIT, f"handshake + session.ready took {took:.2f} s"
    finally:
        thread.stop()
