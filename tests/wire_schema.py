"""A STRICT schema of the Voice Agent API wire, written from protocol.md sections 2-5 (issue 9).

Data, not code: one JSON Schema (draft 2020-12) per event type, both directions. Every field is
typed, unknown fields are refused (``additionalProperties: false``), required fields must be there.
Where protocol.md leaves a choice open, this schema takes the form the local server promises
(6.10 checklist): every server event carries a float ``timestamp``; ids are ``sess_``/``resp_``/
``msg_`` + 32 hex; nullable fields are explicit ``null`` (section 2); the resolved config of
``session.ready``/``session.updated`` has every 5.10 field.

The same schema checks what the local server sends (tests/integration/test_wire_schema.py drives
real sessions) and what our client sends (a recording loopback proxy in front of the server).
Peers (AssemblyAI's SDK) parse with generated models of the same shape; this stands in for them.

Use :func:`check_server` / :func:`check_client`; each raises AssertionError naming the event and
every violation.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from voicecli.protocol.config import KNOWN_VOICES

HEX32 = "[0-9a-f]{32}"
B64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
STR: dict[str, Any] = {"type": "string"}
NONEMPTY: dict[str, Any] = {"type": "string", "minLength": 1}
NULL_STR: dict[str, Any] = {"type": ["string", "null"]}
NULL_NUM: dict[str, Any] = {"type": ["number", "null"]}
NULL_INT: dict[str, Any] = {"type": ["integer", "null"]}
NULL_BOOL: dict[str, Any] = {"type": ["boolean", "null"]}
SESSION_ID: dict[str, Any] = {"type": "string", "pattern": f"^sess_{HEX32}$"}
REPLY_ID: dict[str, Any] = {"type": "string", "pattern": f"^resp_{HEX32}$"}
ITEM_ID: dict[str, Any] = {"type": "string", "pattern": f"^msg_{HEX32}$"}
TIMESTAMP: dict[str, Any] = {"type": "number"}           # float epoch seconds (section 2, 6.10)
ENCODINGS = ["audio/pcm", "audio/pcmu", "audio/pcma"]
ERROR_CODES = [   # 4.3, the union of sources (casing as the schema/token docs: lower case)
    "unauthorized", "UNAUTHORIZED", "FORBIDDEN", "server_error", "INTERNAL_ERROR", "internal_error",
    "at_capacity", "concurrency_exceeded", "agent_init_failed", "agent_timeout", "agent_not_found",
    "agent_id_not_first", "session_not_found", "session_forbidden", "session_expired",
    "invalid_format", "invalid_audio", "invalid_value", "invalid_config", "immutable_field",
    "audio_rate_violation", "invalid_webhook",
]


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A closed object: ``required`` fields must be present, ``optional`` may be, nothing else."""
    props = {**required, **(optional or {})}
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [{"type": "null"}, schema]}


def const(value: str) -> dict[str, Any]:
    return {"const": value}


# -- session configuration (section 5) ----------------------------------------------------------

