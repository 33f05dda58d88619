"""The audio commands: ``voicecli chat``, ``voicecli devices``, ``voicecli doctor`` (cli-contract.md).

Plain functions that :mod:`voicecli.cli` registers on its ``app`` (this module never imports
``voicecli.cli``). Thin like the rest of the CLI: heavy imports (numpy, sounddevice, websockets,
rich live) happen inside the commands.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

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
    echo,
    environment,
    llm_flags,
)
from voicecli.core import run_command
from voicecli.env import Environment
from voicecli.status import ExitStatus

DEFAULT_PREBUFFER_MS = 60


class Duplex(StrEnum):
    full = "full"
    half = "half"


class Echo(StrEnum):
    aec = "aec"
    half = "half"
    off = "off"


def echo_mode(echo: str | None, duplex: str | None) -> str:
    """The chat's echo handling: ``echo`` if set; else the older ``duplex`` (half -> half, full -> off);
    else ``aec`` where the echo canceller (the ``aec`` extra) is installed and ``half`` where it is
    not (issue 10; the chat says which at start). ``aec`` asked for without the extra is a
    UsageError (exit 2) with the install line."""
    from voicecli.audio import aec_support as aec  # not aec itself: it loads numpy
    from voicecli.errors import UsageError
    if echo is None and duplex is not None:
        return "half" if duplex == "half" else "off"
    if echo is None:
        return "aec" if aec.available() else "half"
    if echo == "aec" and not aec.available():
        raise UsageError("--echo aec needs the echo canceller, which is not installed", aec.INSTALL_HINT)
    return echo


InDevOpt = Annotated[str | None, typer.Option("--input-device", help="Microphone: index or part of the "
                                                 "name, or a sound server source's description "
                                                 "(see `voicecli devices`).")]
OutDevOpt = Annotated[str | None, typer.Option("--output-device", help="Speaker: index or part of the "
                                                   "name, or a sound server sink's description "
                                                   "(see `voicecli devices`).")]


def chat(
    ctx: typer.Context,
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
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    input_device: InDevOpt = None,
    output_device: OutDevOpt = None,
    echo_opt: Annotated[Echo | None, typer.Option("--echo", help="aec (echo cancellation: talk over the "
                                                  "agent on speakers), half (mic closed while the agent "
                                                  "speaks) or off (full duplex, headphones) [default: aec "
                                                  "where the aec extra is installed, else half].")] = None,
    duplex: Annotated[Duplex | None, typer.Option("--duplex", help="Older spelling: half = --echo half, "
                                                     "full = --echo off.")] = None,
    prebuffer_ms: Annotated[int | None, typer.Option("--prebuffer-ms", min=0, max=2000, help="Agent audio "
                                                        f"buffered before playback starts [default: "
                                                        f"{DEFAULT_PREBUFFER_MS}].")] = None,
    record: Annotated[Path | None, typer.Option("--record", help="Save a stereo WAV (you left, agent right) "
                                                   "and a transcript JSON in this directory.")] = None,
    chunk_ms: Annotated[int, typer.Option("--chunk-ms", min=20, max=100, help="input.audio chunk length "
                                                                               "(ms).")] = 20,
    tool_concurrency: Annotated[int | None, typer.Option(
        "--tool-concurrency", min=1, max=64,
        help="The most tool commands run at once; further tool.calls wait their turn "
             "[default: 4; config tool_concurrency].")] = None,
    ptt: Annotated[bool, typer.Option("--ptt", help="Push-to-talk: the mic is off until you press space "
                                                    "(space again to stop).")] = False,
    no_ui: Annotated[bool, typer.Option("--no-ui", help="Plain lines instead of the live view.")] = False,
    json_mode: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Talk with the agent through your microphone and speaker, with live transcripts.

    Keys: m mute/unmute, r the agent speaks now, t type a message (Enter sends, Esc cancels), q quit.
    """
    from voicecli.app.chat import ChatOptions, ChatRunner
    from voicecli.app.endpoint import Endpoint
    from voicecli.config import CommonFlags
    from voicecli.settings import resolve
    from voicecli.tools import configured_runner
    from voicecli.ui.chatview import ChatView
    from voicecli.ui.modes import make_chat_output

    env = environment(ctx)

    # Device/duplex/prebuffer/record flags go through the same precedence and checks as the config
    # file and environment (flag > env > file > default), then are read back from resolved.client.
    flags = CommonFlags(url=url, local=local, api_key=api_key, token=token, system_prompt=system_prompt,
                        greeting=greeting, voice=voice, agent_id=agent_id, profile=profile,
                        config_path=str(config) if config else None, input_device=input_device,
                        output_device=output_device, duplex=duplex.value if duplex else None,
                        echo=echo_opt.value if echo_opt else None,
                        prebuffer_ms=prebuffer_ms, record_dir=str(record) if record else None,
                        tool_concurrency=tool_concurrency)

    async def body() -> int:
        resolved = resolve(flags, env.stderr)
        client = resolved.client
        record_dir = client.get("record_dir")
        prebuffer = client.get("prebuffer_ms")
        opts = ChatOptions(input_device=client.get("input_device"), output_device=client.get("output_device"),
                           echo=echo_mode(client.get("echo"), client.get("duplex")),
                           prebuffer_ms=DEFAULT_PREBUFFER_MS if prebuffer is None else int(prebuffer),
                           chunk_ms=chunk_ms, record_dir=Path(record_dir) if record_dir else None, ptt=ptt,
                           keys=env.keys, stdin=env.stdin)
        llm = llm_flags(llm_url, llm_model)
        view = ChatView()
        output = make_chat_output(env, json_mode, no_ui, debug, view, ptt)
        try:
            with Endpoint(resolved, llm) as endpoint:
                runner = ChatRunner(endpoint.connection(resolved.session), opts, output,
                                    configured_runner(resolved.tools, resolved.client), view)
                return await runner.run()
        finally:
            output.close()

    raise typer.Exit(run_command(body, env, debug))   # Ctrl-C: KeyboardInterrupt -> the exit map


