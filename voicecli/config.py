"""The TOML config file and the layering of settings (design.md principle 12).

Finds the file (``--config`` > ``VOICECLI_CONFIG`` > the platformdirs default), reads it with
tomllib, maps dotted keys to line numbers for error messages, checks every key's name and type
(top level, ``[profiles.NAME]`` and ``[[tools]]``), warns when a file holding an API key is readable
by other users, and layers file, profile, ``ASSEMBLYAI_API_KEY`` / ``VOICECLI_*`` environment and
flag values (:class:`CommonFlags`, the command line's layer), keeping where each came from.
:func:`load` returns that as an :class:`Effective`; :mod:`voicecli.settings` (which imports this
module, never the reverse) turns it into what a conversation needs. Every problem is a one-line
:class:`ConfigError` (exit 2) naming the file, line and key (or the variable, or the flag); two
clashing flags are a :class:`UsageError`.

The file format is documented key by key in ``config.example.toml`` at the repository root.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from voicecli.errors import ConfigError, UsageError

SECRET_KEYS = frozenset({"api_key", "token"})

# rank of each layer: a higher rank wins (principle 12)
DEFAULT, FILE, PROFILE, ENV, FLAG = range(5)

# key -> kind. Kinds: str, bool, int, num, strs (list of strings), device (int or str), table (any).
CONNECTION_KEYS = {"url": "str", "api_key": "str", "local": "bool", "local_scenario": "str"}
CLIENT_KEYS = {"input_device": "device", "output_device": "device", "duplex": "str", "echo": "str",
               "prebuffer_ms": "int", "record_dir": "str", "tool_concurrency": "int", "max_tool_calls": "int"}
FORMAT = {"encoding": "str", "sample_rate": "int"}
SESSION_KEYS: dict[str, str] = {
    "agent_id": "str", "system_prompt": "str", "greeting": "str",
    **{f"input.format.{k}": v for k, v in FORMAT.items()},
    "input.keyterms": "strs", "input.transcription_mode": "str", "input.transcription_prompt": "str",
    "input.language_codes": "strs", "input.voice_focus": "str", "input.voice_focus_threshold": "num",
    "input.continuous_partials": "bool",
    "input.turn_detection.vad_threshold": "num", "input.turn_detection.min_silence": "int",
    "input.turn_detection.max_silence": "int", "input.turn_detection.interrupt_response": "bool",
    "input.turn_detection.interruption_delay": "int", "input.turn_detection.type": "str",
    "input.turn_detection.uninterruptible_turns": "strs",
    "output.voice": "str", **{f"output.format.{k}": v for k, v in FORMAT.items()}, "output.volume": "num",
}
SCALARS: dict[str, str] = {**CONNECTION_KEYS, **CLIENT_KEYS, **SESSION_KEYS}
TABLES = frozenset({"input", "input.format", "input.turn_detection", "output", "output.format"})
TOOL_KEYS = {"name": "str", "description": "str", "parameters": "table", "execution_mode": "str",
             "timeout_seconds": "num", "response_instructions": "table", "command": "strs",
             "callable": "str", "cwd": "str"}
INLINE_SESSION = ("system_prompt", "greeting")   # plus input.*, output.*, tools (agent_id excludes them)

ENV_VARS = {
    "ASSEMBLYAI_API_KEY": "api_key", "VOICECLI_URL": "url", "VOICECLI_LOCAL": "local",
    "VOICECLI_LOCAL_SCENARIO": "local_scenario", "VOICECLI_AGENT_ID": "agent_id",
    "VOICECLI_SYSTEM_PROMPT": "system_prompt", "VOICECLI_GREETING": "greeting",
    "VOICECLI_VOICE": "output.voice", "VOICECLI_INPUT_DEVICE": "input_device",
    "VOICECLI_OUTPUT_DEVICE": "output_device", "VOICECLI_DUPLEX": "duplex",
    "VOICECLI_ECHO": "echo",
    "VOICECLI_PREBUFFER_MS": "prebuffer_ms", "VOICECLI_RECORD_DIR": "record_dir",
    "VOICECLI_TOOL_CONCURRENCY": "tool_concurrency",
}


def _flag(key: str, spelled: str, secret: bool = False) -> Any:
    """A :class:`CommonFlags` field that sets config ``key`` and is spelled ``spelled`` on the
    command line (for messages and ``config show`` sources). None = not given."""
    return field(default=None, repr=not secret, metadata={"key": key, "flag": spelled})


@dataclass
class CommonFlags:
    """The command-line layer (cli-contract.md, common options). ``None`` = not given. Each field
    that maps to a config key says which, and how the flag is spelled, in its metadata."""

    url: str | None = _flag("url", "--url")
    local: bool = False
    api_key: str | None = _flag("api_key", "--api-key", secret=True)
    token: str | None = field(default=None, repr=False)
    system_prompt: str | None = _flag("system_prompt", "--system-prompt")
    greeting: str | None = _flag("greeting", "--greeting")
    voice: str | None = _flag("output.voice", "--voice")
    agent_id: str | None = _flag("agent_id", "--agent-id")
    profile: str | None = None
    config_path: str | None = None
    # chat's client flags; they outrank the environment and the file
    input_device: str | int | None = _flag("input_device", "--input-device")
    output_device: str | int | None = _flag("output_device", "--output-device")
    duplex: str | None = _flag("duplex", "--duplex")
    echo: str | None = _flag("echo", "--echo")
    prebuffer_ms: int | None = _flag("prebuffer_ms", "--prebuffer-ms")
    record_dir: str | None = _flag("record_dir", "--record")
    tool_concurrency: int | None = _flag("tool_concurrency", "--tool-concurrency")   # ask and chat


# flag attribute of CommonFlags -> (key, how the flag is spelled), from the fields' metadata
FLAGS: dict[str, tuple[str, str]] = {f.name: (f.metadata["key"], f.metadata["flag"])
                                     for f in fields(CommonFlags) if "key" in f.metadata}


@dataclass(frozen=True)
class Source:
    rank: int
    label: str                      # "default", "flag --voice", "env VOICECLI_VOICE", "file ... line 3"
    path: Path | None = None        # the config file, for file layers
    line: int | None = None


@dataclass
class Effective:
    """Every setting with its winning value and source (``voicecli config show``)."""

    path: Path
    exists: bool
    profile: str | None
    values: dict[str, tuple[Any, Source]] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)   # key -> why it is not used
    warnings: list[str] = field(default_factory=list)
    text: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.values[key][0] if key in self.values else default

    def source(self, key: str) -> Source | None:
        return self.values[key][1] if key in self.values else None


# --------------------------------------------------------------------------------------------
# locating and reading the file
# --------------------------------------------------------------------------------------------


def default_config_path() -> Path:
    """The platform's user config file (``voicecli config path``)."""
    from platformdirs import user_config_path
    return user_config_path("voicecli", appauthor=False) / "config.toml"


