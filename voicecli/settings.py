"""Resolve what a conversing command needs from flags, environment, config file and defaults.

``resolve(flags)`` is the one place that turns command-line flags, ``ASSEMBLYAI_API_KEY`` /
``VOICECLI_*`` variables and the TOML config file (with its ``[profiles.NAME]`` overrides) into a
session config, an endpoint, tools and client settings. Precedence is flag > environment > file
(profile over top level) > default (design.md principle 12). Finding, reading, checking and layering
the file, and the flags' own dataclass :class:`~voicecli.config.CommonFlags`, live in
:mod:`voicecli.config`, whose :func:`~voicecli.config.load` keeps where each value came from for
``voicecli config show``; this module builds the session, tools and client settings from that and
checks them. Every problem is a one-line
:class:`ConfigError` or :class:`UsageError` (exit 2). Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from voicecli.config import (
    CLIENT_KEYS,
    CONNECTION_KEYS,
    DEFAULT,
    FLAG,
    PROFILE,
    SESSION_KEYS,
    CommonFlags,
    Effective,
    Lines,
    Source,
    load,
)
from voicecli.errors import ConfigError, UsageError
from voicecli.protocol.constants import DEFAULT_URL
from voicecli.urls import is_loopback, url_problem

# CommonFlags and load are config's, re-exported for callers that resolve settings in one import.
__all__ = ["CommonFlags", "Resolved", "build_tools", "check_client", "client_settings", "load",
           "load_checked", "ordered", "resolve", "resolve_effective", "session_config"]


@dataclass
class Resolved:
    url: str
    local: bool
    session: dict[str, Any]
    api_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tools: list[Any] = field(default_factory=list)          # voicecli.tools.Tool instances
    client: dict[str, Any] = field(default_factory=dict)    # devices, duplex, prebuffer_ms, record_dir
    config_path: Path | None = None
    profile: str | None = None


# --------------------------------------------------------------------------------------------
# building the session, tools and client settings
# --------------------------------------------------------------------------------------------


ORDER = [*CONNECTION_KEYS, "token", *SESSION_KEYS, *CLIENT_KEYS, "tools"]


def ordered(values: dict[str, tuple[Any, Source]]) -> list[tuple[str, Any, Source]]:
    """Settings in the order of ``config.example.toml`` (for ``config show``)."""
    rank = {k: i for i, k in enumerate(ORDER)}
    return [(k, *values[k]) for k in sorted(values, key=lambda k: rank.get(k, len(rank)))]


def _nest(values: dict[str, tuple[Any, Source]]) -> dict[str, Any]:
    session: dict[str, Any] = {}
    for key, (value, _src) in values.items():
        if key not in SESSION_KEYS:
            continue
        node = session
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return session


def _tool_wire(tool: dict[str, Any]) -> dict[str, Any]:
    """protocol.md 5.7 flat schema."""
    wire: dict[str, Any] = {"type": "function", "name": tool["name"],
                            "description": tool.get("description", ""),
                            "parameters": tool.get("parameters",
                                                   {"type": "object", "properties": {}, "required": []})}
    for key in ("execution_mode", "timeout_seconds", "response_instructions"):
        if key in tool:
            wire[key] = tool[key]
    return wire


def _key_error(eff: Effective, key: str, problem: str, hint: str | None = None) -> ConfigError:
    """A ConfigError for ``key`` (a dotted path, possibly ``tools[i].x``) naming its source."""
    base = key.split("[")[0].split(".")[0] if key.startswith("tools") else key
    src = eff.source(base) if base in eff.values else None
    if base not in eff.values:   # a nested session path: find the most specific set key
        for k in sorted(eff.values, key=len, reverse=True):
            if key.startswith(k) or k.startswith(key):
                src = eff.source(k)
                break
    hint = hint or "config.example.toml documents every key"
    if src is None or src.rank == DEFAULT:
        return ConfigError(f"invalid setting {key}: {problem}", hint)
    if src.path is not None:
        lines = Lines(eff.text)
        prefix = f"profiles.{eff.profile}." if src.rank == PROFILE else ""
        line = lines.find(prefix + key) or src.line
        where = f", line {line}" if line else ""
        return ConfigError(f"config file {src.path}{where}, key {prefix}{key}: {problem}", hint)
    return ConfigError(f"invalid {key} from {src.label}: {problem}", hint)


def build_tools(eff: Effective) -> tuple[list[Any], list[dict[str, Any]]]:
    """(runnable tools, wire declarations). Callables are imported now so a bad one fails before
    connecting."""
    from voicecli.tools import DEFAULT_TIMEOUT_S, CallableLoadError, CallableTool, CommandTool, load_callable
    runners: list[Any] = []
    wire: list[dict[str, Any]] = []
    folder = eff.path.parent
    for i, tool in enumerate(eff.get("tools") or []):
        timeout = float(tool.get("timeout_seconds", DEFAULT_TIMEOUT_S))
        cwd = str((folder / tool["cwd"]).resolve()) if "cwd" in tool else None
        if "command" in tool:
            runners.append(CommandTool(tool["name"], list(tool["command"]), timeout, cwd))
        else:
            try:
                fn = load_callable(tool["callable"], [folder, Path.cwd()])
            except CallableLoadError as exc:
                raise _key_error(eff, f"tools[{i}].callable", str(exc),
                                 "check the module is importable from the config file's folder, "
                                 "the current folder or the installed packages") from None
            runners.append(CallableTool(tool["name"], fn, timeout))
        wire.append(_tool_wire(tool))
    return runners, wire


def check_client(eff: Effective) -> None:
    """Check the client settings (duplex, prebuffer_ms, url); a bad one is a ConfigError naming its source."""
    duplex = eff.get("duplex")
    if duplex is not None and duplex not in ("full", "half"):
        raise _key_error(eff, "duplex", f"must be full or half, not {duplex!r}")
    echo = eff.get("echo")
    if echo is not None and echo not in ("aec", "half", "off"):
        raise _key_error(eff, "echo", f"must be aec, half or off, not {echo!r}")
    pre = eff.get("prebuffer_ms")
    if pre is not None and not 0 <= pre <= 2000:
        raise _key_error(eff, "prebuffer_ms", "must be between 0 and 2000")
    for key, top in (("tool_concurrency", 64), ("max_tool_calls", 1000)):
        value = eff.get(key)
        if value is not None and not 1 <= value <= top:
            raise _key_error(eff, key, f"must be between 1 and {top}")
    url = eff.get("url")
    problem = None if url is None else url_problem(url)
    if problem is not None:
        raise _key_error(eff, "url", problem,
                         "e.g. wss://agents.assemblyai.com/v1/ws or ws://127.0.0.1:8765/v1/ws")


def session_config(eff: Effective, declared_tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``session`` object of the first ``session.update``, validated before connecting."""
    from voicecli.protocol.config import SessionConfig, validate_session

    if eff.get("agent_id"):
        session: dict[str, Any] = {"agent_id": eff.get("agent_id")}
    else:
        session = _nest(eff.values)
        session.pop("agent_id", None)
        if declared_tools:
            session["tools"] = declared_tools
    problems = validate_session(session)
    if problems:
        p = problems[0]
        key = p.param or "session"
        src = eff.source(key) or eff.source(key.split("[")[0])
        if src is not None and src.rank == FLAG:
            raise UsageError(f"invalid {src.label.removeprefix('flag ')}: {p.message}")
        raise _key_error(eff, key, p.message)
    # The typed model is the one encoder of session.update (protocol.md 5): what goes on the wire
    # is what it holds, with unmodelled keys carried through unchanged.
    return SessionConfig.from_wire(session).to_wire()


