"""Client-side tools: run a ``tool.call`` and produce the ``tool.result`` payload.

The protocol side (when a result may be sent, dropping results of interrupted replies,
duplicate call ids) is the session's job (``voicecli.session``); this module only runs tools.
A call for a tool that is not configured gets an error result the model can read (protocol.md
3.3: the text is read verbatim, so say what failed).

Two kinds of tool are built from the config (``[[tools]]``, see ``config.example.toml``):

* :class:`CommandTool` -- ``command = ["prog", "arg"]``: an argv list run without a shell; the
  call's arguments are written to its stdin as one JSON object; its stdout is the result (used
  as is when it is JSON, else wrapped as a JSON string). A non-zero exit or a timeout is an error
  result carrying stderr's last line; on timeout the process (and its process group) is killed.
* :class:`CallableTool` -- ``callable = "package.module:function"``: called with the arguments as
  keyword arguments; a plain function runs in a worker thread, a coroutine function on the loop;
  the return value is JSON-encoded. An exception is an error result naming it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_TIMEOUT_S = 120.0   # protocol.md 5.7: the server's default timeout_seconds
DEFAULT_CONCURRENCY = 4     # tools run at once (config ``tool_concurrency``); the rest wait their turn
DEFAULT_PER_REPLY = 32      # calls of one reply run or queued (config ``max_tool_calls``); the rest refused
MAX_OUTPUT = 1 << 20        # a tool result is read by a model: 1 MiB is already far too much


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """``result`` is already a JSON-encoded string (protocol.md 3.3)."""

    result: str
    is_error: bool = False


class Tool(Protocol):
    name: str

    async def run(self, arguments: dict[str, Any]) -> ToolOutcome: ...


def error_result(message: str, **extra: Any) -> ToolOutcome:
    return ToolOutcome(json.dumps({"error": message, **extra}, ensure_ascii=False), is_error=True)


def as_json_result(text: str) -> str:
    """``text`` if it is one JSON value, else ``text`` encoded as a JSON string."""
    stripped = text.strip()
    if stripped:
        try:
            json.loads(stripped)
            return stripped
        except ValueError:
            pass
    return json.dumps(stripped, ensure_ascii=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


@dataclass
class CommandTool:
    """A tool run as a subprocess (argv list, never a shell)."""

    name: str
    argv: list[str]
    timeout_s: float = DEFAULT_TIMEOUT_S
    cwd: str | None = None

    async def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        payload = json.dumps(arguments, ensure_ascii=False).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.cwd, start_new_session=True)
        except OSError as exc:
            return error_result(f"tool {self.name!r} could not be started: "
                                f"{exc.strerror or exc} ({self.argv[0]})")
        try:
            out, err = await asyncio.wait_for(proc.communicate(payload), self.timeout_s)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return error_result(f"tool {self.name!r} did not finish within {self.timeout_s:g} s "
                                "and was stopped")
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        stdout = out[:MAX_OUTPUT].decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if proc.returncode != 0:
            why = _last_line(stderr) or f"exit status {proc.returncode}"
            return error_result(f"tool {self.name!r} failed: {why}")
        return ToolOutcome(as_json_result(stdout))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)   # start_new_session: the tool's children go too
    except (ProcessLookupError, PermissionError, AttributeError, OSError):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@dataclass
class CallableTool:
    """A Python function (sync: run in a thread; async: awaited) called with keyword arguments."""

    name: str
    function: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S

    async def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            if inspect.iscoroutinefunction(self.function):
                value = await asyncio.wait_for(self.function(**arguments), self.timeout_s)
            else:
                # A sync function cannot be stopped: on timeout its thread is abandoned.
                value = await asyncio.wait_for(asyncio.to_thread(self.function, **arguments),
                                               self.timeout_s)
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, self.timeout_s)
        except TimeoutError:
            return error_result(f"tool {self.name!r} did not finish within {self.timeout_s:g} s")
        except Exception as exc:
            return error_result(f"tool {self.name!r} failed: {type(exc).__name__}: {exc}")
        try:
            return ToolOutcome(json.dumps(value, ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            return error_result(f"tool {self.name!r} returned a value that is not JSON: {exc}")


class CallableLoadError(Exception):
    """``module:function`` could not be imported; the message says why."""


def load_callable(spec: str, search: list[Path] | None = None) -> Callable[..., Any]:
    """Import ``package.module:function`` (dotted attribute paths allowed after the colon).

    ``search`` directories (the config file's folder, the current directory) are tried before the
    installed packages. Raises CallableLoadError with a one-line reason."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CallableLoadError(f"{spec!r} is not of the form 'package.module:function'")
    added = [str(p) for p in search or [] if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CallableLoadError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module's own import-time error
        raise CallableLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CallableLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise CallableLoadError(f"{spec!r} is not callable")
    return target  # type: ignore[no-any-return]


def configured_runner(tools: list[Tool], client: dict[str, Any]) -> ToolRunner:
    """A :class:`ToolRunner` for ``tools`` with the resolved client settings' ``tool_concurrency``
    and ``max_tool_calls`` (already range-checked by ``settings.check_client``)."""
    concurrency, per_reply = client.get("tool_concurrency"), client.get("max_tool_calls")
    return ToolRunner(tools, concurrency=int(concurrency or DEFAULT_CONCURRENCY),
                      per_reply=int(per_reply or DEFAULT_PER_REPLY))


class ToolRunner:
    """Looks tools up by name and runs them. Never raises: failures become error results.

    At most ``concurrency`` tools run at once (a server sending 300 ``tool.call``s does not start 300
    processes); further calls wait in FIFO order for a slot. ``per_reply`` is the most calls of one
    reply that the dispatcher (:class:`~voicecli.app.toolcalls.ToolDispatcher`) runs or queues; it
    answers the excess with an error result at once, so the server is never left waiting."""

    def __init__(self, tools: list[Tool] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                 per_reply: int = DEFAULT_PER_REPLY) -> None:
        if concurrency < 1 or per_reply < 1:
            raise ValueError("concurrency and per_reply must be at least 1")
        self.tools: dict[str, Tool] = {t.name: t for t in tools or []}
        self.concurrency, self.per_reply = concurrency, per_reply
        self._slots: asyncio.Semaphore | None = None    # made on first use, on the running loop
        self.running = 0
        self.peak_running = 0

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return error_result(f"no tool named {name!r} is configured in this client "
                                f"(configured: {known}); tell the user it is unavailable")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            try:
                return await tool.run(arguments)
            except Exception as exc:  # a tool's bug must not end the conversation
                return error_result(f"tool {name!r} failed: {exc}")
            finally:
                self.running -= 1
