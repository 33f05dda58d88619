"""Encode/decode round trips for every client and server event (protocol.md sections 3 and 4)."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from voicecli.protocol import events as ev
from voicecli.protocol.events import (
    LocalProtocolError,
    RemoteProtocolError,
    decode_client_event,
    decode_server_event,
    encode,
    encode_server,
    summarize_raw,
)

CLIENT_EVENTS = [
    ev.SessionUpdate({"system_prompt": "Be brief.", "greeting": "Hi", "output": {"voice": "alba"}}),
    ev.SessionResume("sess_0123"),
    ev.InputAudio(b"\x01\x00\xff\x7f" * 10),
    ev.ToolResult("call_1", json.dumps({"temp_c": 22})),
    ev.ToolResult("call_2", json.dumps({"error": "no city"}), is_error=True),
    ev.ReplyCreate("Say we are still working."),
    ev.ReplyCreate(),
    ev.ConversationMessage("user", "My order number is ORD-12345."),
    ev.ConversationMessage("system", "The user is a VIP."),
    ev.SessionEnd(),
    ev.ReplyCancel("resp_1"),
]


@pytest.mark.parametrize("event", CLIENT_EVENTS, ids=lambda e: e.type)
def test_client_event_round_trip(event: ev.ClientEvent) -> None:
    text = encode(event)
    wire = json.loads(text)
    assert wire["type"] == event.type
    assert decode_client_event(text) == event


def test_client_types_cover_protocol_section_3() -> None:
    assert {e.type for e in CLIENT_EVENTS} == set(ev.CLIENT_EVENT_TYPES)


def test_input_audio_is_base64_on_the_wire() -> None:
    wire = json.loads(encode(ev.InputAudio(b"\x00\x01\x02")))
    assert wire == {"type": "input.audio", "audio": "AAEC"}


@pytest.mark.parametrize("pcm", [b"", b"\x00\x01\x02", bytes(range(256)) * 4, bytearray(b"\xff\x7f" * 480),
                                 memoryview(b"\x01\x02\x03\x04")])
def test_the_live_paths_input_audio_frame_is_the_generic_encoders(pcm: bytes) -> None:
    generic = json.dumps(ev.InputAudio(pcm).to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert ev.encode_input_audio(pcm) == encode(ev.InputAudio(pcm)) == generic
    assert decode_client_event(ev.encode_input_audio(pcm)) == ev.InputAudio(bytes(pcm))


def test_the_live_paths_input_audio_frame_refuses_what_encode_refuses() -> None:
    for bad in ("text", None, [1, 2]):
        with pytest.raises(LocalProtocolError):
            encode(ev.InputAudio(bad))  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            ev.encode_input_audio(bad)  # type: ignore[arg-type]


def test_tool_result_result_must_be_a_string() -> None:
    with pytest.raises(LocalProtocolError):
        encode(ev.ToolResult("c", {"temp": 1}))  # type: ignore[arg-type]
    assert "is_error" not in json.loads(encode(ev.ToolResult("c", "{}")))


def test_conversation_message_role_checked() -> None:
    with pytest.raises(LocalProtocolError):
        encode(ev.ConversationMessage("assistant", "x"))


SERVER_FRAMES = {
    "session.ready": ({"session_id": "sess_a", "config": {"id": "sess_a"}, "expires_at": 1790465450,
                       "resume_token": "eyJ"}, ev.SessionReady("sess_a", {"id": "sess_a"}, 1790465450, "eyJ")),
    "session.updated": ({"config": {"id": "s"}}, ev.SessionUpdated({"id": "s"})),
    "session.ended": ({"session_duration_seconds": 19.8, "audio_duration_seconds": None},
                      ev.SessionEnded(19.8, None)),
    "session.error": ({"code": "invalid_value", "message": "m", "param": "input.x", "session_id": None},
                      ev.SessionError("invalid_value", "m", "input.x", None)),
    "input.speech.started": ({}, ev.InputSpeechStarted()),
    "input.speech.stopped": ({}, ev.InputSpeechStopped()),
    "transcript.user.delta": ({"item_id": "msg_1", "text": "hello wor"}, ev.TranscriptUserDelta("msg_1", "hello wor")),
    "transcript.user": ({"item_id": "msg_1", "text": "hello world"}, ev.TranscriptUser("msg_1", "hello world")),
    "reply.started": ({"reply_id": "resp_1", "item_id": "msg_2"}, ev.ReplyStarted("resp_1", "msg_2")),
    "reply.audio": ({"data": base64.b64encode(b"\x00\x01").decode(), "reply_id": "resp_1"},
                    ev.ReplyAudio(b"\x00\x01", "resp_1")),
    "transcript.agent.delta": ({"reply_id": "resp_1", "item_id": "msg_2", "delta": "fifty ", "start_ms": 1410,
                                "end_ms": 1687}, ev.TranscriptAgentDelta("resp_1", "fifty ", "msg_2", 1410, 1687)),
    "transcript.agent": ({"reply_id": "resp_1", "item_id": "msg_2", "text": "Hi.", "interrupted": True},
                         ev.TranscriptAgent("resp_1", "Hi.", "msg_2", True)),
    "reply.done": ({"reply_id": "resp_1", "status": "interrupted"}, ev.ReplyDone("resp_1", "interrupted")),
    "tool.call": ({"call_id": "chatcmpl-tool-8b", "name": "get_weather", "arguments": {"city": "Paris"}},
                  ev.ToolCall("chatcmpl-tool-8b", "get_weather", {"city": "Paris"})),
    "reply.error": ({"reply_id": "resp_1", "code": "llm_error", "message": "x", "retryable": True,
                     "status_code": 502}, ev.ReplyError("resp_1", "llm_error", "x", True, 502)),
}


@pytest.mark.parametrize("etype", sorted(SERVER_FRAMES))
def test_server_event_round_trip(etype: str) -> None:
    fields, expected = SERVER_FRAMES[etype]
    text = encode_server(etype, 1790461857.96, **fields)
    decoded = decode_server_event(text)
    assert type(decoded) is type(expected)
    assert decoded == expected.__class__(**{**_fields(expected), "timestamp": 1790461857.96})
    assert decoded.raw["type"] == etype
    assert decoded.type == etype


def _fields(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "raw"}  # type: ignore[arg-type]


def test_server_types_cover_protocol_section_4() -> None:
    assert set(SERVER_FRAMES) == set(ev.SERVER_EVENT_TYPES)


def test_unknown_event_keeps_raw_and_unknown_fields_ignored() -> None:
    unknown = decode_server_event('{"type":"reply.thinking","x":1}')
    assert isinstance(unknown, ev.UnknownEvent)
    assert unknown.type == "reply.thinking" and unknown.raw["x"] == 1
    known = decode_server_event('{"type":"reply.done","reply_id":"r","status":"completed","new_field":[1]}')
    assert known == ev.ReplyDone("r", "completed")


def test_drift_tolerated() -> None:
    call = decode_server_event('{"type":"tool.call","call_id":"c","name":"n","args":{"a":1}}')
    assert isinstance(call, ev.ToolCall) and call.arguments == {"a": 1}
    untyped = decode_server_event('{"code":"unauthorized","message":"bad token"}')
    assert isinstance(untyped, ev.SessionError) and untyped.code == "unauthorized"
    typed_error = decode_server_event('{"type":"error","code":"internal_error"}')
    assert isinstance(typed_error, ev.SessionError) and typed_error.code == "internal_error"
    no_status = decode_server_event('{"type":"reply.done","reply_id":"r"}')
    assert isinstance(no_status, ev.ReplyDone) and no_status.status == "completed"
    iso = decode_server_event('{"type":"session.error","code":"x","timestamp":"2026-09-01T00:00:00Z"}')
    assert iso.timestamp == "2026-09-01T00:00:00Z"
    string_args = decode_server_event('{"type":"tool.call","call_id":"c","name":"n","arguments":"{\\"a\\": 2}"}')
    assert isinstance(string_args, ev.ToolCall) and string_args.arguments == {"a": 2}


@pytest.mark.parametrize("frame", ["not json", "[1,2]", "42", '{"type":"reply.audio","data":"!!!"}'])
def test_garbage_server_frames_raise_remote_error(frame: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_server_event(frame)


@pytest.mark.parametrize("frame,code", [
    ("{", "invalid_format"),
    ('{"audio":"AAAA"}', "invalid_format"),
    ('{"type":"nope"}', "invalid_format"),
    ('{"type":"input.audio","audio":"***"}', "invalid_audio"),
    ('{"type":"tool.result","call_id":"c","result":{"a":1}}', "invalid_format"),
])
def test_bad_client_frames_carry_the_error_code(frame: str, code: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_client_event(frame)
    assert info.value.code == code


def test_summarize_raw_replaces_audio_with_byte_count() -> None:
    raw = json.loads(encode_server("reply.audio", 1.0, data=b"\x00" * 2400, reply_id="r"))
    out = summarize_raw(raw)
    assert "data" not in out and out["bytes"] == 2400 and out["reply_id"] == "r"
    other = {"type": "reply.done", "reply_id": "r"}
    assert summarize_raw(other) is other
