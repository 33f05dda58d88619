"""``voicecli eval`` output: plain lines (piped), NDJSON (``--json``), JUnit XML (``--junit``), and
the summary all of them share. The rich live table is :mod:`voicecli.ui.eval_live`.

Plain: one line per turn on stdout (``PASS``/``FAIL`` suite/conversation turn N, latency, and every
failed expectation), one per broken conversation, then the summary lines. Notices go to stderr.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from voicecli.ui.output import _Writer
from voicecli.ui.sanitize import clean

if TYPE_CHECKING:   # the result types are the runner's; this module only renders them
    from voicecli.app.eval_run import ConversationResult, TurnResult


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(results: Sequence[ConversationResult]) -> dict[str, Any]:
    """Counts per status and per expectation kind, latency p50/p95/max, tool-call accuracy."""
    kinds: dict[str, dict[str, int]] = {}
    latencies: list[float] = []
    for r in results:
        for t in r.turns:
            if t.latency_ms is not None:
                latencies.append(t.latency_ms)
            for c in t.checks:
                row = kinds.setdefault(c.kind, {"passed": 0, "failed": 0})
                row["passed" if c.ok else "failed"] += 1
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    tool = kinds.get("tool")
    accuracy = round(tool["passed"] / (tool["passed"] + tool["failed"]), 3) if tool else None
    return {"type": "voicecli.eval.summary", "conversations": len(results), **statuses,
            "ok": all(r.ok for r in results), "expectations": kinds,
            "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                           "max": max(latencies) if latencies else None, "turns": len(latencies)},
            "tool_call_accuracy": accuracy}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{summary[k]} {k}" for k in ("passed", "failed", "broken", "xfailed", "xpassed")
                       if summary.get(k))
    lines = [f"conversations: {summary['conversations']} ({counts})"]
    kinds = summary["expectations"]
    if kinds:
        lines.append("expectations: " + ", ".join(f"{k} {v['passed']}/{v['passed'] + v['failed']}"
                                                  for k, v in kinds.items()))
    lat = summary["latency_ms"]
    if lat["turns"]:
        lines.append(f"latency: p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms "
                     f"({lat['turns']} turns)")
    if summary["tool_call_accuracy"] is not None:
        lines.append(f"tool-call accuracy: {summary['tool_call_accuracy'] * 100:.0f}%")
    return lines


def conv_label(suite: str, name: str, repeat: int) -> str:
    return f"{suite}/{name}" + (f" #{repeat}" if repeat > 1 else "")


def turn_line(t: TurnResult) -> str:
    tag = {"passed": "PASS", "failed": "XFAIL" if t.expect_fail else "FAIL", "not run": "SKIP"}[t.status]
    lat = f" {t.latency_ms:.0f} ms" if t.latency_ms is not None else ""
    line = f"{tag} {clean(conv_label(t.suite, t.conversation, t.repeat), 120)} turn {t.turn}{lat}"
    failed = [c for c in t.checks if not c.ok]
    if failed:
        line += ": " + "; ".join(clean(c.describe(), 300) for c in failed)
    return line


class PlainReporter:
    """Plain lines on stdout (a :class:`voicecli.app.eval_run.Reporter`)."""

    def __init__(self, stdout: IO[str], stderr: IO[str], verbose: bool = False) -> None:
        self.out, self.err, self.verbose = _Writer(stdout), _Writer(stderr), verbose

    def turn(self, result: TurnResult) -> None:
        self.out.line(turn_line(result))

    def conversation(self, result: ConversationResult) -> None:
        label = clean(conv_label(result.suite, result.name, result.repeat), 120)
        if result.status == "broken":
            self.out.line(f"BROKEN {label}: {result.error}")
        elif result.status == "xpassed":
            self.out.line(f"XPASS {label}: meant to fail (expect_fail), but every expectation passed")

    def conversation_started(self, suite: str, name: str, repeat: int) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def notice(self, label: str, message: str, level: str) -> None:
        self.err.line(f"voicecli: {level}: {clean(label, 120)}: {clean(message, 500)}")

    def summary(self, results: list[ConversationResult]) -> None:
        for line in summary_lines(summarize(results)):
            self.out.line(line)

    def close(self) -> None:
        pass


class JsonReporter(PlainReporter):
    """NDJSON: one ``voicecli.eval.turn`` per turn, one ``voicecli.eval.conversation`` per
    conversation run, and a final ``voicecli.eval.summary``."""

    def _emit(self, obj: dict[str, Any]) -> None:
        self.out.line(json.dumps(obj, ensure_ascii=True, separators=(",", ":")))

    def turn(self, result: TurnResult) -> None:
        self._emit(result.to_json())

    def conversation(self, result: ConversationResult) -> None:
        self._emit(result.to_json())

    def summary(self, results: list[ConversationResult]) -> None:
        self._emit(summarize(results))


def write_junit(path: Path, results: Sequence[ConversationResult]) -> None:
    """JUnit XML: a testsuite per suite, a testcase per conversation run; a failure lists every
    failed expectation, a broken conversation is an error, expect_fail ones that failed are skipped
    (with the reason), like pytest's xfail."""
    root = ET.Element("testsuites")
    by_suite: dict[str, list[ConversationResult]] = {}
    for r in results:
        by_suite.setdefault(r.suite, []).append(r)
    for suite, runs in by_suite.items():
        el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(runs)),
                           failures=str(sum(r.status in ("failed", "xpassed") for r in runs)),
                           errors=str(sum(r.status == "broken" for r in runs)),
                           skipped=str(sum(r.status == "xfailed" for r in runs)),
                           time=f"{sum(r.duration_s for r in runs):.3f}")
        for r in runs:
            name = r.name + (f" #{r.repeat}" if r.repeat > 1 else "")
            case = ET.SubElement(el, "testcase", classname=suite, name=name, time=f"{r.duration_s:.3f}")
            failed = "\n".join(f"turn {t.turn} ({t.label}): {c.describe()}" for t, c in r.failed_checks)
            if r.status == "broken":
                ET.SubElement(case, "error", message=r.error or "broken").text = r.error
            elif r.status == "failed":
                first = failed.splitlines()[0] if failed else "failed"
                ET.SubElement(case, "failure", message=first).text = failed
            elif r.status == "xpassed":
                ET.SubElement(case, "failure", message="meant to fail (expect_fail) but passed")
            elif r.status == "xfailed":
                ET.SubElement(case, "skipped", message="failed as expected (expect_fail)").text = failed
    ET.indent(root)
    path.write_text(ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n", encoding="utf-8")