def config_path(flags: CommonFlags | None = None) -> tuple[Path, bool]:
    """(path, explicit): ``--config`` > ``VOICECLI_CONFIG`` > the platform default."""
    given = (flags.config_path if flags else None) or os.environ.get("VOICECLI_CONFIG") or None
    if given:
        return Path(given).expanduser(), True
    return default_config_path(), False


class Lines:
    """Best-effort map from dotted key paths (``tools[0].name``) to 1-based line numbers of a TOML
    text; tomllib reports no positions for valid documents."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counts: dict[str, int] = {}
        table = ""
        for no, line in enumerate(text.splitlines(), 1):
            header = self.HEADER.match(line)
            if header:
                name = _unquote(header.group(2))
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    self.lines.setdefault(name, no)
                    table = f"{name}[{counts[name]}]"
                else:
                    table = self._indexed(name, counts)
                self.lines.setdefault(table, no)
                continue
            key = self.KEY.match(line)
            if key:
                full = f"{table}.{_unquote(key.group(1))}" if table else _unquote(key.group(1))
                self.lines.setdefault(full, no)

    @staticmethod
    def _indexed(name: str, counts: dict[str, int]) -> str:
        for array, n in counts.items():   # [tools.parameters] after [[tools]] -> tools[N].parameters
            if name.startswith(array + "."):
                return f"{array}[{n}]{name[len(array):]}"
        return name

    def find(self, path: str) -> int | None:
        """The line of ``path`` or of its nearest enclosing key/table."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


