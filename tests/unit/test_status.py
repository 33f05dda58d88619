"""The one exit map (design.md principle 11): errors, Ctrl-C and bugs through the real entry point
and through :func:`voicecli.core.run_command`; the Environment the commands get."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import typer

from tests.conftest import ROOT, unit
from voicecli import errors
from voicecli.core import raw_main, report, run_command
from voicecli.env import Environment
from voicecli.status import ExitStatus
from voicecli.ui.modes import make_output
from voicecli.ui.output import JsonOutput, PlainOutput

BUG_LINE = "voicecli hit a bug: RuntimeError: boom (run with --debug and report it)\n"


def env_with(stdout_tty: bool = False, stderr_tty: bool = False) -> Environment:
    return Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), stdin_isatty=False,
                       stdout_isatty=stdout_tty, stderr_isatty=stderr_tty)


def run_entry_point(*args: str) -> subprocess.CompletedProcess[str]:
    """`voicecli.cli.main()` with a command whose body has a bug (registered on the real app)."""
    code = ("import asyncio, sys, typer\n"
            "from voicecli.cli import app, main\n"
            "from voicecli.cli_options import environment\n"
            "from voicecli.core import run_command\n"
            "@app.command('boom')\n"
            "def boom(ctx: typer.Context, debug: bool = typer.Option(False, '--debug')) -> None:\n"
            "    async def body() -> None:\n"
            "        raise RuntimeError('boom')\n"
            "    run_command(body, environment(ctx), debug)\n"
            "@app.command('outside')\n"
            "def outside(debug: bool = typer.Option(False, '--debug')) -> None:\n"
            "    {}['missing']\n"
            f"sys.argv = ['voicecli', *{list(args)!r}]\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=unit(30))


def test_a_bug_in_a_command_body_is_one_line_and_exit_1() -> None:
    proc = run_entry_point("boom")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", BUG_LINE)


def test_a_bug_with_debug_shows_the_traceback_then_the_line() -> None:
    proc = run_entry_point("boom", "--debug")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback (most recent call last):\n")
    assert 'line 8, in body\nRuntimeError: boom\n' in proc.stderr and proc.stderr.endswith(BUG_LINE)


def test_a_bug_outside_run_command_goes_through_the_same_map() -> None:
    proc = run_entry_point("outside")
    assert (proc.returncode, proc.stderr) == (1, "voicecli hit a bug: KeyError: 'missing' (run with --debug "
                                                 "and report it)\n")
    assert "Traceback" in run_entry_point("outside", "--debug").stderr


@pytest.mark.parametrize(("exc", "status", "line"), [
    (errors.AuthError("the server refused the key", "check it"), 3,
     "voicecli: error: the server refused the key (check it)\n"),
    (errors.ConfigError("bad file"), 2, "voicecli: error: bad file\n"),
    (errors.TimeoutExpired("no reply within 1 s"), 7, "voicecli: error: no reply within 1 s\n"),
    (KeyboardInterrupt(), 130, "voicecli: interrupted\n"),
    (ValueError("x\x1b[2Jy"), 1, "voicecli hit a bug: ValueError: x[2Jy (run with --debug and report it)\n"),
])
def test_run_command_maps_each_exception_to_one_line_and_its_status(
        exc: BaseException, status: int, line: str) -> None:
    env = env_with()

    async def body() -> None:
        raise exc

    with pytest.raises(typer.Exit) as caught:
        run_command(body, env)
    assert caught.value.exit_code == status
    assert env.stderr.getvalue() == line  # type: ignore[attr-defined]


def test_run_command_returns_the_body_result_and_passes_exit_through() -> None:
    env = env_with()

    async def ok() -> int:
        return 42

    async def leave() -> None:
        raise typer.Exit(5)

    assert run_command(ok, env) == 42
    with pytest.raises(typer.Exit) as caught:
        run_command(leave, env)
    assert caught.value.exit_code == 5 and env.stderr.getvalue() == ""  # type: ignore[attr-defined]


def test_raw_main_returns_typer_usage_status_and_writes_to_env_streams() -> None:
    app = typer.Typer()

    @app.command()
    def hello(ctx: typer.Context, name: str) -> None:
        ctx.obj.stdout.write(f"hi {name}\n")

    env = env_with()
    assert raw_main(app, ["Ann"], env) == ExitStatus.OK
    assert env.stdout.getvalue() == "hi Ann\n"  # type: ignore[attr-defined]
    assert raw_main(app, ["--bogus"], env) == ExitStatus.USAGE


def test_exit_codes_are_the_contract_and_errors_aliases_match() -> None:
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3, 4, 5, 6, 7, 130]
    assert errors.EXIT_AUDIO is ExitStatus.AUDIO and errors.EXIT_INTERRUPTED == 130
    assert errors.AudioFileError.exit_code is ExitStatus.AUDIO
    assert errors.ServerError("x").exit_code is ExitStatus.PROTOCOL


def test_report_survives_a_closed_stderr() -> None:
    err = io.StringIO()
    err.close()
    assert report(errors.ConnectError("gone"), False, err) == ExitStatus.CONNECT


# ------------------------------------------------------------------ the Environment


def test_detect_sees_pipes_as_not_terminals_and_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    env = Environment.detect({"NO_COLOR": "1"})
    assert (env.stdout_isatty, env.live, env.no_color) == (False, False, True)
    assert env.stdout is sys.stdout


@pytest.mark.parametrize(("stdout_tty", "stderr_tty"), [(False, False), (True, False), (False, True)])
def test_plain_lines_unless_both_stdout_and_stderr_are_terminals(stdout_tty: bool, stderr_tty: bool) -> None:
    env = env_with(stdout_tty, stderr_tty)
    out = make_output(env, json_mode=False, labels=True, debug=False)
    assert isinstance(out, PlainOutput)
    out.notice("hello")
    assert env.stderr.getvalue() == "voicecli: hello\n"  # type: ignore[attr-defined]


def test_json_output_writes_to_the_environment_stdout() -> None:
    env = env_with(True, True)
    out = make_output(env, json_mode=True, labels=False, debug=False)
    assert isinstance(out, JsonOutput)
    out.client_event("metrics", n=1)
    assert env.stdout.getvalue().startswith('{"type":"voicecli.metrics","n":1,')  # type: ignore[attr-defined]
