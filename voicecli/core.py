"""The one place exceptions become exit statuses (design.md principle 11; httpie ``core.raw_main``).

:func:`raw_main` is the entry point: it detects the :class:`~voicecli.env.Environment` once, hands
it to the commands (as the click context's ``obj``) and turns anything that escapes them into an
exit status. :func:`run_command` runs a command's body with the same map:

* a :class:`~voicecli.errors.VoicecliError`: ``voicecli: error: <one line>``, its ``exit_code``;
* Ctrl-C: ``voicecli: interrupted``, 130; SIGTERM is Ctrl-C (:func:`sigterm_as_interrupt`: every
  command shuts down the way Ctrl-C makes it: ``session.end``, files written, terminal restored);
* anything else is a bug: ``voicecli hit a bug: <Type: message> (run with --debug and report it)``,
  exit 1. With ``--debug`` the traceback is printed above that line (and above an error's line);
* stdout closed by its reader (``voicecli ... | head``): nothing printed, exit 1 (as click does).

Bugs off the main path get the same one line instead of Python's traceback: an exception in a
background thread (``threading.excepthook``), in an asyncio task nobody awaited or a loop callback
(the loop's exception handler), or one Python could only report as "ignored"
(``sys.unraisablehook``). They do not change the exit status (the command's own result does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, TypeVar

import typer

from voicecli.env import Environment
from voicecli.errors import VoicecliError

if TYPE_CHECKING:
    import asyncio
from voicecli.status import ExitStatus
from voicecli.ui.sanitize import clean

T = TypeVar("T")


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the report
        return "<unprintable>"


def _bug_line(exc: BaseException, where: str = "") -> str:
    return (f"voicecli hit a bug{where}: {type(exc).__name__}: {clean(_text(exc), 500)} "
            "(run with --debug and report it)")


def _silence_stdout() -> None:
    """stdout's reader went away: point the descriptor at /dev/null so the interpreter's final
    flush does not print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def report(exc: BaseException, debug: bool, stderr: IO[str]) -> ExitStatus:
    """Write the one line for ``exc`` (and with ``debug`` its traceback) to ``stderr``; return the
    exit status it maps to. ``typer.Exit`` and ``SystemExit`` are not errors: pass their code on."""
    if isinstance(exc, BrokenPipeError):    # `voicecli ... | head`: the reader has what it wanted
        _silence_stdout()
        return ExitStatus.ERROR
    if isinstance(exc, VoicecliError):
        status, line = exc.exit_code, f"voicecli: error: {clean(exc.one_line(), 1000)}"
    elif isinstance(exc, KeyboardInterrupt):
        status, line = ExitStatus.INTERRUPTED, "voicecli: interrupted"
    else:
        status, line = ExitStatus.ERROR, _bug_line(exc)
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

    async def body() -> T:
        asyncio.get_running_loop().set_exception_handler(_loop_handler(debug, env.stderr))
        return await fn()

    try:
        return asyncio.run(body())
    except (typer.Exit, SystemExit):
        raise
    except BaseException as exc:   # noqa: BLE001 - every exception gets a status; that is the point
        raise typer.Exit(report(exc, debug, env.stderr)) from None


_MAX_BACKGROUND_REPORTS = 3    # a bug that repeats (a callback per frame) is not a flood of lines


class _Background:
    def __init__(self, debug: bool, stderr: IO[str]) -> None:
        self.debug, self.stderr, self.count = debug, stderr, 0

    def __call__(self, exc: BaseException | None, where: str, context: str = "") -> None:
        aio = sys.modules.get("asyncio")    # loaded by then if a loop ran; never imported for this
        quiet = (SystemExit, KeyboardInterrupt, BrokenPipeError) + ((aio.CancelledError,) if aio else ())
        if exc is None or isinstance(exc, quiet):
            return
        self.count += 1
        if self.count > _MAX_BACKGROUND_REPORTS:
            return
        try:
            if self.debug:
                if context:
                    self.stderr.write(f"{clean(context, 500)}\n")
                traceback.print_exception(exc, file=self.stderr)
            self.stderr.write(_bug_line(exc, where) + "\n")
            self.stderr.flush()
        except (OSError, ValueError):
            pass


LoopHandler = Callable[["asyncio.AbstractEventLoop", dict[str, Any]], None]


def _loop_handler(debug: bool, stderr: IO[str]) -> LoopHandler:
    background = _Background(debug, stderr)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if exc is None:                        # a message without an exception: debug only
            if debug:
                stderr.write(f"voicecli: debug: {clean(context.get('message', ''), 500)}\n")
            return
        background(exc, " in a background task", str(context.get("message", "")))

    return handle


def install_hooks(debug: bool, stderr: IO[str]) -> Callable[[], None]:
    """One line (not a traceback) for bugs in threads and for exceptions Python would print as
    "ignored"; the traceback too with ``debug``. Returns a function that puts the old hooks back."""
    background = _Background(debug, stderr)
    old = threading.excepthook, sys.unraisablehook

    def thread_hook(a: threading.ExceptHookArgs) -> None:
        background(a.exc_value, f" in thread {a.thread.name if a.thread else '?'}")

    def unraisable_hook(u: Any) -> None:
        background(u.exc_value, " while cleaning up", str(u.err_msg or ""))

    threading.excepthook, sys.unraisablehook = thread_hook, unraisable_hook

    def restore() -> None:
        threading.excepthook, sys.unraisablehook = old

    return restore


def raw_main(app: typer.Typer, args: Sequence[str], env: Environment | None = None) -> int:
    """Run the Typer ``app`` on ``args`` with ``env`` (detected if None); return the exit status.

    Usage errors are typer's (exit 2, its message). An exception outside any command body (an option
    callback, a registration bug) goes through :func:`report` like one inside."""
    env = env or Environment.detect()
    restore = install_hooks("--debug" in args, env.stderr)
    command = typer.main.get_command(app)
    with sigterm_as_interrupt():
        try:
            command.main(args=list(args), prog_name="voicecli", standalone_mode=True, obj=env)
        except SystemExit as exc:
            return _code(exc.code, env.stderr)
        except BaseException as exc:   # noqa: BLE001
            return report(exc, "--debug" in args, env.stderr)
        finally:
            _flush_stdout(env)
            restore()
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


def _flush_stdout(env: Environment) -> None:
    try:
        env.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError):
        pass


def _code(code: object, stderr: IO[str]) -> int:
    if code is None:
        return ExitStatus.OK
    if isinstance(code, int):
        return code
    stderr.write(f"{code}\n")   # sys.exit("message"): the message is the report
    return ExitStatus.ERROR
