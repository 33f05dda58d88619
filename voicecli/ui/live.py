"""The TTY view: a rich live display of the conversation on stderr (design.md principles 8–10).

:class:`ConversationView` is plain state updated from events; :func:`render` is a pure function
of it (tested as golden strings); :class:`LiveOutput` glues them to ``rich.live.Live``.
Server text only ever enters rich as ``Text`` objects (no markup interpretation), cleaned first.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from voicecli.protocol.events import (
    InputSpeechStarted,
    InputSpeechStopped,
    ReplyStarted,
    SessionError,
    SessionReady,
    ToolCall,
    TranscriptAgent,
    TranscriptAgentDelta,
    TranscriptUser,
    TranscriptUserDelta,
)
from voicecli.session.client import Received
from voicecli.ui.sanitize import clean

if TYPE_CHECKING:   # rich is imported only when a live view is drawn: plain and --json output never load it
    from rich.console import Console, RenderableType
    from rich.text import Text

MAX_LINES = 200
MAX_TEXT_CHARS = 20_000    # one line's text kept (an agent-delta storm appends forever otherwise)
SHOWN_FINAL_CHARS = 2000   # a finished line as printed: its head, then how much more there was
SHOWN_LIVE_CHARS = 600     # a line still being spoken/heard, in the live region: its tail
FRAME_S = 1 / 12           # the live region is redrawn at most this often, whatever the event rate


def shown(text: str, final: bool) -> str:
    """A line's text capped for the terminal (the view keeps more)."""
    if final and len(text) > SHOWN_FINAL_CHARS:
        return f"{text[:SHOWN_FINAL_CHARS]}… (+{len(text) - SHOWN_FINAL_CHARS} characters)"
    if not final and len(text) > SHOWN_LIVE_CHARS:
        return "…" + text[-SHOWN_LIVE_CHARS:]
    return text


@dataclass
class Line:
    role: str                 # user | agent | tool | notice
    text: str
    final: bool = False
    interrupted: bool = False
    key: str = ""             # item_id / reply_id / call_id


@dataclass
class ConversationView:
    lines: list[Line] = field(default_factory=list)
    status: str = "connecting"
    listening: bool = False
    dropped: int = 0          # lines trimmed from the front (absolute index = dropped + position)

    def _find(self, role: str, key: str) -> Line | None:
        for line in reversed(self.lines[-20:]):
            if line.role == role and line.key == key:
                return line
        return None

    def _add(self, line: Line) -> Line:
        self.lines.append(line)
        excess = len(self.lines) - MAX_LINES
        if excess > 0:
            del self.lines[:excess]
            self.dropped += excess
        return line

    def apply(self, rec: Received) -> None:
        ev = rec.event
        if rec.stale:
            return
        if isinstance(ev, SessionReady):
            self.status = "connected"
        elif isinstance(ev, InputSpeechStarted):
            self.listening = True
        elif isinstance(ev, InputSpeechStopped):
            self.listening = False
        elif isinstance(ev, (TranscriptUserDelta, TranscriptUser)):
            line = self._find("user", ev.item_id) or self._add(Line("user", "", key=ev.item_id))
            line.text = clean(ev.text, MAX_TEXT_CHARS)    # cumulative: replace, never concatenate
            line.final = isinstance(ev, TranscriptUser)
        elif isinstance(ev, ReplyStarted):
            self._find("agent", ev.reply_id) or self._add(Line("agent", "", key=ev.reply_id))
        elif isinstance(ev, TranscriptAgentDelta):
            line = self._find("agent", ev.reply_id) or self._add(Line("agent", "", key=ev.reply_id))
            if not line.final and len(line.text) < MAX_TEXT_CHARS:
                line.text = (line.text + clean(ev.delta))[:MAX_TEXT_CHARS]
        elif isinstance(ev, TranscriptAgent):
            line = self._find("agent", ev.reply_id) or self._add(Line("agent", "", key=ev.reply_id))
            line.text, line.final, line.interrupted = clean(ev.text, MAX_TEXT_CHARS), True, ev.interrupted
        elif isinstance(ev, ToolCall):
            args = json.dumps(ev.arguments, ensure_ascii=False)
            self._add(Line("tool", f"{clean(ev.name, 80)}({clean(args, 300)})", key=ev.call_id))
        elif isinstance(ev, SessionError):
            self._add(Line("notice", f"server error {clean(ev.code, 60)}: {clean(ev.message, 300)}", True))

    def tool_result(self, call_id: str, result: str, is_error: bool) -> None:
        line = self._find("tool", call_id)
        if line is not None:
            line.text += (" -> error: " if is_error else " -> ") + clean(result, 300)
            line.final = True


