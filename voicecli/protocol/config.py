"""The session configuration of protocol.md section 5: typed values, wire form, validation.

One validator serves both sides: the local server answers a bad ``session.update`` with the
``session.error`` it returns, and the client checks its own config before connecting so a
value the server would reject fails fast (issue: config).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PCM_RATE = 24000
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
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_range(problems: list[Problem], obj: dict[str, Any], key: str, path: str,
                 lo: float, hi: float, integer: bool = False) -> None:
    if key not in obj or obj[key] is None:
        return
    value = obj[key]
    if not _num(value) or (integer and float(value) != int(value)):
        kind = "an integer" if integer else "a number"
        problems.append(Problem("invalid_value", path, f"'{path}' must be {kind}"))
    elif not lo <= value <= hi:
        problems.append(Problem("invalid_value", path, f"'{path}' must be between {lo:g} and {hi:g}"))


def _check_enum(problems: list[Problem], obj: dict[str, Any], key: str, path: str,
                allowed: tuple[str, ...]) -> None:
    if obj.get(key) is not None and obj[key] not in allowed:
        problems.append(Problem("invalid_value", path, f"'{path}' must be one of {', '.join(allowed)}"))


def _check_format(problems: list[Problem], fmt: Any, path: str) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        problems.append(Problem("invalid_value", path, f"'{path}' must be an object"))
        return
    _check_enum(problems, fmt, "encoding", f"{path}.encoding", ENCODINGS)
    rate = fmt.get("sample_rate")
    encoding = fmt.get("encoding", "audio/pcm")
    expected = PCM_RATE if encoding == "audio/pcm" else 8000
    if rate is not None and rate != expected:
        problems.append(Problem("invalid_value", f"{path}.sample_rate",
                                f"'{path}.sample_rate' must be {expected} for {encoding}"))


def _check_turn_detection(problems: list[Problem], td: Any) -> None:
    path = "input.turn_detection"
    if td is None:
        return
    if not isinstance(td, dict):
        problems.append(Problem("invalid_value", path, f"'{path}' must be an object"))
        return
    _check_range(problems, td, "vad_threshold", f"{path}.vad_threshold", 0.0, 1.0)
    _check_range(problems, td, "min_silence", f"{path}.min_silence", 50, 10000, integer=True)
    _check_range(problems, td, "max_silence", f"{path}.max_silence", 50, 10000, integer=True)
    _check_range(problems, td, "interruption_delay", f"{path}.interruption_delay", 0, 1000, integer=True)
    _check_enum(problems, td, "type", f"{path}.type", TURN_TYPES)
    if "interrupt_response" in td and td["interrupt_response"] is not None \
            and not isinstance(td["interrupt_response"], bool):
        problems.append(Problem("invalid_value", f"{path}.interrupt_response",
                                f"'{path}.interrupt_response' must be true or false"))
    lo, hi = td.get("min_silence"), td.get("max_silence")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and _num(lo) and _num(hi) and lo >= hi:
        problems.append(Problem("invalid_value", f"{path}.min_silence",
                                f"'{path}.min_silence' must be strictly less than 'max_silence'"))
    for turn in td.get("uninterruptible_turns") or []:
        if turn not in UNINTERRUPTIBLE:
            problems.append(Problem("invalid_value", f"{path}.uninterruptible_turns",
                                    f"'{path}.uninterruptible_turns' has unknown turn {turn!r}"))


def _check_input(problems: list[Problem], inp: Any) -> None:
    if inp is None:
        return
    if not isinstance(inp, dict):
        problems.append(Problem("invalid_value", "input", "'input' must be an object"))
        return
    _check_format(problems, inp.get("format"), "input.format")
    keyterms = inp.get("keyterms")
    if keyterms is not None:
        if not isinstance(keyterms, list) or not all(isinstance(k, str) for k in keyterms):
            problems.append(Problem("invalid_value", "input.keyterms",
                                    "'input.keyterms' must be a list of strings"))
        elif len(keyterms) > 100:
            problems.append(Problem("invalid_value", "input.keyterms",
                                    "'input.keyterms' allows at most 100 terms"))
    _check_enum(problems, inp, "transcription_mode", "input.transcription_mode", TRANSCRIPTION_MODES)
    prompt = inp.get("transcription_prompt")
    if isinstance(prompt, str) and len(prompt) > 1750:
        problems.append(Problem("invalid_value", "input.transcription_prompt",
                                "'input.transcription_prompt' allows at most 1750 characters"))
    _check_enum(problems, inp, "voice_focus", "input.voice_focus", VOICE_FOCUS)
    _check_range(problems, inp, "voice_focus_threshold", "input.voice_focus_threshold", 0.0, 1.0)
    _check_turn_detection(problems, inp.get("turn_detection"))


def _check_output(problems: list[Problem], out: Any, voices: tuple[str, ...]) -> None:
    if out is None:
        return
    if not isinstance(out, dict):
        problems.append(Problem("invalid_value", "output", "'output' must be an object"))
        return
    voice = out.get("voice")
    if voice is not None and voice not in voices:
        problems.append(Problem("invalid_value", "output.voice", f"unknown voice {voice!r}"))
    _check_format(problems, out.get("format"), "output.format")
    _check_range(problems, out, "volume", "output.volume", 0, 100)


def _check_tools(problems: list[Problem], tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        problems.append(Problem("invalid_value", "tools", "'tools' must be a list"))
        return
    for i, tool in enumerate(tools):
        path = f"tools[{i}]"
        if not isinstance(tool, dict):
            problems.append(Problem("invalid_value", path, f"'{path}' must be an object"))
            continue
        if tool.get("type") != "function":
            problems.append(Problem("invalid_value", f"{path}.type", f"'{path}.type' must be \"function\""))
        if not isinstance(tool.get("name"), str) or not tool.get("name"):
            problems.append(Problem("invalid_value", f"{path}.name", f"'{path}.name' is required"))
        _check_enum(problems, tool, "execution_mode", f"{path}.execution_mode", EXECUTION_MODES)
        _check_range(problems, tool, "timeout_seconds", f"{path}.timeout_seconds", 1, 300)


def validate_session(session: Any, *, first: bool = True,
                     voices: tuple[str, ...] = KNOWN_VOICES) -> list[Problem]:
    """Every problem the server would report for this ``session.update`` payload.

    ``first`` is True for the first update of a session (agent_id allowed, immutable fields
    settable). Mutations of immutable fields on later updates are *not* checked here (that needs
    the current config; see :func:`immutable_changes`)."""
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
    for key in ("system_prompt", "greeting"):
        if session.get(key) is not None and not isinstance(session[key], str):
            problems.append(Problem("invalid_value", key, f"'{key}' must be a string"))
    _check_input(problems, session.get("input"))
    _check_output(problems, session.get("output"), voices)
    _check_tools(problems, session.get("tools"))
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


def resolve_config(session_id: str, session: dict[str, Any],
                   base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved config echoed in session.ready/session.updated (5.10): defaults filled, unset
    optional fields null. ``base`` is the current resolved config for later updates (mutable
    fields replace; ``tools`` replaces the whole array)."""
    cfg: dict[str, Any] = base if base is not None else {
        "id": session_id, "system_prompt": "", "greeting": None,
        "input": {"type": "audio", "format": {"encoding": "audio/pcm", "sample_rate": PCM_RATE},
                  "keyterms": None, "turn_detection": None, "transcription_mode": None,
                  "transcription_prompt": None, "language_codes": None, "voice_focus": None,
                  "voice_focus_threshold": None, "continuous_partials": None},
        "output": {"type": "audio", "voice": DEFAULT_VOICE,
                   "format": {"encoding": "audio/pcm", "sample_rate": PCM_RATE}, "volume": None},
        "tools": [], "llm": [], "pre_connect_requests": [],
    }
    cfg = _deep_copy(cfg)
    for key in ("system_prompt", "greeting", "tools"):
        if key in session:
            cfg[key] = _deep_copy(session[key])
    if "tools" in session:
        cfg["tools"] = [dict({"type": "function", "description": "",
                              "parameters": {"type": "object", "properties": {}, "required": []}},
                             **t) for t in (session["tools"] or [])]
    for section in ("input", "output"):
        for key, value in (session.get(section) or {}).items():
            cfg[section][key] = _deep_copy(value)
    if "llm" in session:
        cfg["llm"] = [{k: v for k, v in item.items() if k != "api_key"}
                      for item in session["llm"] or [] if isinstance(item, dict)]
    return cfg


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
