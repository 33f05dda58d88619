"""``voicecli agents list|show|create|update|delete`` (cli-contract.md): stored agents on the real
service or the local server (protocol.md 6.9). A sub-app :mod:`voicecli.cli` registers; it imports
only typer and the shared option types at import time (the HTTP client and the agent file reader
load inside the commands, so ``voicecli --help`` stays light).

The server comes from ``--url`` (its ``/v1/agents`` beside ``/v1/ws``) or ``--local`` (an embedded
server on the user's default agents store, the one a plain ``voicecli serve`` uses). Agents are
read from TOML in the config file's shape (``name``, ``system_prompt``, ``greeting``, ``[output]
voice``, ``[input]``, ``[[tools]]``, ``[[llm]]``) or JSON in the REST shape; ``show`` prints that
TOML (``--json``: the REST JSON). Keys are never printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from voicecli.cli_options import ConfigOpt, DebugOpt, KeyOpt, LocalOpt, ProfileOpt, UrlOpt, echo, environment
from voicecli.config import CommonFlags
from voicecli.core import run_command
from voicecli.env import Environment

agents_app = typer.Typer(name="agents", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                         help="Stored agents (Agents REST API) on the service, a local server (--url) "
                              "or the embedded one (--local).")

T = TypeVar("T")
JsonOut = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]
FromOpt = Annotated[Path, typer.Option("--from", help="The agent: TOML in the config file's shape "
                                                      "(see examples/agent.toml) or JSON.",
                                       show_default=False)]
IdArg = Annotated[str, typer.Argument(help="The agent's id (or its exact name).", metavar="ID_OR_NAME",
                                       show_default=False)]


def _call(env: Environment, url: str | None, local: bool, api_key: str | None, profile: str | None,
          config: Path | None, fn: Callable[[Any], T]) -> T:
    """Resolve the server and key like every command, then ``fn(client)`` in a thread (with an
    embedded server around it for ``--local``)."""
    from voicecli.app.agents_api import AgentsClient
    from voicecli.errors import UsageError
    from voicecli.protocol.constants import DEFAULT_URL
    from voicecli.settings import load_checked
    from voicecli.urls import is_loopback

    eff = load_checked(CommonFlags(url=url, local=local, api_key=api_key, profile=profile,
                                   config_path=str(config) if config else None), env.stderr)
    key = eff.get("api_key")
    if eff.get("local"):
        from voicecli.server.app import ServerThread
        from voicecli.server.options import ServerOptions
        thread = ServerThread(ServerOptions(port=0, engine="basic", tts="tone"))
        ws_url = thread.start()
        try:
            return fn(AgentsClient(ws_url, key))
        finally:
            thread.stop()
    ws_url = eff.get("url") or DEFAULT_URL
    if not key and not is_loopback(ws_url):
        raise UsageError("the agents API needs an API key: set ASSEMBLYAI_API_KEY or pass --api-key",
                         "or add --local for the embedded server's agents")
    return fn(AgentsClient(ws_url, key))


def _run(ctx: typer.Context, debug: bool, work: Callable[[Environment], None]) -> None:
    env = environment(ctx)

    async def body() -> None:
        import asyncio  # here, not at the top: `--help` never loads the event loop
        await asyncio.to_thread(work, env)

    run_command(body, env, debug)


# the fields of protocol.md 6.9 (others are sent as they are, with a warning: a typo is not lost silently)
KNOWN_FIELDS = ("name", "system_prompt", "greeting", "voice", "input", "output", "tools", "llm",
                "pre_connect_requests")
READ_ONLY = ("id", "created_at", "updated_at")   # what `agents show` prints and the API assigns


def _read(env: Environment, path: Path) -> dict[str, Any]:
    """The agent in ``path`` (REST shape), without the fields the server assigns."""
    import difflib

    from voicecli.errors import UsageError
    from voicecli.server.agents import AgentFileError, from_config_shape, read_agent_file
    try:
        data = read_agent_file(path.expanduser())
        if not isinstance(data, dict):
            raise AgentFileError(f"{path}: an agent is a table (TOML) or an object (JSON)")
        agent = data if path.suffix.lower() == ".json" else from_config_shape(data, str(path))
    except AgentFileError as exc:
        raise UsageError(str(exc), "examples/agent.toml shows the shape") from None
    for key in agent:
        if key not in KNOWN_FIELDS and key not in READ_ONLY:
            close = difflib.get_close_matches(key, KNOWN_FIELDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            env.stderr.write(f"voicecli: warning: {path}: {key!r} is not an agent field of the API "
                             f"(sent as it is{hint})\n")
    return {k: v for k, v in agent.items() if k not in READ_ONLY}


@agents_app.command("list")
def agents_list(ctx: typer.Context, url: UrlOpt = None, local: LocalOpt = False, api_key: KeyOpt = None,
                json_mode: JsonOut = False, profile: ProfileOpt = None, config: ConfigOpt = None,
                debug: DebugOpt = False) -> None:
    """List the stored agents (id, name, last update)."""
    def work(env: Environment) -> None:
        agents = _call(env, url, local, api_key, profile, config, lambda c: c.list())
        if json_mode:
            from voicecli.app.agents_api import safe_json
            echo(env, safe_json(agents))
            return
        from voicecli.ui.sanitize import clean
        rows = [(clean(str(a.get("id", "")), 80), clean(str(a.get("name", "")), 80),
                 clean(str(a.get("updated_at") or a.get("created_at") or ""), 40)) for a in agents]
        if env.live:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text
            table = Table("id", "name", "updated")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))     # server text is not markup
            Console(file=env.stdout).print(table if rows else "no agents")
            return
        for row in rows:
            echo(env, "\t".join(row))

    _run(ctx, debug, work)


@agents_app.command("show")
def agents_show(ctx: typer.Context, agent: IdArg, url: UrlOpt = None, local: LocalOpt = False,
                api_key: KeyOpt = None, json_mode: JsonOut = False, profile: ProfileOpt = None,
                config: ConfigOpt = None, debug: DebugOpt = False) -> None:
    """Print one agent: TOML in the config file's shape (--json: the API's JSON)."""
    def work(env: Environment) -> None:
        record = _call(env, url, local, api_key, profile, config, lambda c: c.get(c.resolve(agent)))
        _print(env, record, json_mode)

    _run(ctx, debug, work)


def _print(env: Environment, record: dict[str, Any], json_mode: bool) -> None:
    from voicecli.app.agents_api import safe_json, to_toml
    from voicecli.server.agents import public, to_config_shape
    record = public(record)            # an llm api_key is write-only: never shown
    if json_mode:
        echo(env, safe_json(record))
    else:
        env.stdout.write(to_toml(to_config_shape(record)))   # strings escaped: no control characters
        env.stdout.flush()


@agents_app.command("create")
def agents_create(ctx: typer.Context, source: FromOpt, url: UrlOpt = None, local: LocalOpt = False,
                  api_key: KeyOpt = None, json_mode: JsonOut = False, profile: ProfileOpt = None,
                  config: ConfigOpt = None, debug: DebugOpt = False) -> None:
    """Create an agent from a file; prints its id (--json: the whole agent)."""
    def work(env: Environment) -> None:
        agent = _read(env, source)
        record = _call(env, url, local, api_key, profile, config, lambda c: c.create(agent))
        _print_id(env, record, json_mode)

    _run(ctx, debug, work)


def _print_id(env: Environment, record: dict[str, Any], json_mode: bool) -> None:
    """What create/update print: the agent's id (``--json``: the whole agent)."""
    if json_mode:
        _print(env, record, True)
    else:
        echo(env, str(record.get("id", "")))


