"""The catch-all covers every path a bug can take (issue 12 item 5): a background thread, an
asyncio task nobody awaited, a loop callback, an exception whose message itself raises, and a
stdout closed by its reader. Each is one line with the --debug hint (or, for the closed pipe,
nothing), never Python's traceback; run through the real entry point in a subprocess."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, unit

PRELUDE = ("import asyncio, sys, threading, typer\n"
           "from voicecli.cli import app, main\n"
           "from voicecli.cli_options import environment\n"
           "from voicecli.core import run_command\n")


def run_body(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`voicecli.cli.main()` running a command `probe` whose async body is ``body``."""
    code = (PRELUDE
            + "@app.command('probe')\n"
            "def probe(ctx: typer.Context, debug: bool = typer.Option(False, '--debug')) -> None:\n"
            "    async def body() -> None:\n"
            + "".join(f"        {line}\n" for line in body.splitlines())
            + "    run_command(body, environment(ctx), debug)\n"
            f"sys.argv = ['voicecli', 'probe', *{list(args)!r}]\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=unit(30))


def _one_bug_line(stderr: str, where: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"voicecli hit a bug{where}: ") and lines[0].endswith(
        "(run with --debug and report it)"), stderr


def test_a_bug_in_a_background_thread_is_one_line() -> None:
    p = run_body("def boom() -> None:\n    raise RuntimeError('in thread')\n"
                 "t = threading.Thread(target=boom, name='worker')\nt.start()\nt.join()")
    _one_bug_line(p.stderr, " in thread worker")
    assert p.returncode == 0     # the command itself finished


def test_a_task_nobody_awaited_is_one_line() -> None:
    p = run_body("async def boom() -> None:\n    raise ValueError('lost task')\n"
                 "t = asyncio.ensure_future(boom())\nawait asyncio.sleep(0.05)\ndel t\n"
                 "import gc\ngc.collect()\nawait asyncio.sleep(0)")
    _one_bug_line(p.stderr, " in a background task")


def test_a_loop_callback_bug_is_one_line_and_debug_shows_the_traceback() -> None:
    body = ("def boom() -> None:\n    raise KeyError('cb')\n"
            "asyncio.get_running_loop().call_soon(boom)\nawait asyncio.sleep(0.05)")
    _one_bug_line(run_body(body).stderr, " in a background task")
    debug = run_body(body, "--debug")
    assert "Traceback" in debug.stderr and debug.stderr.rstrip().endswith("report it)")


def test_an_exception_whose_message_raises_is_still_one_line() -> None:
    p = run_body("class Odd(Exception):\n    def __str__(self) -> str:\n        raise RuntimeError('no')\n"
                 "raise Odd()")
    _one_bug_line(p.stderr, "")
    assert "<unprintable>" in p.stderr and p.returncode == 1


def test_stdout_closed_by_its_reader_is_quiet() -> None:
    """`voicecli config show | head -c 1`: a command body writing to a closed pipe. Before:
    'voicecli hit a bug: BrokenPipeError' (and Python's "Exception ignored" at exit)."""
    code = (PRELUDE
            + "@app.command('probe')\n"
            "def probe(ctx: typer.Context) -> None:\n"
            "    async def body() -> None:\n"
            "        env = environment(ctx)\n"
            "        env.stdout.write('x' * 200000)\n"
            "        env.stdout.flush()\n"
            "    run_command(body, environment(ctx))\n"
            "sys.argv = ['voicecli', 'probe']\n"
            "main()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()                   # the reader goes away before anything is written
    err = proc.stderr.read()
    assert proc.wait(unit(30)) == 1       # quiet, as click is for its own output
    assert err == "", err
