"""Issue 12 item 4: the decoder (both roles) raises nothing but RemoteProtocolError on hostile JSON:
deep nesting, NaN/Infinity, floats that overflow, huge integers; with code and param for the
server's session.error."""

from __future__ import annotations

import pytest

from voicecli.protocol.constants import MAX_JSON_DEPTH
from voicecli.protocol.events import (
    RemoteProtocolError,
    ToolCall,
    decode_client_event,
    decode_server_event,
    safe_json_loads,
)

TD = '{"type":"session.update","session":{"input":{"turn_detection":{"min_silence":%s}}}}'
HOSTILE = [
    "[" * 2000 + "]" * 2000,
    "{\"a\":" * 2000 + "1" + "}" * 2000,
    "[" * 100000,
    "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    TD % "NaN", TD % "Infinity", TD % "-Infinity", TD % "1e999", TD % "-1e999",
    TD % ("9" * 40), TD % ("9" * 5000),
    '{"type":"session.update","session":{"tools":[{"type":"function","name":"f","parameters":'
    + '{"a":' * 600 + "1" + "}" * 600 + "}]}}",
    '{"type":"reply.audio","data":"","timestamp":NaN}',
    '{"type":"tool.call","call_id":"c","name":"f","arguments":1e999}',
    b"\xff\xfe",
    "",
    "nul",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:30]))
@pytest.mark.parametrize("decode", [decode_client_event, decode_server_event])
def test_hostile_json_raises_only_remote_protocol_error(decode, text):
    with pytest.raises(RemoteProtocolError) as info:
        decode(text)
    assert info.value.code in ("invalid_format", "invalid_value")


@pytest.mark.parametrize(("value", "code"), [("NaN", "invalid_format"), ("Infinity", "invalid_format"),
                                             ("1e999", "invalid_value"), ("9" * 40, "invalid_value")])
def test_bad_numbers_name_their_param(value, code):
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_event(TD % value)
    assert info.value.code == code
    assert info.value.param == "input.turn_detection.min_silence"


def test_deep_tool_parameters_name_the_tool():
    text = ('{"type":"session.update","session":{"tools":[{"type":"function","name":"f",'
            '"parameters":' + '{"a":' * 600 + "1" + "}" * 600 + "}]}}")
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_event(text)
    assert info.value.code == "invalid_format"
    assert info.value.param is not None and info.value.param.startswith("tools[0].parameters")


def test_depth_limit_is_exact():
    assert safe_json_loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(RemoteProtocolError):
        safe_json_loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))


def test_string_tool_arguments_that_are_hostile_do_not_escape():
    # OpenAI-style JSON-string arguments are parsed with the same safe reader
    deep = '"' + "[" * 5000 + '"'
    event = decode_server_event('{"type":"tool.call","call_id":"c","name":"f","arguments":' + deep + "}")
    assert isinstance(event, ToolCall) and event.arguments == {"_raw": "[" * 5000}


def test_ordinary_frames_still_decode():
    assert decode_server_event('{"type":"session.ended","session_duration_seconds":1.5,'
                               '"audio_duration_seconds":null,"timestamp":1790461875.75}')
    assert decode_client_event('{"type":"input.audio","audio":"AAA="}')
    assert safe_json_loads('{"n": 9223372036854775807, "f": -1.5e300}') == {
        "n": 9223372036854775807, "f": -1.5e300}
