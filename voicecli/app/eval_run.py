"""The ``voicecli eval`` runner: conversations of suites as concurrent real-time sessions.

Each conversation is one :class:`~voicecli.app.conversation.Conversation` (its own socket, clock
readings, tracker, silence pump and tool dispatcher: nothing is shared between sessions) driven by
:func:`voicecli.app.ask.run_script`, the runner under ``ask``. A semaphore keeps at most
``concurrency`` sessions open; ``repeat`` runs each conversation K times. A conversation that breaks
(connection lost for good, timeout, session error) fails with its reason and the others go on.
Every expectation of every turn is checked and reported (:mod:`voicecli.app.eval_checks`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from voicecli.app.ask import AskOptions, ScriptTurn, TurnTracker, run_script
from voicecli.app.conversation import ConnectionSettings
from voicecli.app.conversation import Conversation as Session
from voicecli.app.eval_checks import Check, check_turn
from voicecli.app.eval_suite import Conversation, Suite, Turn
from voicecli.app.toolcalls import ToolDispatcher
from voicecli.errors import VoicecliError
from voicecli.protocol.constants import pcm_seconds
from voicecli.status import ExitStatus
from voicecli.tools import ToolRunner
from voicecli.ui.sanitize import clean


@dataclass
class TurnResult:
    suite: str
    conversation: str
    repeat: int
    turn: int                         # 1-based
    label: str
    status: str                       # passed | failed | not run
    checks: list[Check]
    latency_ms: float | None = None
    reply_s: float | None = None
    heard: str = ""
    said: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    expect_fail: bool = False         # its conversation is meant to fail

    def to_json(self) -> dict[str, Any]:
        return {"type": "voicecli.eval.turn", "suite": self.suite, "conversation": self.conversation,
                "repeat": self.repeat, "turn": self.turn, "input": self.label, "status": self.status,
                "latency_ms": self.latency_ms, "reply_s": self.reply_s, "heard": self.heard,
                "said": self.said, "tools": self.tools, "interrupted": self.interrupted,
                "checks": [c.to_json() for c in self.checks]}


@dataclass
class ConversationResult:
    suite: str
    name: str
    repeat: int
    turns: list[TurnResult]
    expect_fail: bool = False
    error: str | None = None          # why it broke
    error_status: int | None = None   # the exit status of that error
    duration_s: float = 0.0

    @property
    def failed_checks(self) -> list[tuple[TurnResult, Check]]:
        return [(t, c) for t in self.turns for c in t.checks if not c.ok]

    @property
    def raw_ok(self) -> bool:
        return self.error is None and not self.failed_checks

    @property
    def status(self) -> str:
        """passed | failed | broken | xfailed (failed as meant) | xpassed (meant to fail, passed)."""
        if self.error is not None:
            return "broken"
        if self.expect_fail:
            return "xpassed" if self.raw_ok else "xfailed"
        return "failed" if self.failed_checks else "passed"

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "xfailed")

    def to_json(self) -> dict[str, Any]:
        return {"type": "voicecli.eval.conversation", "suite": self.suite, "conversation": self.name,
                "repeat": self.repeat, "status": self.status, "error": self.error,
                "duration_s": round(self.duration_s, 2),
                "failed": [f"turn {t.turn}: {c.describe()}" for t, c in self.failed_checks]}


class Reporter(Protocol):
    """What the runner reports to (plain, NDJSON, the rich table; :mod:`voicecli.ui.eval_output`)."""

    def start(self, total: int) -> None: ...
    def conversation_started(self, suite: str, name: str, repeat: int) -> None: ...
    def turn(self, result: TurnResult) -> None: ...
    def conversation(self, result: ConversationResult) -> None: ...
    def notice(self, label: str, message: str, level: str) -> None: ...
    def summary(self, results: list[ConversationResult]) -> None: ...
    def close(self) -> None: ...


class QuietOutput:
    """The :class:`~voicecli.ui.output.Output` of one eval session: events go to the tracker (a
    listener), not the terminal; warnings and errors go to the reporter with the session's label."""

    def __init__(self, reporter: Reporter, label: str) -> None:
        self.reporter, self.label = reporter, label

    def server_event(self, rec: Any) -> None:
        pass

    def client_event(self, kind: str, **fields: Any) -> None:
        pass

    def notice(self, message: str, level: str = "info") -> None:
        if level in ("warning", "error"):
            self.reporter.notice(self.label, message, level)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Prepared:
    """One conversation ready to run: where to connect, what to send, which tools to run."""

    suite: Suite
    conv: Conversation
    settings: ConnectionSettings
    turns: list[ScriptTurn]
    tools: list[Any]
    opts: AskOptions


