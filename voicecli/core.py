"""The one place exceptions become exit statuses (design.md principle 11; httpie ``core.raw_main``).

:func:`raw_main` is the entry point: it detects the :class:`~voicecli.env.Environment` once, hands
it to the commands (as the click context's ``obj``) and turns anything that escapes them into an
exit status. :func:`run_command` runs a command's body with the same map:

* a :class:`~voicecli.errors.VoicecliError`: ``voicecli: error: <one line>``, its ``exit_code``;
* Ctrl-C: ``voicecli: interrupted``, 130; SIGTERM is Ctrl-C (:func:`sigterm_as_interrupt`: every
  command shuts down the way Ctrl-C makes it: ``session.end``, files written, terminal restored);
* anything else is a bug: ``voicecli hit a bug: <Type: message> (run with --debug and report it)``,
  exit 1. With ``--debug`` the traceback is printed above that line (and above an error's line).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import FrameType
from typing import IO, Any, TypeVar

import typer

from voicecli.env import Environment
from voicecli.errors import VoicecliError
from voicecli.status import ExitStatus
from voicecli.ui.sanitize import clean

T = TypeVar("T")


def report(exc: BaseException, debug: bool, stderr: IO[str]) -> ExitStatus:
    """Write the one line for ``exc`` (and with ``debug`` its traceback) to ``stderr``; return the
    exit status it maps to. ``typer.Exit`` and ``SystemExit`` are not errors: pass their code on."""
    if isinstance(exc, VoicecliError):
        status, line = exc.exit_code, f"voicecli: error: {clean(exc.one_line(), 1000)}"
    elif isinstance(exc, KeyboardInterrupt):
        status, line = ExitStatus.INTERRUPTED, "voicecli: interrupted"
    else:
        status = ExitStatus.ERROR
        line = (f"voicecli hit a bug: {type(exc).__name__}: {clean(str(exc), 500)} "
                "(run with --debug and report it)")
    try:
        if debug and not isinstance(exc, KeyboardInterrupt):
            traceback.print_exception(exc, file=stderr)
        stderr.write(line + "\n")
        stderr.flush()
    except (OSError, ValueError):    # stderr closed: the status still tells
        pass
    return status


def run_command(fn: Callable[[], Coroutine[Any, Any, T]], env: Environment, debug: bool = False) -> T:
    """Run an async command body. Returns its result, or raises ``typer.Exit`` with the status of
    whatever it raised (after printing that status's one line to ``env.stderr``)."""
    import asyncio  # here, not at the top: `--help` and usage errors never start a loop
    try:
        return asyncio.run(fn())
    except (typer.Exit, SystemExit):
        raise
    except BaseException as exc:   # noqa: BLE001 - every exception gets a status; that is the point
        raise typer.Exit(report(exc, debug, env.stderr)) from None


def raw_main(app: typer.Typer, args: Sequence[str], env: Environment | None = None) -> int:
    """Run the Typer ``app`` on ``args`` with ``env`` (detected if None); return the exit status.

    Usage errors are typer's (exit 2, its message). An exception outside any command body (an option
    callback, a registration bug) goes through :func:`report` like one inside."""
    env = env or Environment.detect()
    command = typer.main.get_command(app)
    with sigterm_as_interrupt():
        try:
            command.main(args=list(args), prog_name="voicecli", standalone_mode=True, obj=env)
        except SystemExit as exc:
            return _code(exc.code, env.stderr)
        except BaseException as exc:   # noqa: BLE001
            return report(exc, "--debug" in args, env.stderr)
    return ExitStatus.OK


def _term_to_int(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises SIGINT: whatever handles Ctrl-C at that moment handles it
    (``asyncio.run`` cancels the command's task, so ``finally`` blocks send ``session.end`` and
    close files; outside a loop it is KeyboardInterrupt), and the exit is Ctrl-C's (130). A command
    with its own handler (``chat``'s loop handler, ``serve``'s graceful shutdown) overrides it while
    it runs. Only the main thread can install signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _term_to_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _code(code: object, stderr: IO[str]) -> int:
    if code is None:
        return ExitStatus.OK
    if isinstance(code, int):
        return code
    stderr.write(f"{code}\n")   # sys.exit("message"): the message is the report
    return ExitStatus.ERROR