def _unquote(name: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in name.split("."))


def _read_file(path: Path, explicit: bool) -> tuple[dict[str, Any], str] | None:
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist",
                              "check --config / VOICECLI_CONFIG, or create it with `voicecli config init`")
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text", "save it as UTF-8 TOML") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}",
                          "check its permissions, or point --config elsewhere") from None
    try:
        data = tomllib.loads(text)
    except RecursionError:     # tomllib recurses per nesting level: a few hundred levels blow the stack
        raise ConfigError(f"config file {path}: tables or arrays nested too deeply to read",
                          f"voicecli settings nest at most {MAX_DEPTH} levels") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"at line (\d+)", msg)
        line = int(m.group(1)) if m else None
        near = ""
        if line is not None:
            raw = text.splitlines()[line - 1] if line - 1 < len(text.splitlines()) else ""
            key = Lines.KEY.match(raw)
            near = f", key {_unquote(key.group(1))}" if key else f" ({raw.strip()[:60]!r})"
        where = f", line {line}" if line is not None else ""
        raise ConfigError(f"config file {path}{where}{near}: not valid TOML: {msg}",
                          "config.example.toml documents every key") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(f"config file {path}: tables or arrays nested more than {MAX_DEPTH} levels deep",
                          "config.example.toml documents every key")
    return data, text


MAX_DEPTH = 32    # far above any real setting (tool parameters schemas included)