_STYLE = {"user": "bold cyan", "agent": "bold green", "tool": "bold magenta", "notice": "yellow"}


def render_line(line: Line) -> Text:
    from rich.text import Text
    label = "agent (interrupted)" if line.interrupted else line.role
    text = Text()
    text.append(f"{label}: ", style=_STYLE.get(line.role, ""))
    text.append(shown(line.text, line.final), style="" if line.final else "dim")
    return text


def render(view: ConversationView, height: int = 12) -> RenderableType:
    """The live region: the last ``height`` lines of the conversation and a status line."""
    from rich.console import Group
    from rich.text import Text
    rows: list[RenderableType] = [render_line(line) for line in view.lines[-height:]]
    status = Text(f"[{view.status}]" + (" listening…" if view.listening else ""), style="dim")
    rows.append(status)
    return Group(*rows)


class LiveOutput:
    """Rich live view on stderr of a :class:`ConversationView`. Finished lines scroll above the live
    region. Subclasses change how lines and the region render (:meth:`_line`, :meth:`_region`).

    Events only change the view; the terminal is redrawn at most once per :data:`FRAME_S` (a change
    inside a frame schedules one redraw at its end on the running loop), so the cost of the view is
    bounded by the frame rate, not by how fast the server sends (issue 12 item 11)."""

    def __init__(self, view: ConversationView | None = None, verbose: bool = False,
                 console: Console | None = None, stream: IO[str] | None = None,
                 auto_refresh: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console
        from rich.live import Live
        self.console = console or Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.view = view if view is not None else ConversationView()
        self.verbose = verbose
        self.clock = clock
        self.draws = 0             # redraws so far (a storm must not multiply them)
        self._last_draw = -FRAME_S
        self._pending: asyncio.TimerHandle | None = None
        self._printed = 0          # absolute index of the next line to scroll out
        self.live = Live(self._region(self.view.lines), console=self.console, refresh_per_second=12,
                         transient=True, auto_refresh=auto_refresh)
        self.live.start()

    def _line(self, line: Line) -> RenderableType:
        return render_line(line)

    def _region(self, lines: list[Line]) -> RenderableType:
        return render(ConversationView(lines, self.view.status, self.view.listening))

    def _scroll_finished(self) -> None:
        # Lines are printed above the live region once final, in order.
        lines, dropped = self.view.lines, self.view.dropped
        self._printed = max(self._printed, dropped)
        while self._printed - dropped < len(lines) and lines[self._printed - dropped].final:
            self.live.console.print(self._line(lines[self._printed - dropped]))
            self._printed += 1

    def refresh(self) -> None:
        """Redraw now if a frame has passed since the last redraw, else once at the end of this frame."""
        wait = self._last_draw + FRAME_S - self.clock()
        if wait <= 0:
            self._draw()
        elif self._pending is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._draw()
                return
            self._pending = loop.call_later(wait, self._draw)

    def _draw(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._last_draw = self.clock()
        self.draws += 1
        self._scroll_finished()
        self.live.update(self._region(self.view.lines[self._printed - self.view.dropped:]), refresh=True)

    def server_event(self, rec: Received) -> None:
        self.view.apply(rec)
        self.refresh()

    def client_event(self, kind: str, **fields: Any) -> None:
        if kind == "tool.result":
            self.view.tool_result(str(fields.get("call_id", "")), str(fields.get("result", "")),
                                  bool(fields.get("is_error")))
            self.refresh()

    def notice(self, message: str, level: str = "info") -> None:
        if level == "debug" and not self.verbose:
            return
        from rich.text import Text
        style = {"error": "bold red", "warning": "yellow"}.get(level, "dim")
        self._scroll_finished()            # finished lines first: the transcript stays in order
        self.live.console.print(Text(clean(message), style=style))

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._scroll_finished()
        self.live.stop()
