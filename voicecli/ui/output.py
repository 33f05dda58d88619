"""Output modes shared by every command that converses (issue: output modes; design.md principle 8).

* :class:`PlainOutput` — stdout is not a TTY: plain text lines on stdout, flushed per line;
  status and errors on stderr.
* :class:`JsonOutput` — ``--json``: NDJSON on stdout; server events as received with audio payloads
  replaced by byte counts; client-side events typed ``voicecli.*``.
* ``voicecli.ui.live.LiveOutput`` — a TTY: a rich live view on stderr.

All of them print server text only through :func:`voicecli.ui.sanitize.clean`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Protocol

from voicecli.protocol.events import (
    ToolCall,
    TranscriptAgent,
    TranscriptUser,
    summarize_raw,
)
from voicecli.session.client import Received
from voicecli.ui.sanitize import clean


class Output(Protocol):
    """What the conversation runners report to. Implementations never raise on a closed pipe."""

    def server_event(self, rec: Received) -> None:
        """Every server event, as received (stale ones flagged)."""

    def client_event(self, kind: str, **fields: Any) -> None:
        """A client-side event (``voicecli.<kind>`` in NDJSON): metrics, tool results, reconnects."""

    def notice(self, message: str, level: str = "info") -> None:
        """A human status line (stderr)."""

    def refresh(self) -> None:
        """Redraw a live region, if there is one (chat's ticker calls it; plain outputs do nothing)."""

    def close(self) -> None: ...


class _Writer:
    """Line writer that flushes per line and goes quiet on a closed pipe (EPIPE)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.broken = False

    def line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True


def _stderr_notice(err: _Writer, message: str, level: str) -> None:
    prefix = {"error": "error: ", "warning": "warning: "}.get(level, "")
    err.line(f"voicecli: {prefix}{clean(message)}")


def tool_line(name: str, arguments: Any, outcome: str | None = None) -> str:
    args = json.dumps(arguments, ensure_ascii=False, separators=(", ", ": "))
    line = f"tool: {clean(name, 80)}({clean(args, 400)})"
    if outcome is not None:
        line += f" -> {clean(outcome, 400)}"
    return line


class PlainOutput:
    """Plain lines. ``labels``: prefix ``user:``/``agent:`` lines (``--transcript``; chat).
    Without labels only the agent's replies to user turns are printed, one line each."""

    def __init__(self, labels: bool = False, stdout: IO[str] | None = None,
                 stderr: IO[str] | None = None, verbose: bool = False) -> None:
        self.labels = labels
        self.verbose = verbose
        self.out = _Writer(stdout or sys.stdout)
        self.err = _Writer(stderr or sys.stderr)
        self._user_turns = 0

    def server_event(self, rec: Received) -> None:
        ev = rec.event
        if rec.stale:
            return
        if isinstance(ev, TranscriptUser):
            self._user_turns += 1
            if self.labels:
                self.out.line(f"user: {clean(ev.text)}")
        elif isinstance(ev, TranscriptAgent):
            text = clean(ev.text)
            if self.labels:
                tag = "agent (interrupted)" if ev.interrupted else "agent"
                self.out.line(f"{tag}: {text}")
            elif self._user_turns and text:
                self.out.line(text + (" [interrupted]" if ev.interrupted else ""))
        elif isinstance(ev, ToolCall) and self.labels:
            self.out.line(tool_line(ev.name, ev.arguments))

    def client_event(self, kind: str, **fields: Any) -> None:
        if kind == "tool.result" and self.labels:
            outcome = ("error: " if fields.get("is_error") else "") + str(fields.get("result", ""))
            self.out.line(tool_line(str(fields.get("name", "?")), fields.get("arguments", {}), outcome))
        elif self.verbose and kind == "metrics":
            self.err.line("voicecli: metrics " + json.dumps(fields, ensure_ascii=False))

    def notice(self, message: str, level: str = "info") -> None:
        if level != "debug" or self.verbose:
            _stderr_notice(self.err, message, level)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonOutput:
    """NDJSON on stdout, one object per line, flushed per line; notices go to stderr."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 clock: Any = time.time) -> None:
        self.out = _Writer(stdout or sys.stdout)
        self.err = _Writer(stderr or sys.stderr)
        self.clock = clock

    def _emit(self, obj: dict[str, Any]) -> None:
        # ensure_ascii: C1 controls and bidi marks in server text stay escaped on a terminal.
        self.out.line(json.dumps(obj, ensure_ascii=True, separators=(",", ":")))

    def server_event(self, rec: Received) -> None:
        raw: dict[str, Any] = (dict(summarize_raw(rec.event.raw)) if rec.event.raw
                               else {"type": rec.event.type})
        if rec.stale:
            raw["voicecli_stale"] = True
        self._emit(raw)

    def client_event(self, kind: str, **fields: Any) -> None:
        self._emit({"type": f"voicecli.{kind}", **fields, "timestamp": round(self.clock(), 3)})

    def notice(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            _stderr_notice(self.err, message, level)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass
