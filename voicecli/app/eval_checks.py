"""Checking one turn's expectations (``voicecli eval``): every one is checked, each gives a
:class:`Check` that says what was expected and what happened. Pure: no I/O, no clock."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from voicecli.app.eval_suite import ToolExpectation
from voicecli.ui.sanitize import clean


@dataclass(frozen=True)
class Check:
    kind: str          # an expectation kind: reply, not_reply, heard, tool, ... (EXPECTATIONS)
    ok: bool
    expected: str
    actual: str

    def describe(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return f"{self.kind} {verdict}: expected {self.expected}, got {self.actual}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.ok, "expected": self.expected, "actual": self.actual}


def _q(text: str) -> str:
    return repr(clean(text, 200)) if text else "nothing"


def _args_ok(want: ToolExpectation, args: dict[str, Any]) -> bool:
    for key, value in want.arguments.items():
        if key not in args or args[key] != value:
            return False
    for key, pattern in want.arguments_match.items():
        if key not in args:
            return False
        text = args[key] if isinstance(args[key], str) else json.dumps(args[key])
        if pattern.search(text) is None:
            return False
    return True


def _want_text(want: ToolExpectation) -> str:
    parts = [json.dumps(want.arguments, sort_keys=True)] if want.arguments else []
    parts += [f"{k}~/{p.pattern}/" for k, p in want.arguments_match.items()]
    return f"{want.name}({', '.join(parts)})"


def _calls_text(tools: list[dict[str, Any]]) -> str:
    if not tools:
        return "no tool call"
    return ", ".join(f"{t['name']}({json.dumps(t['arguments'], sort_keys=True)})" for t in tools)


def check_turn(expect: dict[str, Any], heard: str, said: str, tools: list[dict[str, Any]],
               interrupted: bool, latency_ms: float | None, reply_s: float | None) -> list[Check]:
    """One Check per expectation of the turn, in the suite's documented order."""
    checks: list[Check] = []
    for kind, want in expect.items():
        if kind in ("reply", "not_reply", "heard"):
            pattern: re.Pattern[str] = want
            text = heard if kind == "heard" else said
            found = pattern.search(text) is not None
            ok = found if kind != "not_reply" else not found
            verb = "not matching" if kind == "not_reply" else "matching"
            checks.append(Check(kind, ok, f"{verb} /{pattern.pattern}/", _q(text)))
        elif kind == "tool":
            for w in want:
                ok = any(t["name"] == w.name and _args_ok(w, t["arguments"]) for t in tools)
                checks.append(Check(kind, ok, _want_text(w), _calls_text(tools)))
        elif kind == "no_tool":
            bad = tools if want is True else [t for t in tools if t["name"] in want]
            expected = "no tool call" if want is True else f"no call of {', '.join(want)}"
            checks.append(Check(kind, not bad, expected, _calls_text(tools)))
        elif kind == "interrupted":
            checks.append(Check(kind, interrupted == want, "interrupted" if want else "not interrupted",
                                "interrupted" if interrupted else "not interrupted"))
        elif kind == "max_latency_ms":
            ok = latency_ms is not None and latency_ms <= want
            checks.append(Check(kind, ok, f"<= {want:g} ms",
                                f"{latency_ms:g} ms" if latency_ms is not None else "no reply audio"))
        elif kind == "max_reply_s":
            ok = reply_s is not None and reply_s <= want
            checks.append(Check(kind, ok, f"<= {want:g} s of reply audio",
                                f"{reply_s:g} s" if reply_s is not None else "no reply audio"))
    return checks
