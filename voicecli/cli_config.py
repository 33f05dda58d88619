"""``voicecli config init|show|path`` and ``voicecli token`` (cli-contract.md), registered on
``voicecli.cli.app`` when ``voicecli.cli`` imports this module."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Annotated, Any

import typer

from voicecli.cli import (
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
    app,
    run_command,
)
from voicecli.errors import AuthError, ConfigError, ConnectError, ServerError, UsageError

config_app = typer.Typer(name="config", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                         help="Write, show or locate the config file (TOML; profiles; tools).")
app.add_typer(config_app, name="config")

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


def _flags(**kw: Any) -> Any:
    from voicecli.settings import CommonFlags
    config = kw.pop("config", None)
    return CommonFlags(config_path=str(config) if config else None, **kw)


@config_app.command("path")
def config_path_cmd(config: ConfigOpt = None) -> None:
    """Print the config file's path (whether or not it exists)."""
    from voicecli.settings import config_path
    path, _ = config_path(_flags(config=config))
    typer.echo(str(path))


@config_app.command("init")
def config_init(
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Write a starter config file (mode 0600) and print its path."""
    from voicecli.settings import config_path

    async def body() -> None:
        path, _ = config_path(_flags(config=config))
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "add --force to overwrite it")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(STARTER)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}",
                              "pick another place with --config") from None
        typer.echo(str(path))

    run_command(body, debug)


def _shown(key: str, value: Any) -> str:
    from voicecli.settings import SECRET_KEYS
    if key in SECRET_KEYS:
        return '"<redacted>"'
    return json.dumps(value, ensure_ascii=False)


@config_app.command("show")
def config_show(
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
    from voicecli.settings import DEFAULT_URL, build_tools, check_client, load, ordered, session_config

    flags = _flags(url=url, local=local, api_key=api_key, token=token, system_prompt=system_prompt,
                   greeting=greeting, voice=voice, agent_id=agent_id, profile=profile, config=config)

    async def body() -> None:
        eff = load(flags)
        for warning in eff.warnings:
            sys.stderr.write(f"voicecli: warning: {warning}\n")
        check_client(eff)
        _, wire = build_tools(eff)
        session_config(eff, wire)
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
        if json_mode:
            out = {k: {"value": "<redacted>" if k in ("api_key", "token") else v, "source": s}
                   for k, v, s in rows}
            typer.echo(json.dumps({"config_file": str(eff.path), "exists": eff.exists,
                                   "profile": eff.profile, "settings": out,
                                   "ignored": eff.ignored}, ensure_ascii=False))
            return
        state = "" if eff.exists else " (not found)"
        typer.echo(f"# config file: {eff.path}{state}")
        if eff.profile:
            typer.echo(f"# profile: {eff.profile}")
        for key, value, label in rows:
            typer.echo(f"{key} = {_shown(key, value)}  # {label}")
        for key, why in eff.ignored.items():
            typer.echo(f"# {key}: not used, {why}")

    run_command(body, debug)


# ------------------------------------------------------------------------------------------
# voicecli token
# ------------------------------------------------------------------------------------------


def token_url(ws_url: str) -> str:
    """``ws://h:p/v1/ws`` -> ``http://h:p/v1/token`` (``wss`` -> ``https``); the query is dropped."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"cannot derive the token endpoint from the server URL scheme {parts.scheme!r}",
                         "use a ws:// or wss:// URL")
    head, _, last = parts.path.rstrip("/").rpartition("/")
    path = f"{head}/token" if last in ("ws", "voice", "realtime") else "/v1/token"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        item = detail[0]
        where = ".".join(str(x) for x in item.get("loc", [])[1:])
        return f"{where}: {item.get('msg', '')}".strip(": ")
    return str(detail or "")


def mint_token(ws_url: str, api_key: str, expires_in: int, max_duration: int | None,
               timeout: float = 10.0) -> str:
    """``GET /v1/token`` (protocol.md 1.3). Blocking (run it in a thread). Raises AuthError (401/403),
    ConnectError (unreachable), ServerError (anything else unexpected), UsageError (422)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    from voicecli.app.transport import is_loopback
    from voicecli.ui.sanitize import clean

    query = {"expires_in_seconds": expires_in}
    if max_duration is not None:
        query["max_session_duration_seconds"] = max_duration
    url = f"{token_url(ws_url)}?{urlencode(query)}"
    shown = token_url(ws_url)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}",
                                                   "Accept": "application/json"})
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(ws_url) else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = clean(_detail(exc.read()), 200)
        if exc.code in (401, 403):
            raise AuthError(f"the server refused the API key (HTTP {exc.code}"
                            + (f": {detail}" if detail else "") + ")",
                            "check --api-key / ASSEMBLYAI_API_KEY") from None
        if exc.code == 422:
            raise UsageError(f"the server rejected the token request: {detail or 'invalid value'}",
                             "--expires-in takes 1-600, --max-session-duration 60-10800") from None
        raise ServerError(f"the token endpoint {shown} answered HTTP {exc.code}"
                          + (f": {detail}" if detail else ""), "check the URL") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ConnectError(f"cannot reach the token endpoint {shown}: {clean(reason, 200)}",
                           "is the server running? check --url") from None
    except (TimeoutError, OSError) as exc:
        raise ConnectError(f"cannot reach the token endpoint {shown}: {exc.__class__.__name__}",
                           "is the server running? check --url") from None
    try:
        token = json.loads(body)["token"]
        if not isinstance(token, str) or not token:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"the token endpoint {shown} answered without a token",
                          "check the URL points at a Voice Agent API server") from None
    return token


@app.command()
def token(
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
    from voicecli.settings import DEFAULT_URL, check_client, load

    flags = _flags(url=url, local=local, api_key=api_key, profile=profile, config=config)

    async def body() -> None:
        eff = load(flags)
        for warning in eff.warnings:
            sys.stderr.write(f"voicecli: warning: {warning}\n")
        check_client(eff)
        key = eff.get("api_key")
        if eff.get("local"):
            from voicecli.server.app import ServerThread
            from voicecli.server.options import ServerOptions
            thread = ServerThread(ServerOptions(port=0))
            ws_url = await asyncio.to_thread(thread.start)
            try:
                minted = await asyncio.to_thread(mint_token, ws_url, key or "local", expires_in,
                                                 max_session_duration)
            finally:
                await asyncio.to_thread(thread.stop)
            sys.stderr.write("voicecli: note: this token is for the embedded server, which stops now\n")
        else:
            if not key:
                raise UsageError("minting a token needs an API key: set ASSEMBLYAI_API_KEY or pass "
                                 "--api-key", "or add api_key to the config file")
            minted = await asyncio.to_thread(mint_token, eff.get("url") or DEFAULT_URL, key, expires_in,
                                             max_session_duration)
        typer.echo(minted)

    run_command(body, debug)