def _depth(value: Any) -> int:
    """Nesting depth of parsed TOML (iterative: safe whatever the depth)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


# --------------------------------------------------------------------------------------------
# checking values
# --------------------------------------------------------------------------------------------


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "device":
        return isinstance(value, (str, int)) and not isinstance(value, bool)
    return isinstance(value, dict)   # table


KIND_TEXT = {"str": "a string", "bool": "true or false", "int": "a whole number", "num": "a number",
             "strs": "a list of strings", "device": "a device index or name", "table": "a table"}


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


class _FileLayer:
    """Flattens one table of the file (top level or a profile) into ``key -> (value, Source)``."""

    def __init__(self, path: Path, lines: Lines, rank: int, prefix: str) -> None:
        self.path, self.lines, self.rank, self.prefix = path, lines, rank, prefix
        self.values: dict[str, tuple[Any, Source]] = {}

    def error(self, key: str, problem: str) -> ConfigError:
        line = self.lines.find(self.prefix + key)
        where = f", line {line}" if line else ""
        return ConfigError(f"config file {self.path}{where}, key {self.prefix}{key}: {problem}",
                           "config.example.toml documents every key")

    def source(self, key: str) -> Source:
        line = self.lines.find(self.prefix + key)
        label = f"file {self.path}" + (f" line {line}" if line else "")
        if self.prefix:
            label += f" [{self.prefix.rstrip('.')}]"
        return Source(self.rank, label, self.path, line)

    def walk(self, table: dict[str, Any], base: str = "") -> None:
        for name, value in table.items():
            key = f"{base}{name}"
            if key in TABLES:
                if not isinstance(value, dict):
                    raise self.error(key, f"must be a table, not {_type_name(value)}")
                self.walk(value, key + ".")
            elif key in SCALARS:
                kind = SCALARS[key]
                if not _kind_ok(kind, value):
                    raise self.error(key, f"must be {KIND_TEXT[kind]}, not {_type_name(value)}")
                self.values[key] = (value, self.source(key))
            elif key == "tools":
                self.values[key] = (self.check_tools(value), self.source(key))
            elif key == "token":
                raise self.error(key, "temporary tokens are single-use and cannot be stored in "
                                      "the config; pass --token")
            else:
                raise self.error(key, "unknown key" + _did_you_mean(key))

    def check_tools(self, tools: Any) -> list[dict[str, Any]]:
        if not isinstance(tools, list):
            raise self.error("tools", "must be an array of tables ([[tools]])")
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            key = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise self.error(key, "must be a table")
            for name, value in tool.items():
                if name not in TOOL_KEYS:
                    raise self.error(f"{key}.{name}", "unknown tool key (known: "
                                     f"{', '.join(TOOL_KEYS)})")
                if not _kind_ok(TOOL_KEYS[name], value):
                    raise self.error(f"{key}.{name}",
                                     f"must be {KIND_TEXT[TOOL_KEYS[name]]}, not {_type_name(value)}")
            if not tool.get("name"):
                raise self.error(key, "a tool needs a name")
            if tool["name"] in seen:
                raise self.error(f"{key}.name", f"a second tool named {tool['name']!r}")
            seen.add(tool["name"])
            if ("command" in tool) == ("callable" in tool):
                raise self.error(key, "a tool needs exactly one of command = [argv...] or "
                                      "callable = \"module:function\"")
            if "command" in tool and not tool["command"]:
                raise self.error(f"{key}.command", "must name a program: command = [\"prog\", \"arg\"]")
        return [dict(t) for t in tools]


def check_table(path: Path, text: str, data: dict[str, Any],
                prefix: str = "") -> dict[str, tuple[Any, Source]]:
    """Check ``data`` (a table of ``text``, the TOML read from ``path``, whose keys sit under
    ``prefix``) with the config file's own checker: the same keys, kinds and one-line messages,
    naming ``path``, the line and ``prefix`` + key. Returns ``key -> (value, Source)`` at profile
    rank (it lays over the file's top level; env and flags still win). Raises ConfigError.
    Other TOML files that hold config keys (eval suites) use this."""
    layer = _FileLayer(path, Lines(text), PROFILE, prefix)
    layer.walk(data)
    return layer.values


def _did_you_mean(key: str) -> str:
    import difflib
    leaf = key.rsplit(".", 1)[-1]
    if "." in key and (leaf in SCALARS or leaf in ("tools", "profiles")):
        return f" ({leaf} is a top-level key: put it above the first [table] header)"
    nested = [k for k in SCALARS if "." in k and k.rsplit(".", 1)[1] == leaf]
    if nested:
        return f" (did you mean {nested[0]}? set it in the [{nested[0].rsplit('.', 1)[0]}] table)"
    known = list(SCALARS) + sorted(TABLES) + ["tools", "profiles"]
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _env_layer(values: dict[str, tuple[Any, Source]]) -> None:
    for var, key in ENV_VARS.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        kind = SCALARS[key]
        value: Any = raw
        if kind == "int":
            if not raw.strip().lstrip("-").isdigit():
                raise ConfigError(f"environment variable {var} must be a whole number, not {raw!r}")
            value = int(raw)
        elif kind == "bool":
            if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(f"environment variable {var} must be 1 or 0, not {raw!r}")
            value = raw.strip().lower() in ("1", "true", "yes", "on")
        values[key] = (value, Source(ENV, f"env {var}"))


def _flag_layer(flags: CommonFlags, values: dict[str, tuple[Any, Source]]) -> None:
    env_of = {key: var for var, key in ENV_VARS.items()}
    for attr, (key, spelled) in FLAGS.items():
        value = getattr(flags, attr)
        if value is None:
            continue
        var = env_of.get(key)
        # Typer fills some flags from their environment variable; keep the true source.
        if var and os.environ.get(var) == value:
            values[key] = (value, Source(ENV, f"env {var}"))
        else:
            values[key] = (value, Source(FLAG, f"flag {spelled}"))
    if flags.local:
        values["local"] = (True, Source(FLAG, "flag --local"))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load(flags: CommonFlags) -> Effective:
    """Read the file, apply the profile, layer environment and flags. Raises ConfigError."""
    path, explicit = config_path(flags)
    profile = flags.profile or os.environ.get("VOICECLI_PROFILE") or None
    eff = Effective(path=path, exists=False, profile=profile)
    values: dict[str, tuple[Any, Source]] = {}
    read = _read_file(path, explicit)
    if read is not None:
        data, eff.text = read
        eff.exists = True
        lines = Lines(eff.text)
        profiles = data.pop("profiles", {})
        top = _FileLayer(path, lines, FILE, "")
        if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
            raise top.error("profiles", "must be tables: [profiles.NAME]")
        top.walk(data)
        values.update(top.values)
        layers = [top]
        for name, table in profiles.items():   # check every profile, not only the chosen one
            layer = _FileLayer(path, lines, PROFILE, f"profiles.{name}.")
            layer.walk(table)
            layers.append(layer)
            if name == profile:
                values.update(layer.values)
        if profile is not None and profile not in profiles:
            names = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"no profile {profile!r} in config file {path} (profiles: {names})",
                              "add a [profiles.NAME] table or fix --profile / VOICECLI_PROFILE")
        if _holds_key(data, profiles) and _readable_by_others(path):
            eff.warnings.append(f"config file {path} holds an API key and is readable by other users; "
                                f"run: chmod 600 {path}")
    elif profile is not None:
        raise ConfigError(f"no profile {profile!r}: there is no config file at {path}",
                          "create one with `voicecli config init`, or drop --profile")
    _env_layer(values)
    _flag_layer(flags, values)
    if flags.token:
        values["token"] = (flags.token, Source(FLAG, "flag --token"))
    _apply_exclusions(values, eff)
    eff.values = values
    return eff


def _holds_key(data: dict[str, Any], profiles: dict[str, Any]) -> bool:
    return "api_key" in data or any("api_key" in p for p in profiles.values())


def _readable_by_others(path: Path) -> bool:
    if os.name != "posix":
        return False
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _apply_exclusions(values: dict[str, tuple[Any, Source]], eff: Effective) -> None:
    """``url`` vs ``local`` and ``agent_id`` vs inline fields: the higher layer wins; the same
    layer setting both is an error."""
    url, local = values.get("url"), values.get("local")
    if url and local and local[0]:
        if url[1].rank == local[1].rank:
            raise _conflict(url[1], local[1], "url", "local", "they are exclusive; drop one")
        loser = "local" if url[1].rank > local[1].rank else "url"
        eff.ignored[loser] = f"overridden by {('url' if loser == 'local' else 'local')} " \
                             f"({values['url' if loser == 'local' else 'local'][1].label})"
        del values[loser]
    agent = values.get("agent_id")
    if agent:
        inline = [k for k in values if k in INLINE_SESSION or k == "tools"
                  or k.startswith(("input.", "output."))]
        for key in inline:
            src = values[key][1]
            if key == "tools":
                continue   # tools still run locally for a stored agent's calls; not declared
            if src.rank >= agent[1].rank:
                raise _conflict(agent[1], src, "agent_id", key,
                                "a stored agent brings its own prompt, greeting, voice and audio "
                                "settings; drop one of them")
            eff.ignored[key] = f"overridden by agent_id ({agent[1].label})"
            del values[key]


def _conflict(a: Source, b: Source, ka: str, kb: str, hint: str) -> UsageError:
    if a.rank == FLAG and b.rank == FLAG:
        return UsageError(f"--{ka.replace('_', '-')} and --{kb.split('.')[-1].replace('_', '-')} "
                          "cannot be combined", hint)
    return ConfigError(f"{ka} ({a.label}) cannot be combined with {kb} ({b.label})", hint)