def devices(
    ctx: typer.Context,
    json_mode: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    debug: DebugOpt = False,
) -> None:
    """List audio devices: index, name, host API, channels, default rate; defaults marked. On
    PulseAudio/PipeWire also the sound server's sources and sinks (pick them by description)."""
    from voicecli.audio import devices as dev
    from voicecli.errors import AudioDeviceError

    env = environment(ctx)

    async def body() -> int:
        from voicecli.audio import soundserver
        found = dev.list_devices()
        server = soundserver.list_server_devices()
        if json_mode:
            echo(env, json.dumps({"devices": [d.to_dict() for d in found],
                                  "sound_server": [d.to_dict() for d in server]}, ensure_ascii=False))
        elif env.stdout_isatty:
            _devices_table(env, found, server)
        else:
            for d in found:
                echo(env, "\t".join(_device_row(d)))
            for s in server:
                echo(env, "\t".join(_server_row(s)))
        if not found:
            raise AudioDeviceError("no audio devices found", "is PulseAudio/PipeWire running for this user? "
                                                             "is a sound card present?")
        return ExitStatus.OK

    raise typer.Exit(run_command(body, env, debug))


def _server_row(s: Any) -> list[str]:
    return ["-", s.description, "sound server", "1" if s.kind == "input" else "0",
            "1" if s.kind == "output" else "0", str(s.rate),
            (f"default {s.kind}" if s.default else "") + (f" ({s.name})" if s.name != s.description else "")]


def _device_row(d: Any) -> list[str]:
    marks = ", ".join(m for m, on in (("default input", d.default_input),
                                      ("default output", d.default_output)) if on)
    return [str(d.index), d.name, d.hostapi, str(d.max_input_channels), str(d.max_output_channels),
            f"{d.default_samplerate:.0f}", marks]


def _devices_table(env: Environment, found: list[Any], server: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(box=None, header_style="bold")
    for col in ("index", "name", "host API", "in", "out", "default rate", "default"):
        table.add_column(col, justify="right" if col in ("index", "in", "out", "default rate") else "left")
    for d in found:
        table.add_row(*_device_row(d))
    for sd in server:
        table.add_row(*_server_row(sd))
    Console(file=env.stdout, highlight=False, markup=False, no_color=env.no_color).print(table)


def doctor(
    ctx: typer.Context,
    url: UrlOpt = None,
    local: LocalOpt = False,
    api_key: KeyOpt = None,
    token: TokenOpt = None,
    input_device: InDevOpt = None,
    output_device: OutDevOpt = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.2, max=30, help="Microphone test length; "
                                                                              "speak during it.")] = 1.5,
    json_mode: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Self-test: PortAudio, devices and rates, a short mic recording, and the server and key."""
    from voicecli.app import doctor as doc
    from voicecli.app.endpoint import Endpoint
    from voicecli.config import CommonFlags
    from voicecli.settings import resolve

    env = environment(ctx)

    async def body() -> int:
        if not json_mode:
            env.stderr.write(f"voicecli doctor: recording {seconds:g} s from the microphone; say something\n")
        checks = doc.audio_checks(input_device, output_device, seconds)
        if local or url or api_key or token:
            resolved = resolve(CommonFlags(url=url, local=local, api_key=api_key, token=token), env.stderr)
            with Endpoint(resolved) as endpoint:
                checks.append(await doc.run_server_check(endpoint.connection(resolved.session)))
        else:
            checks.append(doc.Check("server", "skip", "not checked", "pass --local, or --url with --api-key "
                                                                     "or --token"))
        code = doc.exit_code(checks)
        if json_mode:
            echo(env, json.dumps({"ok": code == ExitStatus.OK, "checks": [c.to_dict() for c in checks]},
                                  ensure_ascii=False))
        else:
            for c in checks:
                hint = f" ({c.hint})" if c.hint and c.status != "ok" else ""
                echo(env, f"{c.status.upper():5} {c.name}: {c.detail}{hint}")
        return code

    raise typer.Exit(run_command(body, env, debug))
