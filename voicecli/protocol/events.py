"""Wire events of the Voice Agent API as frozen dataclasses (protocol.md sections 3 and 4).

Sans-I/O: text in, values out; values in, text out. No asyncio, websockets, sounddevice or rich.

Decoding is lenient (design.md principle 2): an unknown ``type`` becomes :class:`UnknownEvent`
keeping the raw dict, unknown fields are ignored, launch-era ``args`` is read as ``arguments``
(protocol.md section 7 item 2), and an error frame without ``type`` (or typed ``error``) is read
as :class:`SessionError` (section 7 item 5). Encoding is strict: an event we build with a bad
value raises :class:`LocalProtocolError` instead of going on the wire.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voicecli.protocol.constants import MAX_JSON_DEPTH, MAX_JSON_INT, MAX_MESSAGE_CHARS

# The public names (what ``from voicecli.protocol import *`` re-exports): events, errors, codecs.
__all__ = [
    "CLIENT_EVENT_TYPES", "SERVER_EVENT_TYPES",
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
    "ClientEvent", "SessionUpdate", "SessionResume", "InputAudio", "ToolResult", "ReplyCreate",
    "ConversationMessage", "SessionEnd", "ReplyCancel",
    "ServerEvent", "SessionReady", "SessionUpdated", "SessionEnded", "SessionError", "InputSpeechStarted",
    "InputSpeechStopped", "TranscriptUserDelta", "TranscriptUser", "ReplyStarted", "ReplyAudio",
    "TranscriptAgentDelta", "TranscriptAgent", "ReplyDone", "ToolCall", "ReplyError", "UnknownEvent",
    "client_event_from_dict", "decode_client_event", "decode_server_event", "encode", "encode_input_audio",
    "encode_server",
    "server_event_dict", "server_event_from_dict", "summarize_raw", "encode_server_event",
    "server_event_to_dict", "safe_json_loads",
]


class ProtocolError(ValueError):
    """Base for protocol violations. ``code`` is a protocol error code where one applies."""

    def __init__(self, message: str, code: str = "invalid_format", param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed."""


