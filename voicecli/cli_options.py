"""Option types shared by the commands of :mod:`voicecli.cli`, :mod:`voicecli.cli_audio` and
:mod:`voicecli.cli_config` (cli-contract.md, common options), and :func:`environment`, the one way a
command gets the :class:`~voicecli.env.Environment` the entry point detected. Imports no command
module, so the command modules and ``cli.py`` import it without a cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voicecli.env import Environment
from voicecli.protocol.constants import DEFAULT_URL

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="VOICECLI_URL",
                                               help=f"Server URL [default: {DEFAULT_URL}].")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Start the embedded local server and talk to it "
                                                        "(no account, no network).")]
LlmUrlOpt = Annotated[str | None, typer.Option(
    "--llm-url", envvar="VOICECLI_LLM_URL", show_envvar=True, show_default=False,
    help="An OpenAI-compatible chat-completions endpoint as the local agent's brain, e.g. "
         "http://127.0.0.1:11434/v1 (its key: the VOICECLI_LLM_API_KEY environment variable). "
         "With --local it answers instead of a config's local_scenario.")]
LlmModelOpt = Annotated[str | None, typer.Option(
    "--llm-model", envvar="VOICECLI_LLM_MODEL", show_envvar=True, show_default=False,
    help="The model name for --llm-url.")]


def llm_flags(url: str | None, model: str | None) -> tuple[str, str] | None:
    """``(url, model)`` for the local server's LLM brain, None without --llm-url; a url without a
    model is a UsageError (exit 2)."""
    from voicecli.errors import UsageError
    if not url:
        return None
    if not model:
        raise UsageError("--llm-url needs --llm-model NAME", "the model name the endpoint serves")
    return url, model


KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="ASSEMBLYAI_API_KEY", show_envvar=True,
                                               help="API key (sent as a Bearer header).", show_default=False)]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Temporary token (sent as ?token=).",
                                                 show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="NDJSON events on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug notices on stderr.")]
PromptOpt = Annotated[str | None, typer.Option("--system-prompt", help="Inline system prompt.")]
GreetingOpt = Annotated[str | None, typer.Option("--greeting", help="Greeting spoken first, verbatim.")]
VoiceOpt = Annotated[str | None, typer.Option("--voice", help="Agent voice (e.g. alba, anna, george).")]
AgentOpt = Annotated[str | None, typer.Option(
    "--agent-id", help="Use a stored agent: its id, or its exact name (looked up in the server's agents "
                       "list; see voicecli agents). Excludes inline session fields.")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", envvar="VOICECLI_PROFILE",
                                                   help="Named profile from the config file.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", envvar="VOICECLI_CONFIG",
                                                   help="Config file (default: the user config dir).")]


def environment(ctx: typer.Context) -> Environment:
    """The Environment of this run: the entry point's (``ctx.obj``); detected here, once, when the
    app was invoked some other way (typer's test runner)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Environment):
        root.obj = Environment.detect()
    env = root.obj
    assert isinstance(env, Environment)
    return env


def echo(env: Environment, text: str) -> None:
    """One line of data on the Environment's stdout, flushed (stdout is data: design.md 8)."""
    env.stdout.write(text + "\n")
    env.stdout.flush()