# 5.9: a format as sent; resolved: PCM has sample_rate 24000, telephony encodings have none
FORMAT_IN = obj({}, {"encoding": {"enum": ENCODINGS}, "sample_rate": {"enum": [24000, 8000]}})
FORMAT_RESOLVED = {"oneOf": [
    obj({"encoding": const("audio/pcm"), "sample_rate": {"const": 24000}}),
    obj({"encoding": {"enum": ["audio/pcmu", "audio/pcma"]}}),
]}
UNINTERRUPTIBLE = {"type": "array", "items": {"enum": ["greeting", "dtmf_prompt", "tool_refused_ask"]}}
# 5.4 (as sent: any subset; resolved: every key, unset ones null)
TD_FIELDS: dict[str, Any] = {
    "vad_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "min_silence": {"type": "integer", "minimum": 50, "maximum": 10000},
    "max_silence": {"type": "integer", "minimum": 50, "maximum": 10000},
    "interrupt_response": {"type": "boolean"},
    "interruption_delay": {"type": "integer", "minimum": 0, "maximum": 1000},
    "type": {"enum": ["server_vad", "semantic_vad"]},
    "uninterruptible_turns": UNINTERRUPTIBLE,
}
TD_IN = obj({}, TD_FIELDS)
TD_RESOLVED = obj({k: nullable(v) for k, v in TD_FIELDS.items()})
# 5.3
INPUT_FIELDS: dict[str, Any] = {
    "keyterms": {"type": "array", "items": STR, "maxItems": 100},
    "transcription_mode": {"enum": ["balanced", "min_latency", "max_accuracy"]},
    "transcription_prompt": {"type": "string", "maxLength": 1750},
    "language_codes": {"type": "array", "items": STR},
    "voice_focus": {"enum": ["near-field", "far-field"]},
    "voice_focus_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    "continuous_partials": {"type": "boolean"},
}
INPUT_IN = {"oneOf": [
    obj({}, {"type": const("audio"), "format": FORMAT_IN, "turn_detection": nullable(TD_IN),
             **{k: nullable(v) for k, v in INPUT_FIELDS.items()}}),
    obj({"type": const("text")}),
]}
INPUT_RESOLVED = {"oneOf": [
    obj({"type": const("audio"), "format": FORMAT_RESOLVED, "turn_detection": nullable(TD_RESOLVED),
         **{k: nullable(v) for k, v in INPUT_FIELDS.items()}}),
    obj({"type": const("text")}),
]}
# 5.5
VOICE = {"enum": list(KNOWN_VOICES)}
VOLUME = {"type": "number", "minimum": 0, "maximum": 100}
OUTPUT_IN = {"oneOf": [
    obj({}, {"type": const("audio"), "voice": VOICE, "format": FORMAT_IN, "volume": nullable(VOLUME)}),
    obj({"type": const("text")}),
]}
OUTPUT_RESOLVED = {"oneOf": [
    obj({"type": const("audio"), "voice": VOICE, "format": FORMAT_RESOLVED, "volume": nullable(VOLUME)}),
    obj({"type": const("text")}),
]}
# 5.7: parameters is a JSON Schema object (its own keywords are open)
PARAMETERS_IN = {"type": "object", "properties": {
    "type": const("object"), "properties": {"type": "object", "additionalProperties": {"type": "object"}},
    "required": {"type": "array", "items": STR}}}
PARAMETERS_RESOLVED = {**PARAMETERS_IN, "required": ["type", "properties", "required"]}
TOOL_EXTRAS: dict[str, Any] = {
    "response_instructions": obj({}, {"success": {"type": "string", "maxLength": 500},
                                      "error": {"type": "string", "maxLength": 500}}),
    "http": {"type": "object"},
    "session_update": obj({}, {"enabled": {"type": "boolean"}}),
    "deployment_id": STR, "image_tag": STR,
}
EXECUTION_MODE = {"enum": ["interactive", "hold"]}
TIMEOUT = {"type": "number", "minimum": 1, "maximum": 300}
TOOL_IN = obj({"type": const("function"), "name": NONEMPTY},
              {"description": STR, "parameters": PARAMETERS_IN, "execution_mode": EXECUTION_MODE,
               "timeout_seconds": TIMEOUT, **TOOL_EXTRAS})
TOOL_RESOLVED = obj({"type": const("function"), "name": NONEMPTY, "description": STR,
                     "parameters": PARAMETERS_RESOLVED, "execution_mode": EXECUTION_MODE,
                     "timeout_seconds": TIMEOUT}, TOOL_EXTRAS)
LLM_IN = obj({"base_url": {"type": "string", "pattern": "^https?://"}},
             {"model": STR, "api_key": STR, "reasoning_effort": STR})
LLM_RESOLVED = obj({"base_url": {"type": "string", "pattern": "^https?://"}, "model": NULL_STR})
WEBHOOK_IN = obj({"url": {"type": "string", "pattern": "^https?://"}},
                 {"events": {"type": "array", "items": NONEMPTY}, "secret": STR})
WEBHOOK_RESOLVED = obj({"url": {"type": "string", "pattern": "^https?://"},
                        "events": {"type": "array", "items": NONEMPTY}})     # the secret is write-only

SESSION_IN = {"oneOf": [
    obj({"agent_id": NONEMPTY}),                                              # 5.1 stored agent
    {**obj({}, {"system_prompt": STR, "greeting": STR, "input": INPUT_IN, "output": OUTPUT_IN,
                "tools": {"type": "array", "items": TOOL_IN}, "llm": {"type": "array", "items": LLM_IN,
                                                                       "maxItems": 1},
                "pre_connect_requests": {"type": "array", "items": {"type": "object"}},
                "webhook": WEBHOOK_IN}), "not": {"required": ["agent_id"]}},
]}
CONFIG = obj({"id": SESSION_ID, "system_prompt": STR, "greeting": NULL_STR, "input": INPUT_RESOLVED,
              "output": OUTPUT_RESOLVED, "tools": {"type": "array", "items": TOOL_RESOLVED},
              "llm": {"type": "array", "items": LLM_RESOLVED, "maxItems": 1},
              "pre_connect_requests": {"type": "array", "items": {"type": "object"}}},
             {"webhook": WEBHOOK_RESOLVED})