def _str(raw: dict[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _opt_num(raw: dict[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _opt_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _timestamp(raw: dict[str, Any]) -> float | str | None:
    ts = raw.get("timestamp")
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float, str)):
        return ts
    return None


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise RemoteProtocolError(f"{what} is not a base64 string", code="invalid_audio")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"{what} is not valid base64: {exc}", code="invalid_audio") from exc


# --------------------------------------------------------------------------------------------
# Client -> server (protocol.md section 3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """3.1: the session config (protocol.md section 5) as a wire dict."""

    session: dict[str, Any]
    type: ClassVar[str] = "session.update"

    def to_dict(self) -> dict[str, Any]:
        if not isinstance(self.session, dict):
            raise LocalProtocolError("session.update needs a session object")
        return {"type": self.type, "session": self.session}


@dataclass(frozen=True, slots=True)
class SessionResume:
    session_id: str
    type: ClassVar[str] = "session.resume"

    def to_dict(self) -> dict[str, Any]:
        if not self.session_id:
            raise LocalProtocolError("session.resume needs a session_id")
        return {"type": self.type, "session_id": self.session_id}


@dataclass(frozen=True, slots=True)
class InputAudio:
    """3.2: raw PCM in the configured input encoding; base64 happens on encode."""

    audio: bytes
    type: ClassVar[str] = "input.audio"

    def to_dict(self) -> dict[str, Any]:
        if not isinstance(self.audio, (bytes, bytearray, memoryview)):
            raise LocalProtocolError("input.audio needs bytes")
        return {"type": self.type, "audio": base64.b64encode(self.audio).decode("ascii")}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """3.3: ``result`` is a JSON-encoded *string*, never an object."""

    call_id: str
    result: str
    is_error: bool = False
    type: ClassVar[str] = "tool.result"

    def to_dict(self) -> dict[str, Any]:
        if not self.call_id:
            raise LocalProtocolError("tool.result needs a call_id")
        if not isinstance(self.result, str):
            raise LocalProtocolError("tool.result 'result' must be a JSON string (protocol.md 3.3)")
        out: dict[str, Any] = {"type": self.type, "call_id": self.call_id, "result": self.result}
        if self.is_error:
            out["is_error"] = True
        return out


@dataclass(frozen=True, slots=True)
class ReplyCreate:
    instructions: str | None = None
    type: ClassVar[str] = "reply.create"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.instructions is not None:
            out["instructions"] = self.instructions
        return out


@dataclass(frozen=True, slots=True)
class ConversationMessage:
    role: str
    content: str
    type: ClassVar[str] = "conversation.message"

    def to_dict(self) -> dict[str, Any]:
        if self.role not in ("user", "system"):
            raise LocalProtocolError(f"conversation.message role must be user or system, not {self.role!r}")
        return {"type": self.type, "role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class SessionEnd:
    type: ClassVar[str] = "session.end"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class ReplyCancel:
    """3.8: schema-only; behaviour on the real service is unknown."""

    reply_id: str
    type: ClassVar[str] = "reply.cancel"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "reply_id": self.reply_id}


ClientEvent = (
    SessionUpdate | SessionResume | InputAudio | ToolResult | ReplyCreate
    | ConversationMessage | SessionEnd | ReplyCancel
)

# --------------------------------------------------------------------------------------------
# Server -> client (protocol.md section 4). Every server event may carry ``timestamp`` and
# keeps the dict it was decoded from in ``raw`` (not compared, not printed).
# --------------------------------------------------------------------------------------------

_RAW: Any = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SessionReady:
    session_id: str
    config: dict[str, Any] | None = None
    expires_at: int | None = None
    resume_token: str = field(default="", repr=False)
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "session.ready"


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    config: dict[str, Any] | None = None
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "session.updated"


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session_duration_seconds: float | None = None
    audio_duration_seconds: float | None = None
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "session.ended"


@dataclass(frozen=True, slots=True)
class SessionError:
    code: str
    message: str = ""
    param: str | None = None
    session_id: str | None = None
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "session.error"


@dataclass(frozen=True, slots=True)
class InputSpeechStarted:
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "input.speech.started"


@dataclass(frozen=True, slots=True)
class InputSpeechStopped:
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "input.speech.stopped"


@dataclass(frozen=True, slots=True)
class TranscriptUserDelta:
    """4.7: ``text`` is cumulative (replace, never concatenate)."""

    item_id: str
    text: str
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "transcript.user.delta"


@dataclass(frozen=True, slots=True)
class TranscriptUser:
    item_id: str
    text: str
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "transcript.user"


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    reply_id: str
    item_id: str = ""
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "reply.started"


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """4.10: ``data`` decoded from base64 (raw PCM16 by default)."""

    data: bytes = field(repr=False)
    reply_id: str = ""
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "reply.audio"


@dataclass(frozen=True, slots=True)
class TranscriptAgentDelta:
    """4.11: ``delta`` is incremental; start_ms/end_ms are relative to the reply's audio."""

    reply_id: str
    delta: str
    item_id: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "transcript.agent.delta"


@dataclass(frozen=True, slots=True)
class TranscriptAgent:
    reply_id: str
    text: str
    item_id: str = ""
    interrupted: bool = False
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "transcript.agent"


@dataclass(frozen=True, slots=True)
class ReplyDone:
    """4.13: ``status`` completed|interrupted (cancelled|failed tolerated; absent = completed)."""

    reply_id: str
    status: str = "completed"
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "reply.done"

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "tool.call"


@dataclass(frozen=True, slots=True)
class ReplyError:
    """4.15: schema-only (newest build)."""

    reply_id: str
    code: str
    message: str = ""
    retryable: bool = False
    status_code: int | None = None
    provider_code: str | None = None
    provider_param: str | None = None
    timestamp: float | str | None = None
    raw: dict[str, Any] = _RAW
    type: ClassVar[str] = "reply.error"


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type this build does not know; ``raw`` keeps it whole."""

    event_type: str
    raw: dict[str, Any] = _RAW
    timestamp: float | str | None = None

    @property
    def type(self) -> str:
        return self.event_type


ServerEvent = (
    SessionReady | SessionUpdated | SessionEnded | SessionError | InputSpeechStarted
    | InputSpeechStopped | TranscriptUserDelta | TranscriptUser | ReplyStarted | ReplyAudio
    | TranscriptAgentDelta | TranscriptAgent | ReplyDone | ToolCall | ReplyError | UnknownEvent
)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


# -- the safe JSON reader (issue 12 item 4) -----------------------------------------------------
# Safe by construction: what leaves :func:`safe_json_loads` nests at most MAX_JSON_DEPTH deep and
# holds only finite numbers, integers within MAX_JSON_INT, so later code may convert with
# ``float()``/``int()`` and recurse freely; and the only exception a frame can raise is
# RemoteProtocolError, with ``param`` naming where it went wrong. NaN/Infinity are refused by the
# parser's constant hook; the C parser's own recursion guard (RecursionError) is turned into the
# depth error; one iterative walk checks depth and number bounds of the result. An audio frame is a
# flat object: the walk is one pass over its four values (bench/decode_bench.py measures it).

_TOKEN_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


class _Refused(Exception):
    """A NaN/Infinity constant; turned into RemoteProtocolError with its path."""


def _no_constant(name: str) -> Any:
    raise _Refused(name)


class _Bad:
    """Stands for a refused constant in the second, diagnostic parse."""


_BAD = _Bad()
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_DIAGNOSE = json.JSONDecoder(parse_constant=lambda name: _BAD)


def _path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return _strip_session(out)


def _strip_session(path: str) -> str:
    """Params of ``session.update`` are relative to its ``session`` object (as validation's)."""
    return path[len("session."):] if path.startswith("session.") else path


def _deep_path(text: str) -> str:
    """The path of the container that first nests deeper than MAX_JSON_DEPTH (at most 8 parts);
    used only for a frame the parser refused as too deep."""
    stack: list[list[Any]] = []        # [kind, key or index, expecting a key]
    for match in _TOKEN_RE.finditer(text):
        tok = match.group()
        if tok == "[" or tok == "{":
            if len(stack) >= MAX_JSON_DEPTH:
                break
            stack.append(["[", 0, False] if tok == "[" else ["{", None, True])
        elif tok == "]" or tok == "}":
            if stack:
                stack.pop()
        elif tok == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            elif stack:
                stack[-1][2] = True
        elif tok == ":":
            if stack:
                stack[-1][2] = False
        elif stack and stack[-1][0] == "{" and stack[-1][2]:
            stack[-1][1] = tok[1:-1][:40]
    return _path([entry[1] for entry in stack if entry[1] is not None][:8])


def _too_deep(param: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"the message nests deeper than {MAX_JSON_DEPTH} levels",
                               param=param or None)


def _bad_number(value: Any, parts: list[str | int]) -> RemoteProtocolError:
    where = _path(parts)
    shown = f"{value:.3g}" if isinstance(value, float) else (f"{str(value)[:20]}..." if
                                                             abs(value) > 10**20 else str(value))
    what = "numbers must be finite" if isinstance(value, float) else \
        f"integers are limited to +-{MAX_JSON_INT}"
    label = f"'{where}': " if where else ""
    return RemoteProtocolError(f"{label}{shown} is out of range ({what})", code="invalid_value",
                               param=where or None)


def _number_ok(value: Any) -> bool:
    if type(value) is float:
        return value - value == 0.0                 # false for inf and nan
    return bool(-MAX_JSON_INT <= value <= MAX_JSON_INT)


def _check_tree(obj: Any) -> None:
    """Depth and number bounds of a parsed document, iteratively (never recurses)."""
    todo: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while todo:
        node, where = todo.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if kind is dict or kind is list:
                if len(where) + 2 > MAX_JSON_DEPTH:      # the child's depth (the root is 1)
                    raise _too_deep(_path([*where, key][:8]))
                todo.append((value, [*where, key]))
            elif kind is float or kind is int:
                if not _number_ok(value):
                    raise _bad_number(value, [*where, key])


def safe_json_loads(text: str | bytes) -> Any:
    """``json.loads`` that raises only RemoteProtocolError: bad JSON, nesting deeper than
    MAX_JSON_DEPTH, NaN/Infinity, floats that overflow (1e999), integers beyond MAX_JSON_INT."""
    if type(text) is not str:
        if not isinstance(text, (bytes, bytearray, memoryview)):
            raise RemoteProtocolError("frame is not text")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"frame is not UTF-8 text: {exc.reason}") from None
    try:
        obj = _DECODER.decode(text)
    except _Refused as refused:
        try:
            where = _find_bad(_DIAGNOSE.decode(text))
        except (ValueError, RecursionError):
            where = ""
        label = f"'{where}': " if where else ""
        raise RemoteProtocolError(f"{label}{refused} is not a JSON number (numbers must be finite)",
                                  param=where or None) from None
    except RecursionError:
        raise _too_deep(_deep_path(text)) from None
    except ValueError as exc:
        raise RemoteProtocolError(f"frame is not JSON: {str(exc)[:200]}") from None
    if type(obj) is dict:
        for value in obj.values():     # the hot path: a flat object of strings and a timestamp
            kind = type(value)
            if kind is not str and (kind is not float or value - value != 0.0):
                _check_tree(obj)
                break
    elif type(obj) is list:
        _check_tree(obj)
    elif (type(obj) is float or type(obj) is int) and not _number_ok(obj):
        raise _bad_number(obj, [])
    return obj


def _find_bad(obj: Any) -> str:
    """The path of the first refused constant in a diagnostic parse (iterative)."""
    todo: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while todo:
        node, where = todo.pop()
        if node is _BAD:
            return _path(where)
        if isinstance(node, dict):
            todo.extend((v, [*where, k]) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            todo.extend((v, [*where, i]) for i, v in reversed(list(enumerate(node))))
    return ""


def _loads(text: str | bytes) -> dict[str, Any]:
    obj = safe_json_loads(text)
    if not isinstance(obj, dict):
        raise RemoteProtocolError("frame is not a JSON object")
    return obj


def _arguments(raw: dict[str, Any]) -> dict[str, Any]:
    args = raw.get("arguments", raw.get("args"))
    if isinstance(args, str):  # tolerate OpenAI-style JSON-string arguments
        try:
            args = safe_json_loads(args) if args.strip() else {}
        except RemoteProtocolError:
            return {"_raw": args}
    return args if isinstance(args, dict) else {}


def server_event_from_dict(raw: dict[str, Any]) -> ServerEvent:
    """Build a server event from a decoded JSON object (lenient)."""
    etype = raw.get("type")
    ts = _timestamp(raw)
    if etype is None or etype in ("error", "session.error"):
        if etype is None and "code" not in raw:
            return UnknownEvent("", raw, ts)
        code = _str(raw, "code", "unknown_error") or "unknown_error"
        return SessionError(code, _str(raw, "message"), _opt_str(raw, "param"),
                            _opt_str(raw, "session_id"), ts, raw)
    if not isinstance(etype, str):
        return UnknownEvent(str(etype), raw, ts)
    if etype == "reply.audio":
        data = raw.get("data", raw.get("audio", ""))
        return ReplyAudio(_b64decode(data, "reply.audio data"), _str(raw, "reply_id"), ts, raw)
    if etype == "transcript.agent.delta":
        delta = raw.get("delta", raw.get("text", ""))
        return TranscriptAgentDelta(_str(raw, "reply_id"), delta if isinstance(delta, str) else str(delta),
                                    _str(raw, "item_id"), _opt_int(raw, "start_ms"),
                                    _opt_int(raw, "end_ms"), ts, raw)
    if etype == "session.ready":
        cfg = raw.get("config")
        return SessionReady(_str(raw, "session_id"), cfg if isinstance(cfg, dict) else None,
                            _opt_int(raw, "expires_at"), _str(raw, "resume_token"), ts, raw)
    if etype == "session.updated":
        cfg = raw.get("config")
        return SessionUpdated(cfg if isinstance(cfg, dict) else None, ts, raw)
    if etype == "session.ended":
        return SessionEnded(_opt_num(raw, "session_duration_seconds"),
                            _opt_num(raw, "audio_duration_seconds"), ts, raw)
    if etype == "input.speech.started":
        return InputSpeechStarted(ts, raw)
    if etype == "input.speech.stopped":
        return InputSpeechStopped(ts, raw)
    if etype == "transcript.user.delta":
        return TranscriptUserDelta(_str(raw, "item_id"), _str(raw, "text"), ts, raw)
    if etype == "transcript.user":
        return TranscriptUser(_str(raw, "item_id"), _str(raw, "text"), ts, raw)
    if etype == "reply.started":
        return ReplyStarted(_str(raw, "reply_id"), _str(raw, "item_id"), ts, raw)
    if etype == "transcript.agent":
        return TranscriptAgent(_str(raw, "reply_id"), _str(raw, "text"), _str(raw, "item_id"),
                               raw.get("interrupted") is True, ts, raw)
    if etype == "reply.done":
        return ReplyDone(_str(raw, "reply_id"), _str(raw, "status", "completed") or "completed", ts, raw)
    if etype == "tool.call":
        return ToolCall(_str(raw, "call_id"), _str(raw, "name"), _arguments(raw), ts, raw)
    if etype == "reply.error":
        return ReplyError(_str(raw, "reply_id"), _str(raw, "code"), _str(raw, "message"),
                          raw.get("retryable") is True, _opt_int(raw, "status_code"),
                          _opt_str(raw, "provider_code"), _opt_str(raw, "provider_param"), ts, raw)
    return UnknownEvent(etype, raw, ts)


def decode_server_event(text: str | bytes) -> ServerEvent:
    """Decode one server frame. Raises :class:`RemoteProtocolError` for non-JSON / non-object
    frames or undecodable audio; everything else decodes (unknown types included)."""
    return server_event_from_dict(_loads(text))


def client_event_from_dict(raw: dict[str, Any]) -> ClientEvent:
    """Build a client event (server side). Raises RemoteProtocolError with the protocol error code
    the server should answer with (``invalid_format`` or ``invalid_audio``)."""
    etype = raw.get("type")
    if not isinstance(etype, str) or not etype:
        raise RemoteProtocolError("message has no 'type'")
    if etype == "input.audio":
        return InputAudio(_b64decode(raw.get("audio"), "input.audio 'audio'"))
    if etype == "session.update":
        session = raw.get("session", {})
        if not isinstance(session, dict):
            raise RemoteProtocolError("'session' must be an object", code="invalid_config", param="session")
        return SessionUpdate(session)
    if etype == "session.resume":
        sid = raw.get("session_id")
        if not isinstance(sid, str) or not sid:
            raise RemoteProtocolError("session.resume needs a session_id", param="session_id")
        return SessionResume(sid)
    if etype == "tool.result":
        call_id, result = raw.get("call_id"), raw.get("result")
        if not isinstance(call_id, str) or not call_id:
            raise RemoteProtocolError("tool.result needs a call_id", param="call_id")
        if not isinstance(result, str):
            raise RemoteProtocolError("tool.result 'result' must be a JSON-encoded string", param="result")
        return ToolResult(call_id, result, raw.get("is_error") is True)
    if etype == "reply.create":
        instr = raw.get("instructions")
        if isinstance(instr, str) and len(instr) > MAX_MESSAGE_CHARS:
            raise RemoteProtocolError(f"'instructions' allows at most {MAX_MESSAGE_CHARS:,} characters "
                                      f"(got {len(instr):,})", code="invalid_value", param="instructions")
        return ReplyCreate(instr if isinstance(instr, str) else None)
    if etype == "conversation.message":
        role, content = raw.get("role"), raw.get("content")
        if role not in ("user", "system"):
            raise RemoteProtocolError("conversation.message needs role user or system",
                                      code="invalid_value", param="role")
        if not isinstance(content, str):
            raise RemoteProtocolError("conversation.message needs string content",
                                      code="invalid_value", param="content")
        if len(content) > MAX_MESSAGE_CHARS:
            raise RemoteProtocolError(f"'content' allows at most {MAX_MESSAGE_CHARS:,} characters "
                                      f"(got {len(content):,})", code="invalid_value", param="content")
        return ConversationMessage(role, content)
    if etype == "session.end":
        return SessionEnd()
    if etype == "reply.cancel":
        return ReplyCancel(_str(raw, "reply_id"))
    raise RemoteProtocolError(f"unknown message type {etype!r}", param="type")


def decode_client_event(text: str | bytes) -> ClientEvent:
    """Decode one client frame (server side); see :func:`client_event_from_dict`."""
    return client_event_from_dict(_loads(text))


# --------------------------------------------------------------------------------------------
# Encoding (strict)
# --------------------------------------------------------------------------------------------


def encode(event: ClientEvent) -> str:
    """Encode a client event to a JSON text frame. Raises LocalProtocolError on bad values."""
    if isinstance(event, InputAudio):
        return encode_input_audio(event.audio)
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)


def encode_input_audio(pcm: bytes | bytearray | memoryview) -> str:
    """The ``input.audio`` frame of ``pcm``: the JSON of ``InputAudio(pcm).to_dict()``, character for
    character, built as text (base64 needs no JSON escaping) for the live mic path (~50 a second): no
    event object, dict or JSON encoder per chunk (``json.dumps`` with non-default options makes a new
    encoder every call; issue 10, Cost)."""
    if not isinstance(pcm, (bytes, bytearray, memoryview)):
        raise LocalProtocolError("input.audio needs bytes")
    return '{"type":"input.audio","audio":"' + base64.b64encode(pcm).decode("ascii") + '"}'


def server_event_dict(event_type: str, timestamp: float, **fields: Any) -> dict[str, Any]:
    """Build any server frame dict, unchecked: fields then ``type`` and ``timestamp``. For tests and
    for test doubles of hostile or quirky servers; the local server encodes strictly with
    :func:`encode_server_event`. ``bytes`` values are base64-encoded (``reply.audio`` ``data``)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = base64.b64encode(value).decode("ascii")
        out[key] = value
    out["type"] = event_type
    out["timestamp"] = timestamp
    return out


def encode_server(event_type: str, timestamp: float, **fields: Any) -> str:
    """:func:`server_event_dict` as a JSON text frame (unchecked; see there)."""
    return json.dumps(server_event_dict(event_type, timestamp, **fields), separators=(",", ":"),
                      ensure_ascii=False)


def summarize_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """A server event dict for ``--json`` output: audio payloads replaced by byte counts, the
    ``resume_token`` credential of ``session.ready`` redacted (tokens never reach output)."""
    if raw.get("type") != "reply.audio" and "audio" not in raw:
        if raw.get("resume_token"):
            return {**raw, "resume_token": "<redacted>"}
        return raw
    out = dict(raw)
    for key in ("data", "audio"):
        value = out.pop(key, None)
        if isinstance(value, str):
            out["bytes"] = len(value) * 3 // 4 - value[-2:].count("=")
    return out


SERVER_EVENT_TYPES: tuple[str, ...] = (
    "session.ready", "session.updated", "session.ended", "session.error", "input.speech.started",
    "input.speech.stopped", "transcript.user.delta", "transcript.user", "reply.started",
    "reply.audio", "transcript.agent.delta", "transcript.agent", "reply.done", "tool.call",
    "reply.error",
)
CLIENT_EVENT_TYPES: tuple[str, ...] = (
    "session.update", "session.resume", "input.audio", "tool.result", "reply.create",
    "conversation.message", "session.end", "reply.cancel",
)


# --------------------------------------------------------------------------------------------
# Strict server-event encoding (the local server's side of design.md principle 2)
# --------------------------------------------------------------------------------------------

# event type -> fields that must be non-empty strings on the wire (protocol.md section 4)
_REQUIRED_STR: dict[str, tuple[str, ...]] = {
    "session.ready": ("session_id",),
    "session.error": ("code", "message"),
    "transcript.user.delta": ("item_id",),
    "transcript.user": ("item_id",),
    "reply.started": ("reply_id", "item_id"),
    "reply.audio": ("reply_id",),
    "transcript.agent.delta": ("reply_id", "item_id"),
    "transcript.agent": ("reply_id", "item_id"),
    "reply.done": ("reply_id",),
    "tool.call": ("call_id", "name"),
    "reply.error": ("reply_id", "code"),
}
_REPLY_STATUSES = frozenset({"completed", "interrupted", "cancelled", "failed"})
_NOT_ON_WIRE = frozenset({"raw", "timestamp", "event_type"})


def _check_server_event(event: ServerEvent, out: dict[str, Any]) -> None:
    etype = event.type
    for name in _REQUIRED_STR.get(etype, ()):
        if not isinstance(out.get(name), str) or not out[name]:
            raise LocalProtocolError(f"{etype} needs a non-empty string {name!r}", param=name)
    if etype == "reply.done" and out.get("status") not in _REPLY_STATUSES:
        raise LocalProtocolError(f"reply.done status must be one of {sorted(_REPLY_STATUSES)}",
                                 param="status")
    if etype == "transcript.agent" and not isinstance(out.get("interrupted"), bool):
        raise LocalProtocolError("transcript.agent interrupted must be a boolean", param="interrupted")
    if etype == "tool.call" and not isinstance(out.get("arguments"), dict):
        raise LocalProtocolError("tool.call arguments must be an object (4.14)", param="arguments")
    if etype == "reply.audio" and not isinstance(out.get("data"), (bytes, bytearray, memoryview)):
        raise LocalProtocolError("reply.audio data must be bytes", param="data")
    for name in ("start_ms", "end_ms", "expires_at"):
        value = out.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise LocalProtocolError(f"{etype} {name} must be an integer or null", param=name)


def server_event_to_dict(event: ServerEvent, timestamp: float) -> dict[str, Any]:
    """The wire dict of a server event: its fields (nullable ones as explicit ``null``, protocol.md
    2), then ``type`` and a float ``timestamp``; ``bytes`` base64-encoded (``reply.audio`` ``data``).

    Strict: a missing id, a bad status or a non-bytes audio payload raises
    :class:`LocalProtocolError` (a bug in the sender). An :class:`UnknownEvent` is sent as its
    ``raw`` fields under its ``event_type`` (only the local server's fault switches do that)."""
    if isinstance(event, UnknownEvent):
        if not event.event_type:
            raise LocalProtocolError("an unknown event needs a type", param="type")
        out = {k: v for k, v in event.raw.items() if k not in ("type", "timestamp")}
    else:
        out = {f: getattr(event, f) for f in event.__dataclass_fields__ if f not in _NOT_ON_WIRE}
        _check_server_event(event, out)
    for key, value in out.items():
        if isinstance(value, (bytes, bytearray, memoryview)):
            out[key] = base64.b64encode(value).decode("ascii")
    out["type"] = event.type
    out["timestamp"] = float(timestamp)
    return out


def encode_server_event(event: ServerEvent, timestamp: float) -> str:
    """Encode a server event to a JSON text frame (see :func:`server_event_to_dict`)."""
    return json.dumps(server_event_to_dict(event, timestamp), separators=(",", ":"), ensure_ascii=False)