def with_scenario(url: str, scenario: str | None) -> str:
    """``url`` with its ``scenario`` query replaced (the local server's scripted engine)."""
    if not scenario:
        return url
    parts = urlsplit(url)
    from urllib.parse import parse_qsl
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "scenario"] + [("scenario", scenario)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def script_turns(conv: Conversation, audio: dict[Any, bytes],
                 speech: dict[tuple[str, str | None], bytes]) -> list[ScriptTurn]:
    voice = conv.run.get("say_voice")
    out = []
    for t in conv.turns:
        pcm = audio[t.audio] if t.audio is not None else None
        if t.say is not None:
            pcm = speech[(t.say, voice)]
        out.append(ScriptTurn(t.label, pcm=pcm, text=t.type, silence_ms=t.silence_ms,
                              barge_in_after_ms=t.barge_in_after_ms))
    return out


def _turn_results(p: Prepared, repeat: int, tracker: TurnTracker | None) -> list[TurnResult]:
    results = []
    for t in p.conv.turns:
        seen = tracker.turns.get(t.index) if tracker is not None else None
        results.append(_turn_result(p, repeat, t, seen))
    return results


def _turn_result(p: Prepared, repeat: int, t: Turn, seen: Any) -> TurnResult:
    if seen is None:
        return TurnResult(p.suite.name, p.conv.name, repeat, t.index + 1, t.label, "not run", [],
                          expect_fail=p.conv.expect_fail)
    said = " ".join(x for x in seen.agent_text if x)
    tools = [{"name": c.name, "arguments": c.arguments} for c in seen.tool_calls]
    reply_s = round(pcm_seconds(seen.reply_bytes), 2) if seen.reply_bytes else None
    checks = check_turn(t.expect, heard=seen.user_text, said=said, tools=tools,
                        interrupted=seen.interrupted, latency_ms=seen.latency_ms, reply_s=reply_s)
    status = "passed" if all(c.ok for c in checks) else "failed"
    return TurnResult(p.suite.name, p.conv.name, repeat, t.index + 1, t.label, status, checks,
                      seen.latency_ms, reply_s, seen.user_text, said, tools, seen.interrupted,
                      p.conv.expect_fail)


async def run_conversation(p: Prepared, repeat: int, reporter: Reporter,
                           clock: Callable[[], float] = time.monotonic) -> ConversationResult:
    """Run one conversation once. Never raises a VoicecliError: a broken conversation is a result."""
    label = p.conv.name if repeat == 1 else f"{p.conv.name} #{repeat}"
    started = clock()
    session = Session(p.settings, QuietOutput(reporter, label))
    tracker: TurnTracker | None = None
    error: VoicecliError | None = None
    try:
        await session.open()
        tracker = TurnTracker(session, keep_audio=False)
        tools = ToolDispatcher(session, ToolRunner(p.tools))
        try:
            await run_script(session, tracker, p.turns, p.opts)
        finally:
            await tools.cancel()
    except VoicecliError as exc:
        error = exc
    finally:
        await session.close()
    turns = _turn_results(p, repeat, tracker)
    if error is not None:   # the turn it broke on did not finish: its checks are not meaningful
        for tr in turns:
            if tr.status != "not run" and tracker is not None and not tracker.turns[tr.turn - 1].done.done():
                tr.status, tr.checks = "not run", []
    for tr in turns:
        reporter.turn(tr)
    result = ConversationResult(p.suite.name, p.conv.name, repeat, turns, p.conv.expect_fail,
                                clean(error.one_line(), 500) if error else None,
                                int(error.exit_code) if error else None, clock() - started)
    reporter.conversation(result)
    return result


async def run_all(prepared: Sequence[Prepared], concurrency: int, repeat: int,
                  reporter: Reporter) -> list[ConversationResult]:
    """Every conversation ``repeat`` times, at most ``concurrency`` at once, in suite order."""
    gate = asyncio.Semaphore(concurrency)
    jobs = [(p, k) for k in range(1, repeat + 1) for p in prepared]
    reporter.start(len(jobs))

    async def one(p: Prepared, k: int) -> ConversationResult:
        async with gate:
            reporter.conversation_started(p.suite.name, p.conv.name, k)
            return await run_conversation(p, k, reporter)

    results = await asyncio.gather(*(one(p, k) for p, k in jobs))
    reporter.summary(list(results))
    return list(results)


def exit_status(results: Sequence[ConversationResult]) -> int:
    """0 all passed; a broken conversation's own status (4 connection, 3 auth, 5 server, 7
    timeout) over 1 for a failed expectation."""
    broken = [r for r in results if r.status == "broken" and r.error_status is not None]
    if broken:
        return broken[0].error_status or ExitStatus.ERROR
    return ExitStatus.OK if all(r.ok for r in results) else ExitStatus.ERROR