# -- server -> client (section 4) ---------------------------------------------------------------

def _server(fields: dict[str, Any]) -> dict[str, Any]:
    return obj({**fields, "timestamp": TIMESTAMP})


SERVER_EVENTS: dict[str, dict[str, Any]] = {
    "session.ready": _server({"session_id": SESSION_ID, "config": CONFIG, "expires_at": {"type": "integer"},
                              "resume_token": NONEMPTY}),
    "session.updated": _server({"config": CONFIG}),
    "session.error": _server({"code": {"enum": ERROR_CODES}, "message": NONEMPTY, "param": NULL_STR,
                              "session_id": nullable(SESSION_ID)}),
    "session.ended": _server({"session_duration_seconds": {"type": "number", "minimum": 0},
                              "audio_duration_seconds": nullable({"type": "number", "minimum": 0})}),
    "input.speech.started": _server({}),
    "input.speech.stopped": _server({}),
    "transcript.user.delta": _server({"item_id": ITEM_ID, "text": STR}),
    "transcript.user": _server({"item_id": ITEM_ID, "text": STR}),
    "reply.started": _server({"reply_id": REPLY_ID, "item_id": ITEM_ID}),
    "reply.audio": _server({"data": {"type": "string", "minLength": 1, "pattern": B64},
                            "reply_id": REPLY_ID}),
    "transcript.agent.delta": _server({"reply_id": REPLY_ID, "item_id": ITEM_ID, "delta": NONEMPTY,
                                       "start_ms": NULL_INT, "end_ms": NULL_INT}),
    "transcript.agent": _server({"reply_id": REPLY_ID, "item_id": ITEM_ID, "text": STR,
                                 "interrupted": {"type": "boolean"}}),
    "reply.done": _server({"reply_id": REPLY_ID, "status": {"enum": ["completed", "interrupted"]}}),
    "tool.call": _server({"call_id": NONEMPTY, "name": NONEMPTY, "arguments": {"type": "object"}}),
    "reply.error": _server({"reply_id": REPLY_ID, "code": NONEMPTY, "message": STR,
                            "retryable": {"type": "boolean"}, "status_code": NULL_INT,
                            "provider_code": NULL_STR, "provider_param": NULL_STR}),
}

# -- client -> server (section 3) ---------------------------------------------------------------

CLIENT_EVENTS: dict[str, dict[str, Any]] = {
    "session.update": obj({"session": SESSION_IN}),
    "session.resume": obj({"session_id": SESSION_ID}),
    "input.audio": obj({"audio": {"type": "string", "minLength": 1, "pattern": B64}}),
    "tool.result": obj({"call_id": NONEMPTY, "result": STR}, {"is_error": {"type": "boolean"}}),
    "reply.create": obj({}, {"instructions": STR}),
    "conversation.message": obj({"role": {"enum": ["user", "system"]}, "content": STR}),
    "session.end": obj({}),
    "reply.cancel": obj({"reply_id": REPLY_ID}),
}


def _typed(events: dict[str, dict[str, Any]]) -> dict[str, Draft202012Validator]:
    out = {}
    for name, schema in events.items():
        full = {**schema, "properties": {**schema["properties"], "type": const(name)},
                "required": ["type", *schema["required"]]}
        Draft202012Validator.check_schema(full)
        out[name] = Draft202012Validator(full)
    return out


_SERVER = _typed(SERVER_EVENTS)
_CLIENT = _typed(CLIENT_EVENTS)


def _check(validators: dict[str, Draft202012Validator], message: Any, side: str) -> str:
    assert isinstance(message, dict), f"{side} message is not a JSON object: {message!r:.200}"
    etype = message.get("type")
    assert etype in validators, f"{side} message has unknown type {etype!r}: {message!r:.300}"
    errors = sorted(validators[etype].iter_errors(message), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
                          for e in errors[:6])
        raise AssertionError(f"{side} {etype} violates the wire schema: {shown}\n{message!r:.1500}")
    return str(etype)


def check_server(message: Any) -> str:
    """Validate one server -> client message (a decoded dict); returns its type."""
    return _check(_SERVER, message, "server")


def check_client(message: Any) -> str:
    """Validate one client -> server message (a decoded dict); returns its type."""
    return _check(_CLIENT, message, "client")
