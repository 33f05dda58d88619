"""``voicecli config init|show|path`` and ``voicecli token`` (cli-contract.md): plain functions and
the ``config`` sub-app that :mod:`voicecli.cli` registers (this module never imports
``voicecli.cli``). The token HTTP client is :mod:`voicecli.app.tokens`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from voicecli.cli_options import (
    AgentOpt,
    ConfigOpt,
    DebugOpt,
    GreetingOpt,
    KeyOpt,
    LocalOpt,
    ProfileOpt,
    PromptOpt,
    UrlOpt,
    VoiceOpt,
    echo,
    environment,
)
from voicecli.config import SECRET_KEYS, CommonFlags, Effective, config_path
from voicecli.core import run_command
from voicecli.errors import ConfigError, UsageError
from voicecli.protocol.constants import DEFAULT_URL
from voicecli.urls import redact_url

config_app = typer.Typer(name="config", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                         help="Write, show or locate the config file (TOML; profiles; tools).")

STARTER = '''\
# voicecli config (TOML). Every key is optional; precedence: flag > environment > this file > default.
# All keys, with comments: config.example.toml in the voicecli repository.

# url = "wss://agents.assemblyai.com/v1/ws"   # or ws://127.0.0.1:8765/v1/ws for `voicecli serve`
# api_key = "..."              # better: the ASSEMBLYAI_API_KEY environment variable
# local = false                # true: use the embedded local server (no account, no network)

# system_prompt = "You are a concise, friendly voice assistant."
# greeting = "Hi! How can I help?"

[output]
# voice = "alba"

[input.turn_detection]
# min_silence = 600            # ms; must be < max_silence
# max_silence = 2000

# [[tools]]
# name = "get_weather"
# description = "Current weather for a city"
# parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
# command = ["python3", "/path/to/weather.py"]   # argv, no shell; JSON arguments on stdin
# timeout_seconds = 10

# [profiles.local]             # voicecli --profile local ...
# local = true
'''



def _flags(config: Path | None = None, **kw: Any) -> CommonFlags:
    return CommonFlags(config_path=str(config) if config else None, **kw)


@config_app.command("path")
def config_path_cmd(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Print the config file's path (whether or not it exists)."""
    path, _ = config_path(_flags(config=config))
    echo(environment(ctx), str(path))


@config_app.command("init")
def config_init(
    ctx: typer.Context,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Write a starter config file (mode 0600) and print its path."""
    env = environment(ctx)

    async def body() -> None:
        path, _ = config_path(_flags(config=config))
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "add --force to overwrite it")
        _write_private(path, STARTER)
        echo(env, str(path))

    run_command(body, env, debug)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (its folder 0700). Raises ConfigError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}",
                          "pick another place with --config") from None


def _public(key: str, value: Any) -> Any:
    """``value`` as ``config show`` may print it: secrets redacted (a password in the URL too)."""
    if key in SECRET_KEYS:
        return "<redacted>"
    if key == "url" and isinstance(value, str):
        return redact_url(value)
    return value


def _shown(key: str, value: Any) -> str:
    return json.dumps(_public(key, value), ensure_ascii=False)


def _rows(eff: Effective) -> list[tuple[str, Any, str]]:
    """(key, value, source label) of every effective setting, in config.example.toml's order."""
    from voicecli.settings import ordered
    rows: list[tuple[str, Any, str]] = []
    if "url" not in eff.values and not eff.get("local"):
        rows.append(("url", DEFAULT_URL, "default"))
    for key, value, src in ordered(eff.values):
        if key == "tools":
            for tool in value:
                how = {"command": tool["command"]} if "command" in tool else {"callable": tool["callable"]}
                rows.append((f"tools.{tool['name']}", how, src.label))
        else:
            rows.append((key, value, src.label))
    return rows


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    token: Annotated[str | None, typer.Option("--token", help="Temporary token (shown redacted).",
                                                 show_default=False)] = None,
    system_prompt: PromptOpt = None,
    greeting: GreetingOpt = None,
    voice: VoiceOpt = None,
    agent_id: AgentOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    json_mode: Annotated[bool, typer.Option("--json", help="One JSON object: key -> {value, source}.")]
    = False,
    debug: DebugOpt = False,
) -> None:
    """Print the effective settings (secrets redacted) and where each came from. Validates them."""
    from voicecli.settings import build_tools, load_checked, session_config

    env = environment(ctx)
    flags = _flags(url=url, local=local, api_key=api_key, token=token, system_prompt=system_prompt,
                   greeting=greeting, voice=voice, agent_id=agent_id, profile=profile, config=config)

    async def body() -> None:
        eff = load_checked(flags, env.stderr)
        _, wire = build_tools(eff)
        session_config(eff, wire)
        rows = _rows(eff)
        if json_mode:
            out = {k: {"value": _public(k, v), "source": s} for k, v, s in rows}
            echo(env, json.dumps({"config_file": str(eff.path), "exists": eff.exists, "profile": eff.profile,
                                  "settings": out, "ignored": eff.ignored}, ensure_ascii=False))
            return
        echo(env, f"# config file: {eff.path}" + ("" if eff.exists else " (not found)"))
        if eff.profile:
            echo(env, f"# profile: {eff.profile}")
        for key, value, label in rows:
            echo(env, f"{key} = {_shown(key, value)}  # {label}")
        for key, why in eff.ignored.items():
            echo(env, f"# {key}: not used, {why}")

    run_command(body, env, debug)


# ------------------------------------------------------------------------------------------
# voicecli token
# ------------------------------------------------------------------------------------------


def token(
    ctx: typer.Context,
    expires_in: Annotated[int, typer.Option("--expires-in", min=1, max=600,
                                            help="Seconds the token may be redeemed in.")] = 300,
    max_session_duration: Annotated[int | None, typer.Option(
        "--max-session-duration", min=60, max=10800,
        help="Cap on the session's length in seconds [server default: 10800].")] = None,
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Mint a single-use temporary token (GET /v1/token) and print it, for browsers and scripts."""
    from voicecli.app.tokens import mint_token
    from voicecli.settings import load_checked

    env = environment(ctx)
    flags = _flags(url=url, local=local, api_key=api_key, profile=profile, config=config)

    async def body() -> None:
        import asyncio
        eff = load_checked(flags, env.stderr)
        key = eff.get("api_key")
        url = eff.get("url") or DEFAULT_URL
        if eff.get("local"):
            minted = await _mint_local(key, expires_in, max_session_duration)
            env.stderr.write("voicecli: note: this token is for the embedded server, which stops now\n")
        else:
            if not key and url == DEFAULT_URL:    # the service always needs one; a --url may not
                raise UsageError("minting a token needs an API key: set ASSEMBLYAI_API_KEY or pass "
                                 "--api-key", "or add api_key to the config file")
            minted = await asyncio.to_thread(mint_token, url, key, expires_in, max_session_duration)
        echo(env, minted)

    run_command(body, env, debug)


async def _mint_local(key: str | None, expires_in: int, max_duration: int | None) -> str:
    """A token from a short-lived embedded server (useful only while it runs: tests, demos)."""
    import asyncio

    from voicecli.app.tokens import mint_token
    from voicecli.server.app import ServerThread
    from voicecli.server.options import ServerOptions
    thread = ServerThread(ServerOptions(port=0))
    ws_url = await asyncio.to_thread(thread.start)
    try:
        return await asyncio.to_thread(mint_token, ws_url, key, expires_in, max_duration)
    finally:
        await asyncio.to_thread(thread.stop)
