"""The ``voicecli`` command line (cli-contract.md). Thin: parse, resolve settings, call ``app``,
return an exit status. :func:`main` goes through :func:`voicecli.core.raw_main` (the one exit map and
the one :class:`~voicecli.env.Environment`). ``chat``/``devices``/``doctor`` live in
:mod:`voicecli.cli_audio`, ``config``/``token`` in :mod:`voicecli.cli_config`. Heavy imports
(numpy, soundfile, websockets, sounddevice) happen inside
the commands so ``voicecli --help`` is fast and works without PortAudio."""

from __future__ import annotations

import os
import re
import signal
import sys
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from voicecli import __version__, cli_agents, cli_audio, cli_config
from voicecli.cli_options import (
    AgentOpt,
    ConfigOpt,
    DebugOpt,
    GreetingOpt,
    JsonOpt,
    KeyOpt,
    LlmModelOpt,
    LlmUrlOpt,
    LocalOpt,
    ProfileOpt,
    PromptOpt,
    TokenOpt,
    UrlOpt,
    VoiceOpt,
    environment,
    llm_flags,
)
from voicecli.core import raw_main, run_command
from voicecli.env import Environment
from voicecli.errors import ConnectError, UsageError
from voicecli.status import ExitStatus

app = typer.Typer(
    name="voicecli", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Talk to an AssemblyAI Voice Agent from the terminal, or run a local server that speaks "
         "the same protocol (no account, no network: add --local).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Pace(StrEnum):
    realtime = "realtime"
    fast = "fast"


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"voicecli {__version__}")
        raise typer.Exit(ExitStatus.OK)


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """voicecli: a terminal client for the AssemblyAI Voice Agent API."""
    environment(ctx)


# ------------------------------------------------------------------------------------------
# ask
# ------------------------------------------------------------------------------------------