def client_settings(eff: Effective, url: str) -> dict[str, Any]:
    """Devices (a digit string becomes an index), duplex, prebuffer_ms, record_dir, url, local_scenario."""
    client = {k: eff.get(k) for k in CLIENT_KEYS}
    for key in ("input_device", "output_device"):
        value = client[key]
        if isinstance(value, str) and value.strip().isdigit():
            client[key] = int(value)
    client["url"] = url
    client["local_scenario"] = eff.get("local_scenario")
    return client


def load_checked(flags: CommonFlags, stderr: IO[str]) -> Effective:
    """:func:`~voicecli.config.load` plus :func:`check_client`; its warnings (a world-readable file
    holding a key) are written to ``stderr``. Raises UsageError/ConfigError (exit 2)."""
    eff = load(flags)
    for warning in eff.warnings:
        stderr.write(f"voicecli: warning: {warning}\n")
    check_client(eff)
    return eff


def resolve(flags: CommonFlags, stderr: IO[str] | None = None) -> Resolved:
    """Everything a conversation needs. Raises UsageError/ConfigError (exit 2) on bad settings;
    writes warnings to ``stderr`` (default: ``sys.stderr``)."""
    eff = load_checked(flags, stderr or sys.stderr)
    return resolve_effective(eff, UsageError(
        "no API key: set ASSEMBLYAI_API_KEY, or pass --api-key or --token, or add "
        f"api_key to {eff.path}", "or add --local to use the embedded local server"))


def resolve_effective(eff: Effective, no_key: UsageError) -> Resolved:
    """:func:`resolve` for an already layered :class:`Effective` (``eval`` lays a suite over the
    file). Raises ``no_key`` when a remote server would get no key or token, else UsageError/
    ConfigError for a bad setting."""
    local = bool(eff.get("local"))
    api_key, token = eff.get("api_key"), eff.get("token")
    url = eff.get("url") or DEFAULT_URL
    if not local and not api_key and not token and not is_loopback(url):
        raise no_key       # a server on this machine (`voicecli serve`) may need no key; any other does
    runners, wire = build_tools(eff)
    session = session_config(eff, wire)
    return Resolved(url=url, local=local, session=session, api_key=api_key, token=token, tools=runners,
                    client=client_settings(eff, url), config_path=eff.path if eff.exists else None,
                    profile=eff.profile)
