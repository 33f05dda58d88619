"""The ``voicecli`` command line (cli-contract.md). Thin: parse, resolve settings, call ``app``,
map errors to exit codes. Heavy imports (numpy, soundfile, websockets, sounddevice) happen inside
the commands so ``voicecli --help`` is fast and works without PortAudio."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from voicecli import __version__
from voicecli.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    VoicecliError,
)

app = typer.Typer(
    name="voicecli", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Talk to an AssemblyAI Voice Agent from the terminal, or run a local server that speaks "
         "the same protocol (no account, no network: add --local).",
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")
from voicecli.settings import DEFAULT_URL


class Pace(str, Enum):
    realtime = "realtime"
    fast = "fast"


def _print_error(exc: VoicecliError) -> None:
    from voicecli.ui.sanitize import clean
    sys.stderr.write(f"voicecli: error: {clean(exc.one_line(), 1000)}\n")
    sys.stderr.flush()


def run_command(fn: Callable[[], Coroutine[Any, Any, T]], debug: bool = False) -> T:
    """Run an async command body; map errors and Ctrl-C to exit codes (design.md principle 11)."""
    try:
        return asyncio.run(fn())
    except VoicecliError as exc:
        if debug:
            import traceback
            traceback.print_exc()
        _print_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("voicecli: interrupted\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"voicecli {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """voicecli: a terminal client for the AssemblyAI Voice Agent API."""


# ------------------------------------------------------------------------------------------
# shared option types
# ------------------------------------------------------------------------------------------

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="VOICECLI_URL",
                                               help=f"Server URL [default: {DEFAULT_URL}].")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Start the embedded local server and talk to it "
                                                        "(no account, no network).")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="ASSEMBLYAI_API_KEY", show_envvar=True,
                                               help="API key (sent as a Bearer header).", show_default=False)]
TokenOpt = Annotated[str | None, typer.Option("--token", help="Temporary token (sent as ?token=).",
                                                 show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="NDJSON events on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug notices on stderr.")]
PromptOpt = Annotated[str | None, typer.Option("--system-prompt", help="Inline system prompt.")]
GreetingOpt = Annotated[str | None, typer.Option("--greeting", help="Greeting spoken first, verbatim.")]
VoiceOpt = Annotated[str | None, typer.Option("--voice", help="Agent voice (e.g. alba, anna, george).")]
AgentOpt = Annotated[str | None, typer.Option("--agent-id", help="Use a stored agent (no inline fields).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", envvar="VOICECLI_PROFILE",
                                                   help="Named profile from the config file.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", envvar="VOICECLI_CONFIG",
                                                   help="Config file (default: the user config dir).")]


def make_output(json_mode: bool, labels: bool, debug: bool) -> Any:
    from voicecli.ui.output import JsonOutput, PlainOutput
    if json_mode:
        return JsonOutput()
    if not sys.stdout.isatty():
        return PlainOutput(labels=labels, verbose=debug)
    from voicecli.ui.live import LiveOutput
    return LiveOutput(verbose=debug)


# ------------------------------------------------------------------------------------------
# ask
# ------------------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
def ask(
    files: Annotated[list[Path], typer.Argument(help="Audio files (WAV/FLAC/OGG/MP3, any rate); "
                                                     "each is one user turn.", show_default=False)],
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    system_prompt: PromptOpt = None,
    greeting: GreetingOpt = None,
    voice: VoiceOpt = None,
    agent_id: AgentOpt = None,
    json_mode: JsonOpt = False,
    transcript: Annotated[bool, typer.Option("--transcript", help="Also print user:/agent: lines.")] = False,
    save_reply: Annotated[Path | None, typer.Option("--save-reply", help="Write the agent's audio "
                                                       "(24 kHz mono PCM16 WAV).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each reply.")] = 30.0,
    pace: Annotated[Pace, typer.Option("--pace", help="realtime, or fast for servers that allow it.")]
    = Pace.realtime,
    trailing_silence: Annotated[int, typer.Option("--trailing-silence", min=0, max=30000,
                                                  help="Silence (ms) sent after each file.")] = 1000,
    chunk_ms: Annotated[int, typer.Option("--chunk-ms", min=20, max=100,
                                          help="input.audio chunk length (ms).")] = 50,
    expect: Annotated[list[str] | None, typer.Option(
        "--expect", help="A regular expression the agent's reply to the Nth file must match (give it once "
                         "per file, in order; case-insensitive). Any mismatch: exit 1.")] = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    barge_in_after: Annotated[int | None, typer.Option(
        "--barge-in-after", min=0, help="Start the next file this many ms into the agent's reply "
                                        "(tests the agent's interruption handling).")] = None,
    debug: DebugOpt = False,
) -> None:
    """One-shot or scripted prompts: each FILE is a user turn; prints the agent's replies."""
    from voicecli.app.ask import AskOptions, run_ask
    from voicecli.app.endpoint import Endpoint
    from voicecli.audio.files import load_audio_files
    from voicecli.settings import CommonFlags, resolve
    from voicecli.tools import ToolRunner

    flags = CommonFlags(url=url, local=local, api_key=api_key, token=token, system_prompt=system_prompt,
                        greeting=greeting, voice=voice, agent_id=agent_id, profile=profile,
                        config_path=str(config) if config else None)

    async def body() -> None:
        if expect and len(expect) > len(files):
            raise UsageError(f"{len(expect)} --expect patterns for {len(files)} file(s)",
                             "give at most one --expect per file")
        for pattern in expect or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UsageError(f"--expect {pattern!r} is not a valid regular expression: {exc}") from None
        audio = load_audio_files(files)            # bad files fail before connecting (exit 6)
        resolved = resolve(flags)                  # bad settings fail before connecting (exit 2)
        output = make_output(json_mode, transcript, debug)
        try:
            with Endpoint(resolved) as endpoint:
                settings = endpoint.connection(resolved.session, ready_timeout=timeout)
                await run_ask(settings, audio, AskOptions(
                    pace=pace.value, chunk_ms=chunk_ms, trailing_silence_ms=trailing_silence,
                    timeout_s=timeout, save_reply=save_reply, barge_in_after_ms=barge_in_after,
                    expect=list(expect or [])), output,
                    ToolRunner(resolved.tools))
        finally:
            output.close()

    run_command(body, debug)