class _KeepsArgs(typer.core.TyperCommand):
    """Keeps the raw arguments (``ctx.meta["voicecli.args"]``): ``ask`` needs the order of its
    files and ``--say`` turns, which click's parsed values do not keep."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["voicecli.args"] = list(args)
        result: list[str] = super().parse_args(ctx, args)
        return result


def _in_order(ctx: typer.Context, files: list[Path], says: list[str]) -> list[Path | str]:
    """Files and ``--say`` texts in the order they were given on the command line."""
    raw = ctx.meta.get("voicecli.args")
    if raw is None:
        return [*files, *says]
    takes_value = {opt for p in ctx.command.params if p.param_type_name == "option"
                   and not getattr(p, "is_flag", False) and not getattr(p, "count", False)
                   for opt in (*p.opts, *p.secondary_opts)}
    out: list[Path | str] = []
    fi = si = i = 0
    only_args = False
    while i < len(raw):
        tok = raw[i]
        i += 1
        if not only_args and tok == "--":
            only_args = True
        elif not only_args and (tok == "--say" or tok.startswith("--say=")):
            if si < len(says):
                out.append(says[si])
                si += 1
            i += tok == "--say"
        elif not only_args and tok in takes_value:
            i += 1
        elif not only_args and tok.startswith("-") and tok != "-":
            pass                               # a flag, or --option=value
        elif fi < len(files):
            out.append(files[fi])
            fi += 1
    return [*out, *files[fi:], *says[si:]]


@app.command(no_args_is_help=True, cls=_KeepsArgs)
def ask(
    ctx: typer.Context,
    files: Annotated[list[Path] | None, typer.Argument(
        help="Audio files (WAV/FLAC/OGG/MP3, any rate); each is one user turn. - reads one file "
             "from standard input.", show_default=False)] = None,
    say: Annotated[list[str] | None, typer.Option(
        "--say", help="A user turn spoken from TEXT (synthesized locally with espeak-ng); repeatable, "
                      "in order with the files.", show_default=False)] = None,
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    system_prompt: PromptOpt = None,
    greeting: GreetingOpt = None,
    voice: VoiceOpt = None,
    agent_id: AgentOpt = None,
    llm_url: LlmUrlOpt = None,
    llm_model: LlmModelOpt = None,
    json_mode: JsonOpt = False,
    transcript: Annotated[bool, typer.Option("--transcript", help="Also print user:/agent: lines.")] = False,
    save_reply: Annotated[Path | None, typer.Option("--save-reply", help="Write the agent's audio "
                                                       "(24 kHz mono PCM16 WAV).")] = None,
    play: Annotated[bool, typer.Option("--play", help="Play the agent's audio on the speaker as it "
                                                      "arrives (with --save-reply too).")] = False,
    output_device: Annotated[str | None, typer.Option(
        "--output-device", help="--play: speaker, index or part of the name, or a sound server sink's "
                                "description (see `voicecli devices`).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds to wait for each reply.")] = 30.0,
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
    tool_concurrency: Annotated[int | None, typer.Option(
        "--tool-concurrency", min=1, max=64,
        help="The most tool commands run at once; further tool.calls wait their turn "
             "[default: 4; config tool_concurrency].")] = None,
    barge_in_after: Annotated[int | None, typer.Option(
        "--barge-in-after", min=0, help="Start the next file this many ms into the agent's reply "
                                        "(tests the agent's interruption handling).")] = None,
    debug: DebugOpt = False,
) -> None:
    """One-shot or scripted prompts: each FILE (or --say TEXT) is a user turn; prints the agent's
    replies."""
    from voicecli.app.ask import AskOptions, run_ask
    from voicecli.app.endpoint import Endpoint
    from voicecli.audio.files import open_audio_files
    from voicecli.config import CommonFlags
    from voicecli.settings import resolve
    from voicecli.tools import configured_runner
    from voicecli.ui.modes import make_output

    env = environment(ctx)

    flags = CommonFlags(url=url, local=local, api_key=api_key, token=token, system_prompt=system_prompt,
                        greeting=greeting, voice=voice, agent_id=agent_id, profile=profile,
                        config_path=str(config) if config else None, tool_concurrency=tool_concurrency)

    paths, says = list(files or []), list(say or [])

    async def body() -> None:
        if not paths and not says:
            raise UsageError("nothing to ask", "give an audio file, - for one on standard input, "
                                               "or --say TEXT")
        if any(not text.strip() for text in says):
            raise UsageError("--say needs words", "e.g. --say \"what is the weather in Paris\"")
        _check_expect(expect or [], len(paths) + len(says))
        if save_reply is not None:
            check_writable(save_reply, "--save-reply")
        if any(str(p) == "-" for p in paths) and sys.stdin is not None and sys.stdin.isatty():
            raise UsageError("'-' reads the audio from standard input, which is a terminal",
                             "pipe or redirect a file: voicecli ask - < question.wav")
        decoded = iter(open_audio_files(paths))    # probed: bad files fail before connecting (exit 6)
        turns = [item if isinstance(item, str) else next(decoded)
                 for item in _in_order(ctx, paths, says)]
        resolved = resolve(flags, env.stderr)      # bad settings fail before connecting (exit 2)
        llm = llm_flags(llm_url, llm_model)
        output = make_output(env, json_mode, transcript, debug)
        try:
            with Endpoint(resolved, llm) as endpoint:
                settings = endpoint.connection(resolved.session, ready_timeout=timeout)
                await run_ask(settings, turns, AskOptions(
                    pace=pace.value, chunk_ms=chunk_ms, trailing_silence_ms=trailing_silence,
                    timeout_s=timeout, save_reply=save_reply, barge_in_after_ms=barge_in_after,
                    expect=list(expect or []), play=play, output_device=output_device), output,
                    configured_runner(resolved.tools, resolved.client))
        finally:
            output.close()

    run_command(body, env, debug)


def _check_expect(expect: list[str], files: int) -> None:
    """``--expect``: at most one per turn, each a valid regular expression (else UsageError)."""
    if len(expect) > files:
        raise UsageError(f"{len(expect)} --expect patterns for {files} file(s)",
                         "give at most one --expect per turn (file or --say)")
    for pattern in expect:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--expect {pattern!r} is not a valid regular expression: {exc}") from None


# ------------------------------------------------------------------------------------------
# eval
# ------------------------------------------------------------------------------------------


@app.command(name="eval", no_args_is_help=True)
def eval_(
    ctx: typer.Context,
    suites: Annotated[list[Path], typer.Argument(help="Suite files (TOML: conversations of turns with "
                                                      "expectations; see README, Evals).",
                                                 show_default=False)],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=500,
                                             help="Conversations run at once (real-time sessions).")] = 1,
    repeat: Annotated[int, typer.Option("--repeat", min=1, max=1000,
                                        help="Run each conversation this many times.")] = 1,
    name_filter: Annotated[str | None, typer.Option(
        "--filter", help="Only conversations whose SUITE/NAME matches this regular expression.")] = None,
    json_mode: JsonOpt = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML here (one testcase "
                                                               "per conversation).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each reply "
                                                                      "(a suite's timeout_s wins).")] = 30.0,
    trailing_silence: Annotated[int, typer.Option("--trailing-silence", min=0, max=30000,
                                                  help="Silence (ms) sent after each spoken turn.")] = 1000,
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    agent_id: AgentOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run conversation test suites; exit 0 all passed, 1 an expectation failed."""
    from voicecli.app.eval_main import EvalOptions, run_eval
    from voicecli.config import CommonFlags

    env = environment(ctx)
    flags = CommonFlags(url=url, local=local, api_key=api_key, token=token, agent_id=agent_id,
                        profile=profile, config_path=str(config) if config else None)
    opts = EvalOptions(concurrency=concurrency, repeat=repeat, filter=name_filter, timeout_s=timeout,
                       trailing_silence_ms=trailing_silence)

    async def body() -> int:
        from voicecli.ui.eval_output import write_junit
        if junit is not None:
            check_writable(junit, "--junit")
        reporter = eval_reporter(env, json_mode, debug)
        try:
            status, results = await run_eval(suites, flags, opts, reporter, env.stderr)
        finally:
            reporter.close()
        if junit is not None:
            write_junit(junit, results)
        return status

    raise typer.Exit(run_command(body, env, debug))


