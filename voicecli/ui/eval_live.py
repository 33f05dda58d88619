"""The rich live table of ``voicecli eval`` on a terminal (stderr): one row per conversation run
(turn reached, status, latency of each turn), a progress bar, then the summary. Rendering is a
pure function of the rows (:func:`render`), tested as a golden string."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicecli.env import Environment
from voicecli.ui.eval_output import conv_label, summarize, summary_lines, turn_line
from voicecli.ui.sanitize import clean

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from voicecli.app.eval_run import ConversationResult, TurnResult

STYLE = {"passed": "green", "xfailed": "yellow", "failed": "red", "broken": "red", "xpassed": "red",
         "running": "cyan", "waiting": "dim"}


class Row:
    def __init__(self, label: str) -> None:
        self.label = label
        self.status = "waiting"
        self.turns: list[str] = []
        self.note = ""


def render(rows: dict[str, Row], done: int, total: int) -> RenderableType:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text
    table = Table(box=None, pad_edge=False, show_edge=False)
    for col in ("conversation", "turns", "status", "latency / note"):
        table.add_column(col, overflow="fold")
    for row in rows.values():
        table.add_row(Text(clean(row.label, 60)), Text(str(len(row.turns))),
                      Text(row.status, style=STYLE.get(row.status, "")),
                      Text(clean(" ".join(row.turns) + (f"  {row.note}" if row.note else ""), 200)))
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=40), Text(f"{done}/{total}"))
    return Group(table, bar)


class LiveReporter:
    """A :class:`voicecli.app.eval_run.Reporter` drawing a rich Live on stderr."""

    def __init__(self, env: Environment, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live
        self.console = console or Console(file=env.stderr, highlight=False, markup=False,
                                          no_color=env.no_color)
        self.rows: dict[str, Row] = {}
        self.done = 0
        self.total = 0
        self.failures: list[str] = []
        self.live = Live(console=self.console, auto_refresh=True, refresh_per_second=8,
                         get_renderable=lambda: render(self.rows, self.done, self.total), transient=False)

    def _row(self, suite: str, name: str, repeat: int) -> Row:
        key = conv_label(suite, name, repeat)
        return self.rows.setdefault(key, Row(key))

    def start(self, total: int) -> None:
        self.total = total
        self.live.start()

    def conversation_started(self, suite: str, name: str, repeat: int) -> None:
        self._row(suite, name, repeat).status = "running"

    def turn(self, result: TurnResult) -> None:
        row = self._row(result.suite, result.conversation, result.repeat)
        mark = {"passed": "ok", "failed": "FAIL", "not run": "-"}[result.status]
        lat = f"{result.latency_ms:.0f}ms" if result.latency_ms is not None else ""
        row.turns.append(f"{result.turn}:{mark}{(' ' + lat) if lat else ''}")
        if result.status == "failed":
            self.failures.append(turn_line(result))

    def conversation(self, result: ConversationResult) -> None:
        row = self._row(result.suite, result.name, result.repeat)
        row.status = result.status
        row.note = result.error or ""
        self.done += 1

    def notice(self, label: str, message: str, level: str) -> None:
        self.console.print(f"voicecli: {level}: {clean(label, 120)}: {clean(message, 500)}")

    def summary(self, results: list[ConversationResult]) -> None:
        self.live.stop()
        for line in self.failures:
            self.console.print(line, style="red")
        for line in summary_lines(summarize(results)):
            self.console.print(line)

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