# ------------------------------------------------------------------------------------------
# serve
# ------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 = a free port).")] = 8765,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="VOICECLI_SERVE_API_KEY",
                                                   show_envvar=True, show_default=False,
                                                   help="Require this key (or a token minted with it).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="default, or scripted (a test double driven by "
                                                         "a scenario).")] = "default",
    scenario: Annotated[str | None, typer.Option("--scenario", help="Scenario name or file for the "
                                                                       "scripted engine.")] = None,
    tts: Annotated[str, typer.Option("--tts", help="espeak (real words) or tone (test double).")] = "espeak",
    fault: Annotated[str | None, typer.Option("--fault", help="Fault switches for tests, e.g. "
                                                 "drop-after-replies=1,refuse-resume,unknown-events,"
                                                 "ready-delay=500.")] = None,
    no_rate_check: Annotated[bool, typer.Option("--no-rate-check", help="Accept input audio faster than "
                                                                        "real time (for ask --pace fast).")]
    = False,
    debug: DebugOpt = False,
) -> None:
    """Run the local Voice Agent API server. Prints its URL when listening."""
    from voicecli.server.app import LocalServer
    from voicecli.server.options import Faults, ServerOptions

    async def body() -> None:
        if engine not in ("default", "scripted"):
            raise UsageError(f"unknown engine {engine!r}", "use default or scripted")
        if tts not in ("espeak", "tone"):
            raise UsageError(f"unknown tts {tts!r}", "use espeak or tone")
        try:
            faults = Faults.parse(fault or "")
        except ValueError as exc:
            raise UsageError(f"bad --fault: {exc}") from None
        options = ServerOptions(host=host, port=port, api_key=api_key, scenario=scenario,
                                engine=engine, tts=tts,  # type: ignore[arg-type]  # checked above
                                enforce_realtime=not no_rate_check, faults=faults)
        server = LocalServer(options)
        try:
            url = await server.start()
        except OSError as exc:
            from voicecli.errors import ConnectError
            raise ConnectError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                               "pick another --port, or --port 0 for a free one") from None
        print(url, flush=True)
        if api_key is None:
            sys.stderr.write("voicecli serve: no --api-key set, so any key (or none) is accepted\n")
        sys.stderr.flush()
        try:
            await server.serve_forever()
        finally:
            await server.stop()

    run_command(body, debug)


def _register_command_modules() -> None:
    """Commands that live in their own modules register themselves on ``app`` when imported."""
    import importlib
    for name in ("voicecli.cli_audio", "voicecli.cli_config"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


_register_command_modules()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()


if __name__ == "__main__":
    # `python -m voicecli.cli`: run the importable module's app, on which the command modules
    # (cli_audio, cli_config) registered themselves, not this __main__ copy's.
    from voicecli.cli import main as _main
    _main()