def eval_reporter(env: Environment, json_mode: bool, debug: bool) -> Any:
    """Plain lines when piped, NDJSON with --json, the rich live table on a terminal."""
    from voicecli.ui.eval_output import JsonReporter, PlainReporter
    if json_mode:
        return JsonReporter(env.stdout, env.stderr, debug)
    if not env.live:
        return PlainReporter(env.stdout, env.stderr, debug)
    from voicecli.ui.eval_live import LiveReporter
    return LiveReporter(env)


def check_writable(path: Path, flag: str) -> None:
    """An output path must be writable before anything runs (a missing folder fails now, exit 2)."""
    folder = path.expanduser().parent
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory", "give a file path")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path} is not writable", "pick another path")
    import tempfile
    try:     # permissions say yes to root and on read-only or pseudo file systems: try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path} is not writable ({exc.strerror or exc})",
                         "pick another path") from None


# ------------------------------------------------------------------------------------------
# serve
# ------------------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 = a free port).")] = 8765,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="VOICECLI_SERVE_API_KEY", show_envvar=True, show_default=False,
        help="Require this key (or a token minted with it).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="default (the best installed engines), basic "
                                                         "(no models), or scripted (a test double driven "
                                                         "by a scenario).")] = "default",
    scenario: Annotated[str | None, typer.Option("--scenario", help="Scenario name or file for the "
                                                                       "scripted engine.")] = None,
    tts: Annotated[str, typer.Option("--tts", help="auto (piper when installed, else espeak), piper, espeak, "
                                                   "or tone (test double).")] = "auto",
    llm_url: LlmUrlOpt = None,
    llm_model: LlmModelOpt = None,
    fault: Annotated[str | None, typer.Option("--fault", help="Fault switches for tests, e.g. "
                                                 "drop-after-replies=1,refuse-resume,unknown-events,"
                                                 "ready-delay=500.")] = None,
    no_rate_check: Annotated[bool, typer.Option("--no-rate-check", help="Accept input audio faster than "
                                                                        "real time (for ask --pace fast).")]
    = False,
    agents_file: Annotated[Path | None, typer.Option(
        "--agents", help="A TOML file of [[agents]] (each with an id) written into the agents store at "
                         "start, for tests and demos.", show_default=False)] = None,
    agents_store: Annotated[Path | None, typer.Option(
        "--agents-store", envvar="VOICECLI_AGENTS_STORE", show_envvar=True, show_default=False,
        help="The stored agents' file (SQLite) [default: agents.sqlite3 in the user data dir].")] = None,
    scenario_dir: Annotated[list[Path] | None, typer.Option(
        "--scenario-dir", help="A directory whose NAME.toml/NAME.json scenarios clients may pick with "
                               "?scenario=NAME (repeatable; clients can never name a path).")] = None,
    max_sessions: Annotated[int | None, typer.Option(
        "--max-sessions", min=1, help="At most N connections at once; more get at_capacity (1008) "
                                      "at the handshake.")] = None,
    max_sessions_per_key: Annotated[int | None, typer.Option(
        "--max-sessions-per-key", min=1, help="At most N connections per API key (or the key that "
                                              "minted the token); more get concurrency_exceeded.")] = None,
    enforce_session_cap: Annotated[bool, typer.Option(
        "--enforce-session-cap", help="End sessions at max_session_duration_seconds (token; 3 h for a "
                                      "key) with session_expired + 1008, as documented.")] = False,
    idle_timeout: Annotated[float, typer.Option(
        "--idle-timeout", min=0, help="Seconds a connection may stay without session.update/resume "
                                      "before agent_timeout + 1008 (0: never).")] = 10.0,
    resume_window: Annotated[float, typer.Option(
        "--resume-window", min=0, help="Seconds a dropped session is kept for session.resume.")] = 30.0,
    log_json: Annotated[bool, typer.Option(
        "--log-json", help="Log one JSON object per line (NDJSON) on stderr instead of text.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Run the local Voice Agent API server. Prints its URL when listening, and its engines on stderr,
    then one line per connection and session event (never a key or token). SIGTERM or Ctrl-C ends
    every session (session.ended, close 1001) before it exits."""
    from voicecli.server.agents import StoreError
    from voicecli.server.app import LocalServer
    from voicecli.server.options import LLM_KEY_ENV, Faults, ServerOptions

    env = environment(ctx)

    async def body() -> None:
        try:
            faults = Faults.parse(fault or "")
        except ValueError as exc:
            raise UsageError(f"bad --fault: {exc}") from None
        llm_flags(llm_url, llm_model)
        try:   # options.check_choice is the one check of engine and tts names
            options = ServerOptions(host=host, port=port, api_key=api_key, scenario=scenario,
                                    engine=engine, tts=tts,  # type: ignore[arg-type]  # checked here
                                    llm_url=llm_url, llm_model=llm_model if llm_url else None,
                                    llm_api_key=os.environ.get(LLM_KEY_ENV, ""),
                                    enforce_realtime=not no_rate_check, faults=faults,
                                    agents_store=str(agents_store) if agents_store else None,
                                    agents_file=str(agents_file) if agents_file else None,
                                    scenario_dirs=tuple(str(d) for d in scenario_dir or ()),
                                    max_sessions=max_sessions, max_sessions_per_key=max_sessions_per_key,
                                    enforce_session_cap=enforce_session_cap, idle_timeout_s=idle_timeout,
                                    resume_window_s=resume_window)
            for folder in options.scenario_dirs:
                if not Path(folder).is_dir():
                    raise ValueError(f"--scenario-dir {folder} is not a directory")
            server = LocalServer(options)
            if options.tts == "piper" and server.speech.tts != "piper":
                raise ValueError("tts piper is not installed: pip install 'voicecli[speech]'")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except StoreError as exc:
            raise UsageError(str(exc), "pick another --agents-store") from None
        try:
            url = await server.start()
        except OSError as exc:
            raise ConnectError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                               "pick another --port, or --port 0 for a free one") from None
        env.stdout.write(url + "\n")
        env.stdout.flush()
        env.stderr.write(server.engines_line() + "\n")
        if api_key is None:
            env.stderr.write("voicecli serve: no --api-key set, so any key (or none) is accepted\n")
        env.stderr.flush()
        import asyncio
        loop = asyncio.get_running_loop()
        ready = loop.create_task(_say_ready(server, env.stderr))
        logs = _server_log(env.stderr, log_json, debug)
        term = asyncio.Event()
        got: list[int] = []

        def on_signal(signum: int) -> None:
            got.append(signum)
            term.set()
        for signum in (signal.SIGTERM, signal.SIGINT):   # both end every session first
            try:
                loop.add_signal_handler(signum, on_signal, signum)
            except (NotImplementedError, RuntimeError):   # not on this platform / not the main thread
                pass
        serving = loop.create_task(server.serve_forever())
        waiting = loop.create_task(term.wait())
        try:
            await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            waiting.cancel()
            await server.stop()
            if not serving.done():
                serving.cancel()
            logs.close()
        if signal.SIGINT in got:
            raise KeyboardInterrupt   # exit 130, as Ctrl-C everywhere
        if term.is_set():
            env.stderr.write("voicecli serve: stopped (SIGTERM); every session was ended\n")
            env.stderr.flush()

    run_command(body, env, debug)


class _ServerLog:
    """The ``voicecli.server`` logger's output while ``serve`` runs: records go through a bounded
    queue to a thread that writes stderr, so a slow or full stderr never blocks the event loop
    (records beyond the queue are dropped and counted)."""

    def __init__(self, stream: typing.IO[str], json_lines: bool, debug: bool) -> None:
        import logging
        import logging.handlers
        import queue

        from voicecli.server.serverlog import LogFormatter

        self.dropped = 0
        records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=10000)
        outer = self

        class Dropping(logging.handlers.QueueHandler):
            def enqueue(self, record: logging.LogRecord) -> None:
                try:
                    self.queue.put_nowait(record)
                except queue.Full:
                    outer.dropped += 1

        writer = logging.StreamHandler(stream)
        writer.setFormatter(LogFormatter(json_lines, debug))
        self.handler = Dropping(records)
        self.listener = logging.handlers.QueueListener(records, writer)
        self.logger = logging.getLogger("voicecli.server")
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG if debug else logging.INFO)
        self.logger.propagate = False
        self.listener.start()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.listener.stop()


def _server_log(stream: typing.IO[str], json_lines: bool, debug: bool) -> _ServerLog:
    return _ServerLog(stream, json_lines, debug)


async def _say_ready(server: object, err: typing.IO[str]) -> None:
    """One stderr line once the engines are loaded (sessions arriving earlier wait for them)."""
    from voicecli.server.app import LocalServer

    assert isinstance(server, LocalServer)
    if server.options.engine != "default":
        return
    await server.speech_ready()
    loaded = server.preload()
    took = ", ".join(f"{k} {v:.1f} s" for k, v in loaded.seconds.items())
    failed = "; ".join(f"{k}: {v}" for k, v in loaded.errors.items())
    err.write("voicecli serve: engines ready" + (f" ({took})" if took else "")
              + (f"; FAILED {failed}" if failed else "") + "\n")
    err.flush()


# Commands in their own modules (plain functions; registered here, so they never import this module).
app.command()(cli_audio.chat)
app.command()(cli_audio.devices)
app.command()(cli_audio.doctor)
app.command()(cli_config.token)
app.add_typer(cli_config.config_app, name="config")
app.add_typer(cli_agents.agents_app, name="agents")


def main() -> None:
    """Console-script entry point: run the app on ``sys.argv`` and exit with its status."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    sys.exit(raw_main(app, sys.argv[1:]))


if __name__ == "__main__":
    main()