@agents_app.command("update")
def agents_update(ctx: typer.Context, agent: IdArg, source: FromOpt, url: UrlOpt = None,
                  local: LocalOpt = False, api_key: KeyOpt = None, json_mode: JsonOut = False,
                  profile: ProfileOpt = None, config: ConfigOpt = None, debug: DebugOpt = False) -> None:
    """Replace an agent's fields with the file's (fields the file leaves out are kept)."""
    def work(env: Environment) -> None:
        fields = _read(env, source)
        record = _call(env, url, local, api_key, profile, config,
                       lambda c: c.update(c.resolve(agent), fields))
        _print_id(env, record, json_mode)

    _run(ctx, debug, work)


@agents_app.command("delete")
def agents_delete(ctx: typer.Context, agent: IdArg, url: UrlOpt = None, local: LocalOpt = False,
                  api_key: KeyOpt = None, profile: ProfileOpt = None, config: ConfigOpt = None,
                  debug: DebugOpt = False) -> None:
    """Delete an agent; prints its id."""
    def work(env: Environment) -> None:
        def delete(c: Any) -> str:
            agent_id = str(c.resolve(agent))
            c.delete(agent_id)
            return agent_id
        echo(env, _call(env, url, local, api_key, profile, config, delete))

    _run(ctx, debug, work)
