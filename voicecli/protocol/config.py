"""The session configuration of protocol.md section 5: typed values, wire form, validation.

One validator serves both sides: the local server answers a bad ``session.update`` with the
``session.error`` it returns, and the client checks its own config before connecting so a
value the server would reject fails fast (issue: config).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from voicecli.protocol.constants import (
    DEFAULT_TOOL_TIMEOUT_S,
    MAX_GREETING_CHARS,
    MAX_KEYTERM_CHARS,
    MAX_KEYTERMS,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TOOL_DESCRIPTION_CHARS,
    MAX_TOOL_NAME_CHARS,
    MAX_TOOL_PARAMETERS_CHARS,
    MAX_TOOL_PARAMETERS_DEPTH,
    MAX_TOOLS,
    MAX_TRANSCRIPTION_PROMPT_CHARS,
)

PCM_RATE = 24000
TELEPHONY_RATE = 8000     # audio/pcmu, audio/pcma (5.9)
SECTION_TYPES = ("audio", "text")
ENCODINGS = ("audio/pcm", "audio/pcmu", "audio/pcma")
TRANSCRIPTION_MODES = ("balanced", "min_latency", "max_accuracy")
VOICE_FOCUS = ("near-field", "far-field")
TURN_TYPES = ("server_vad", "semantic_vad")
UNINTERRUPTIBLE = ("greeting", "dtmf_prompt", "tool_refused_ask")
EXECUTION_MODES = ("interactive", "hold")

# protocol.md 5.6: Sept 2026 catalog, then the launch catalog still seen accepted live.
VOICES_SEPT_2026 = (
    "alba", "eve", "george", "jane", "jean", "mary", "michael", "anna", "charles", "paul", "vera",
    "lola", "giovanni", "juergen", "rafael", "estelle",
)
VOICES_LAUNCH = (
    "ivy", "james", "tyler", "winter", "autumn", "sam", "mia", "bella", "david", "jack", "kyle",
    "helen", "martha", "river", "emma", "victor", "eleanor", "sophie", "oliver", "arjun", "ethan",
    "mei", "dmitri", "lukas", "lena", "pierre", "mina", "joon", "ren", "hana", "giulia", "luca",
    "lucia", "mateo", "diego",
)
KNOWN_VOICES = VOICES_SEPT_2026 + VOICES_LAUNCH
DEFAULT_VOICE = "alba"

SESSION_KEYS = ("agent_id", "system_prompt", "greeting", "input", "output", "tools", "llm",
                "pre_connect_requests", "webhook")
IMMUTABLE_PATHS = ("greeting", "output.voice", "output.format", "output.type")
# The keys each object of section 5 knows ("type" first in the sections: the rest are audio keys).
INPUT_KEYS = ("type", "format", "keyterms", "transcription_mode", "transcription_prompt",
              "language_codes", "voice_focus", "voice_focus_threshold", "continuous_partials",
              "turn_detection")
OUTPUT_KEYS = ("type", "voice", "format", "volume")
FORMAT_KEYS = ("encoding", "sample_rate")
TURN_DETECTION_KEYS = ("vad_threshold", "min_silence", "max_silence", "interrupt_response",
                       "interruption_delay", "type", "uninterruptible_turns")
TOOL_KEYS = ("type", "name", "description", "parameters", "execution_mode", "timeout_seconds",
             "response_instructions", "http", "session_update", "deployment_id", "image_tag")
LLM_KEYS = ("base_url", "model", "api_key", "reasoning_effort")
WEBHOOK_KEYS = ("url", "events", "secret")


@dataclass(frozen=True, slots=True)
class Problem:
    """A validation failure as the server reports it (``session.error`` fields)."""

    code: str
    param: str | None
    message: str


@dataclass(frozen=True, slots=True)
class TurnDetection:
    vad_threshold: float | None = None
    min_silence: int | None = None
    max_silence: int | None = None
    interrupt_response: bool | None = None
    interruption_delay: int | None = None
    type: str | None = None
    uninterruptible_turns: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # keys this build does not model


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: str | None = None
    sample_rate: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InputConfig:
    format: AudioFormat | None = None
    keyterms: tuple[str, ...] | None = None
    transcription_mode: str | None = None
    transcription_prompt: str | None = None
    language_codes: tuple[str, ...] | None = None
    voice_focus: str | None = None
    voice_focus_threshold: float | None = None
    continuous_partials: bool | None = None
    turn_detection: TurnDetection | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. type


@dataclass(frozen=True, slots=True)
class OutputConfig:
    voice: str | None = None
    format: AudioFormat | None = None
    volume: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. type


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """5.7: a client-side function tool as declared to the server (flat schema)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    execution_mode: str | None = None
    timeout_seconds: float | None = None
    response_instructions: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. http, session_update


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """The ``session`` object of ``session.update`` (protocol.md 5), typed. Keys this build does not
    model (``llm``, ``webhook``, ``pre_connect_requests``, a tool's ``http``...) ride in ``extra`` at
    each level, so ``from_wire(d).to_wire() == d`` for any validated ``d``."""

    agent_id: str | None = None
    system_prompt: str | None = None
    greeting: str | None = None
    input: InputConfig | None = None
    output: OutputConfig | None = None
    tools: tuple[ToolSpec, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """Only what is set (protocol.md 3.1: every field is optional; send what you set)."""
        wire: dict[str, Any] = _to_wire(self)
        return wire

    @classmethod
    def from_wire(cls, session: dict[str, Any]) -> SessionConfig:
        """Read a (validated) wire ``session`` dict."""
        typed: SessionConfig = _from_wire(cls, session)
        return typed


# Which fields hold nested config objects, and of what type (tuples of them for ``tools``).
_NESTED: dict[tuple[type, str], type] = {
    (SessionConfig, "input"): InputConfig, (SessionConfig, "output"): OutputConfig,
    (SessionConfig, "tools"): ToolSpec, (InputConfig, "format"): AudioFormat,
    (InputConfig, "turn_detection"): TurnDetection, (OutputConfig, "format"): AudioFormat,
}
_LISTS = frozenset({"keyterms", "language_codes", "uninterruptible_turns", "tools"})


def _from_wire(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if cls is ToolSpec and key == "type":
            continue                                   # always "function" on the wire
        if key not in names:
            extra[key] = value
            continue
        nested = _NESTED.get((cls, key))
        if nested is not None and isinstance(value, list):
            value = tuple(_from_wire(nested, v) for v in value)
        elif nested is not None and isinstance(value, dict):
            value = _from_wire(nested, value)
        elif key in _LISTS and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs, extra=extra)


def _to_wire(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function"} if isinstance(obj, ToolSpec) else {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "extra" or value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = _to_wire(value)
        elif isinstance(value, tuple):
            value = [_to_wire(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    out.update(obj.extra)
    return out


# --------------------------------------------------------------------------------------------
# Validation of a wire ``session`` dict (protocol.md 5, 6.10)
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> bool:
    """A finite JSON number (a TOML config may hold nan/inf; the wire decoder refuses them)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _add(problems: list[Problem], path: str, message: str, code: str = "invalid_value") -> None:
    problems.append(Problem(code, path, message))


def _known_keys(problems: list[Problem], obj: dict[str, Any], path: str, known: tuple[str, ...],
                code: str = "invalid_config") -> None:
    for key in obj:
        if key not in known:
            _add(problems, f"{path}.{key}", f"unknown field '{path}.{key}' (known: {', '.join(known)})",
                 code)


def _check_range(problems: list[Problem], obj: dict[str, Any], key: str, path: str,
                 lo: float, hi: float, integer: bool = False) -> None:
    if key not in obj or obj[key] is None:
        return
    value = obj[key]
    if not _num(value) or (integer and isinstance(value, float) and not value.is_integer()):
        kind = "an integer" if integer else "a number"
        _add(problems, path, f"'{path}' must be {kind}")
    elif not lo <= value <= hi:
        _add(problems, path, f"'{path}' must be between {lo:g} and {hi:g}")


def _check_enum(problems: list[Problem], obj: dict[str, Any], key: str, path: str,
                allowed: tuple[str, ...]) -> None:
    value = obj.get(key)
    if value is not None and (not isinstance(value, str) or value not in allowed):
        _add(problems, path, f"'{path}' must be one of {', '.join(allowed)}")


def _check_bool(problems: list[Problem], obj: dict[str, Any], key: str, path: str) -> None:
    if obj.get(key) is not None and not isinstance(obj[key], bool):
        _add(problems, path, f"'{path}' must be true or false")


def _check_text(problems: list[Problem], obj: dict[str, Any], key: str, path: str, limit: int,
                *, required: bool = False) -> None:
    value = obj.get(key)
    if value is None:
        if required:
            _add(problems, path, f"'{path}' is required")
        return
    if not isinstance(value, str):
        _add(problems, path, f"'{path}' must be a string")
    elif len(value) > limit:
        _add(problems, path, f"'{path}' allows at most {limit:,} characters (got {len(value):,})")


def _check_strings(problems: list[Problem], obj: dict[str, Any], key: str, path: str,
                   max_items: int | None = None, max_chars: int | None = None) -> None:
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        _add(problems, path, f"'{path}' must be a list of strings")
    elif max_items is not None and len(value) > max_items:
        _add(problems, path, f"'{path}' allows at most {max_items} items (got {len(value)})")
    elif max_chars is not None and any(len(v) > max_chars for v in value):
        _add(problems, path, f"'{path}' items allow at most {max_chars} characters each")


def _object(problems: list[Problem], value: Any, path: str) -> bool:
    """Whether ``value`` is an object (None counts as unset: False without a problem)."""
    if value is None:
        return False
    if not isinstance(value, dict):
        _add(problems, path, f"'{path}' must be an object")
        return False
    return True


def _check_format(problems: list[Problem], fmt: Any, path: str) -> None:
    if not _object(problems, fmt, path):
        return
    _known_keys(problems, fmt, path, FORMAT_KEYS)
    _check_enum(problems, fmt, "encoding", f"{path}.encoding", ENCODINGS)
    rate = fmt.get("sample_rate")
    encoding = fmt.get("encoding") or "audio/pcm"
    expected = PCM_RATE if encoding == "audio/pcm" else TELEPHONY_RATE
    if rate is not None and (not _num(rate) or rate != expected):
        _add(problems, f"{path}.sample_rate", f"'{path}.sample_rate' must be {expected} for {encoding}")


def _check_turn_detection(problems: list[Problem], td: Any) -> None:
    path = "input.turn_detection"
    if not _object(problems, td, path):
        return
    _known_keys(problems, td, path, TURN_DETECTION_KEYS)
    _check_range(problems, td, "vad_threshold", f"{path}.vad_threshold", 0.0, 1.0)
    _check_range(problems, td, "min_silence", f"{path}.min_silence", 50, 10000, integer=True)
    _check_range(problems, td, "max_silence", f"{path}.max_silence", 50, 10000, integer=True)
    _check_range(problems, td, "interruption_delay", f"{path}.interruption_delay", 0, 1000, integer=True)
    _check_enum(problems, td, "type", f"{path}.type", TURN_TYPES)
    _check_bool(problems, td, "interrupt_response", f"{path}.interrupt_response")
    lo, hi = td.get("min_silence"), td.get("max_silence")
    if _num(lo) and _num(hi) and lo >= hi:
        _add(problems, f"{path}.min_silence",
             f"'{path}.min_silence' must be strictly less than 'max_silence'")
    turns = td.get("uninterruptible_turns")
    if turns is not None:
        if not isinstance(turns, list):
            _add(problems, f"{path}.uninterruptible_turns",
                 f"'{path}.uninterruptible_turns' must be a list of {', '.join(UNINTERRUPTIBLE)}")
        else:
            for turn in turns:
                if not isinstance(turn, str) or turn not in UNINTERRUPTIBLE:
                    _add(problems, f"{path}.uninterruptible_turns",
                         f"'{path}.uninterruptible_turns' has unknown turn {str(turn)[:40]!r}")


def _check_section_type(problems: list[Problem], obj: dict[str, Any], path: str,
                        audio_keys: tuple[str, ...]) -> bool:
    """``type`` audio|text (5.3, 5.5); a text section takes no audio keys. True if text."""
    _check_enum(problems, obj, "type", f"{path}.type", SECTION_TYPES)
    if obj.get("type") != "text":
        return False
    for key in obj:
        if key in audio_keys:
            _add(problems, f"{path}.{key}", f"'{path}.{key}' does not apply when {path}.type is \"text\"")
    return True


def _check_input(problems: list[Problem], inp: Any) -> None:
    if not _object(problems, inp, "input"):
        return
    _known_keys(problems, inp, "input", INPUT_KEYS)
    if _check_section_type(problems, inp, "input", INPUT_KEYS[1:]):
        return
    _check_format(problems, inp.get("format"), "input.format")
    _check_strings(problems, inp, "keyterms", "input.keyterms", MAX_KEYTERMS, MAX_KEYTERM_CHARS)
    _check_enum(problems, inp, "transcription_mode", "input.transcription_mode", TRANSCRIPTION_MODES)
    _check_text(problems, inp, "transcription_prompt", "input.transcription_prompt",
                MAX_TRANSCRIPTION_PROMPT_CHARS)
    _check_strings(problems, inp, "language_codes", "input.language_codes", 32, 16)
    _check_enum(problems, inp, "voice_focus", "input.voice_focus", VOICE_FOCUS)
    _check_range(problems, inp, "voice_focus_threshold", "input.voice_focus_threshold", 0.0, 1.0)
    _check_bool(problems, inp, "continuous_partials", "input.continuous_partials")
    _check_turn_detection(problems, inp.get("turn_detection"))


def _check_output(problems: list[Problem], out: Any, voices: tuple[str, ...]) -> None:
    if not _object(problems, out, "output"):
        return
    _known_keys(problems, out, "output", OUTPUT_KEYS)
    if _check_section_type(problems, out, "output", OUTPUT_KEYS[1:]):
        return
    voice = out.get("voice")
    if voice is not None and (not isinstance(voice, str) or voice not in voices):
        _add(problems, "output.voice", f"unknown voice {str(voice)[:40]!r}")
    _check_format(problems, out.get("format"), "output.format")
    _check_range(problems, out, "volume", "output.volume", 0, 100)


def _json_depth(value: Any) -> int:
    """Container depth of a decoded JSON value, iteratively (1 for a flat object)."""
    depth, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            depth = max(depth, level)
            todo.extend((v, level + 1) for v in node if isinstance(v, (dict, list)))
    return depth


def _check_parameters(problems: list[Problem], params: Any, path: str) -> None:
    """5.7: a JSON Schema *object* (the service passes it to an OpenAI-compatible model)."""
    if params is None:
        return
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        _add(problems, path, f"'{path}' must be a JSON Schema object: {{\"type\": \"object\", "
             "\"properties\": {...}}")
        return
    if params.get("properties") is not None and (
            not isinstance(params["properties"], dict)
            or not all(isinstance(v, dict) for v in params["properties"].values())):
        _add(problems, f"{path}.properties", f"'{path}.properties' must map names to schemas")
    required = params.get("required")
    if required is not None and (not isinstance(required, list) or not all(isinstance(r, str)
                                                                           for r in required)):
        _add(problems, f"{path}.required", f"'{path}.required' must be a list of property names")
    depth = _json_depth(params)
    if depth > MAX_TOOL_PARAMETERS_DEPTH:
        _add(problems, path, f"'{path}' nests {depth} levels deep; at most {MAX_TOOL_PARAMETERS_DEPTH}")
    elif len(json.dumps(params, default=str)) > MAX_TOOL_PARAMETERS_CHARS:   # TOML dates: str
        _add(problems, path, f"'{path}' allows at most {MAX_TOOL_PARAMETERS_CHARS:,} characters of JSON")


def _check_tools(problems: list[Problem], tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        _add(problems, "tools", "'tools' must be a list")
        return
    if len(tools) > MAX_TOOLS:
        _add(problems, "tools", f"'tools' allows at most {MAX_TOOLS} tools (got {len(tools)})")
        return
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            _add(problems, path, f"'{path}' must be an object")
            continue
        _known_keys(problems, tool, path, TOOL_KEYS)
        if tool.get("type") != "function":
            _add(problems, f"{path}.type", f"'{path}.type' must be \"function\"")
        if tool.get("name") == "":
            _add(problems, f"{path}.name", f"'{path}.name' is required")
        _check_text(problems, tool, "name", f"{path}.name", MAX_TOOL_NAME_CHARS, required=True)
        _check_text(problems, tool, "description", f"{path}.description", MAX_TOOL_DESCRIPTION_CHARS)
        _check_parameters(problems, tool.get("parameters"), f"{path}.parameters")
        _check_enum(problems, tool, "execution_mode", f"{path}.execution_mode", EXECUTION_MODES)
        _check_range(problems, tool, "timeout_seconds", f"{path}.timeout_seconds", 1, 300)
        for key in ("response_instructions", "http", "session_update"):
            _object(problems, tool.get(key), f"{path}.{key}")
        if isinstance(tool.get("response_instructions"), dict):
            ri = tool["response_instructions"]
            _known_keys(problems, ri, f"{path}.response_instructions", ("success", "error"))
            for key in ("success", "error"):
                _check_text(problems, ri, key, f"{path}.response_instructions.{key}", 500)
    names: list[str] = [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        _add(problems, "tools", f"tool names must be unique: {', '.join(repr(n) for n in dupes[:3])}")


def _check_llm(problems: list[Problem], llm: Any) -> None:
    """6.9: ``[{base_url, model, api_key}]``, one entry, an OpenAI-compatible endpoint."""
    if llm is None:
        return
    if not isinstance(llm, list):
        _add(problems, "llm", "'llm' must be a list with one {base_url, model, api_key} entry, or []")
        return
    if len(llm) > 1:
        _add(problems, "llm", "'llm' takes one entry")
    for i, item in enumerate(llm[:1]):
        path = f"llm[{i}]"
        if not isinstance(item, dict):
            _add(problems, path, f"'{path}' must be an object {{base_url, model, api_key}}")
            continue
        _known_keys(problems, item, path, LLM_KEYS)
        url = item.get("base_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            _add(problems, f"{path}.base_url", f"'{path}.base_url' is required: the http(s) URL of an "
                 "OpenAI-compatible endpoint")
        for key in ("model", "api_key", "reasoning_effort"):
            _check_text(problems, item, key, f"{path}.{key}", 1_000)


def _check_webhook(problems: list[Problem], webhook: Any) -> None:
    """3.1: ``{url, events[], secret?}`` (schema-only); a bad one is ``invalid_webhook``."""
    if webhook is None:
        return
    code = "invalid_webhook"
    if not isinstance(webhook, dict):
        _add(problems, "webhook", "'webhook' must be an object {url, events, secret}", code)
        return
    _known_keys(problems, webhook, "webhook", WEBHOOK_KEYS, code)
    url = webhook.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2048:
        _add(problems, "webhook.url", "'webhook.url' is required: an http(s) URL", code)
    events = webhook.get("events")
    if events is not None and (not isinstance(events, list)
                               or not all(isinstance(e, str) and e for e in events)):
        _add(problems, "webhook.events", "'webhook.events' must be a list of event names", code)
    if webhook.get("secret") is not None and not isinstance(webhook["secret"], str):
        _add(problems, "webhook.secret", "'webhook.secret' must be a string", code)


def validate_session(session: Any, *, first: bool = True,
                     voices: tuple[str, ...] = KNOWN_VOICES) -> list[Problem]:
    """Every problem the server would report for this ``session.update`` payload.

    ``first`` is True for the first update of a session (agent_id allowed, immutable fields
    settable). Mutations of immutable fields on later updates are *not* checked here (that needs
    the current config; see :func:`immutable_changes`). Limits: ``constants.py``."""
    problems: list[Problem] = []
    if not isinstance(session, dict):
        return [Problem("invalid_config", "session", "'session' must be an object")]
    unknown = [k for k in session if k not in SESSION_KEYS]
    for key in unknown:
        problems.append(Problem("invalid_config", key, f"unknown session field {key!r}"))
    if "agent_id" in session:
        if not first or len(session) > 1:
            problems.append(Problem("agent_id_not_first", "agent_id",
                                    "'agent_id' must be the only field of the first session.update"))
        elif not isinstance(session["agent_id"], str) or not session["agent_id"]:
            problems.append(Problem("invalid_value", "agent_id", "'agent_id' must be a non-empty string"))
    _check_text(problems, session, "system_prompt", "system_prompt", MAX_SYSTEM_PROMPT_CHARS)
    _check_text(problems, session, "greeting", "greeting", MAX_GREETING_CHARS)
    _check_input(problems, session.get("input"))
    _check_output(problems, session.get("output"), voices)
    _check_tools(problems, session.get("tools"))
    _check_llm(problems, session.get("llm"))
    pcr = session.get("pre_connect_requests")
    if pcr is not None and (not isinstance(pcr, list) or not all(isinstance(r, dict) for r in pcr)):
        problems.append(Problem("invalid_value", "pre_connect_requests",
                                "'pre_connect_requests' must be a list of objects"))
    _check_webhook(problems, session.get("webhook"))
    return problems


def _get_path(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _has_path(obj: dict[str, Any], path: str) -> bool:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def immutable_changes(current: dict[str, Any], update: dict[str, Any]) -> list[str]:
    """Paths of immutable fields (5.11) that ``update`` tries to change on a resolved config."""
    return [p for p in IMMUTABLE_PATHS
            if _has_path(update, p) and _get_path(update, p) != _get_path(current, p)]


def _resolve_format(fmt: Any) -> dict[str, Any]:
    """5.9/5.10: PCM echoes ``{encoding, sample_rate: 24000}``; ``audio/pcmu``/``audio/pcma`` are
    8 kHz by definition and echo ``{encoding}`` only (the schema has ``sample_rate`` on PCM only)."""
    encoding = (fmt or {}).get("encoding") or "audio/pcm"
    if encoding == "audio/pcm":
        return {"encoding": encoding, "sample_rate": PCM_RATE}
    return {"encoding": encoding}


def _resolve_section(section: str, merged: dict[str, Any]) -> dict[str, Any]:
    """One resolved ``input``/``output`` (5.10): a text section is ``{"type": "text"}`` alone; an
    audio one has every key, unset ones null, ``format`` in its resolved form."""
    if merged.get("type") == "text":
        return {"type": "text"}
    out: dict[str, Any] = _deep_copy(_DEFAULT_INPUT if section == "input" else _DEFAULT_OUTPUT)
    for key, value in merged.items():
        if key in out:
            out[key] = _deep_copy(value)
    out["type"] = "audio"
    out["format"] = _resolve_format(out["format"])
    if section == "output" and out["voice"] is None:
        out["voice"] = DEFAULT_VOICE
    td = out.get("turn_detection")
    if section == "input" and isinstance(td, dict):
        out["turn_detection"] = {key: _deep_copy(td.get(key)) for key in TURN_DETECTION_KEYS}
    return out


def _resolve_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """5.7 defaults filled: description "", parameters an object schema with properties and
    required, execution_mode interactive, timeout_seconds 120; extras (http, ...) kept."""
    out: dict[str, Any] = {"type": "function", "name": tool.get("name"), "description": "",
                           "parameters": {}, "execution_mode": "interactive",
                           "timeout_seconds": DEFAULT_TOOL_TIMEOUT_S}
    for key, value in tool.items():
        if value is not None:
            out[key] = _deep_copy(value)
    params = out["parameters"] if isinstance(out["parameters"], dict) else {}
    out["parameters"] = {"type": "object", "properties": {}, "required": [], **params}
    return out


_DEFAULT_INPUT: dict[str, Any] = {
    "type": "audio", "format": {"encoding": "audio/pcm", "sample_rate": PCM_RATE},
    "keyterms": None, "turn_detection": None, "transcription_mode": None,
    "transcription_prompt": None, "language_codes": None, "voice_focus": None,
    "voice_focus_threshold": None, "continuous_partials": None}
_DEFAULT_OUTPUT: dict[str, Any] = {
    "type": "audio", "voice": DEFAULT_VOICE, "format": {"encoding": "audio/pcm", "sample_rate": PCM_RATE},
    "volume": None}


def resolve_config(session_id: str, session: dict[str, Any],
                   base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved config echoed in session.ready/session.updated (5.10): every default filled,
    unset optional fields null, text sections without audio keys, ``llm`` without its key,
    ``webhook`` without its secret. ``base`` is the current resolved config for later updates
    (mutable fields replace; ``tools`` replaces the whole array). ``session`` is validated."""
    cfg: dict[str, Any] = _deep_copy(base) if base is not None else {
        "id": session_id, "system_prompt": "", "greeting": None,
        "input": _deep_copy(_DEFAULT_INPUT), "output": _deep_copy(_DEFAULT_OUTPUT),
        "tools": [], "llm": [], "pre_connect_requests": [],
    }
    for key in ("system_prompt", "greeting"):
        if key in session:
            cfg[key] = session[key] if session[key] is not None or key == "greeting" else ""
    if "tools" in session:
        cfg["tools"] = [_resolve_tool(t) for t in session["tools"] or [] if isinstance(t, dict)]
    for section in ("input", "output"):
        update = session.get(section)
        if isinstance(update, dict):
            merged = {**cfg[section], **update}
            if "format" in update:
                merged["format"] = update["format"]
            cfg[section] = _resolve_section(section, merged)
    if "llm" in session:
        cfg["llm"] = [{"base_url": item.get("base_url"), "model": item.get("model")}
                      for item in session["llm"] or [] if isinstance(item, dict)]
    if "pre_connect_requests" in session:
        cfg["pre_connect_requests"] = _deep_copy(session["pre_connect_requests"] or [])
    if isinstance(session.get("webhook"), dict):
        hook = session["webhook"]
        cfg["webhook"] = {"url": hook.get("url"), "events": _deep_copy(hook.get("events") or [])}
    return cfg


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
