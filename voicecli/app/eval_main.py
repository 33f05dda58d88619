"""``voicecli eval SUITE...``: load and check every suite, resolve each conversation's settings,
start the embedded server if one is wanted, run, report, return the exit status.

Everything that can be wrong with the input (a broken suite, an unknown key, a bad regex, a missing
audio file, a bad setting) fails here before anything connects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voicecli.app.ask import AskOptions
from voicecli.app.eval_run import (
    ConversationResult,
    Prepared,
    Reporter,
    exit_status,
    run_all,
    script_turns,
    with_scenario,
)
from voicecli.app.eval_suite import Suite, effective_for, load_audio, load_suite, synthesize
from voicecli.config import CommonFlags, Effective
from voicecli.errors import UsageError
from voicecli.settings import Resolved, load_checked, resolve_effective


@dataclass
class EvalOptions:
    concurrency: int = 1
    repeat: int = 1
    filter: str | None = None      # a regex searched in "suite/conversation" names
    timeout_s: float = 30.0        # per turn unless the suite says timeout_s
    trailing_silence_ms: int = 1000
    chunk_ms: int = 50


def _resolved(eff: Effective) -> Resolved:
    """:func:`voicecli.settings.resolve` for an already layered Effective (the suite's)."""
    return resolve_effective(eff, UsageError(
        "no API key: set ASSEMBLYAI_API_KEY, or pass --api-key or --token",
        "or add --local (or local = true in the suite) to use the embedded local server"))


def load_suites(paths: Sequence[Path], name_filter: str | None) -> list[Suite]:
    pattern = None
    if name_filter:
        try:
            pattern = re.compile(name_filter, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"--filter {name_filter!r} is not a valid regular expression: {exc}") from None
    suites = [load_suite(p) for p in paths]
    if pattern is not None:
        kept = []
        for s in suites:
            convs = tuple(c for c in s.conversations if pattern.search(f"{s.name}/{c.name}"))
            if convs:
                kept.append(Suite(s.path, s.name, s.text, s.settings, convs))
        if not kept:
            raise UsageError(f"--filter {name_filter!r} matches no conversation",
                             "it is a regular expression searched in SUITE/CONVERSATION names")
        suites = kept
    return suites


class Plan:
    """The prepared conversations and, if any of them is local, the embedded server."""

    def __init__(self, suites: list[Suite], flags: CommonFlags, opts: EvalOptions, stderr: IO[str],
                 local_url: Callable[[], str] | None = None) -> None:
        base = load_checked(flags, stderr)
        speech: dict[tuple[str, str | None], bytes] = {}
        self.items: list[tuple[Suite, Any, Resolved]] = []
        self.audio: dict[Any, bytes] = {}
        for suite in suites:
            self.audio.update(load_audio(suite))
            synthesize(suite, speech)
            for conv in suite.conversations:
                self.items.append((suite, conv, _resolved(effective_for(base, suite, conv))))
        self.speech = speech
        self.opts = opts
        self._server: Any = None
        self._local_url = local_url        # a shared server (the pytest plugin's), else our own
        self._agents: dict[tuple[str, str], str] = {}

    def prepared(self) -> list[Prepared]:
        out = []
        for suite, conv, res in self.items:
            url, api_key = res.url, res.api_key
            if res.local:
                url = with_scenario(self.local_url(), res.client.get("local_scenario"))
                if not api_key and not res.token:
                    api_key = "local"
            from voicecli.app.agents_api import bind_agent
            from voicecli.app.conversation import ConnectionSettings
            timeout = float(conv.run.get("timeout_s", self.opts.timeout_s))
            session = bind_agent(res.session, url, api_key, self._agents)   # --agent-id NAME -> id
            settings = ConnectionSettings(url=url, session=session, api_key=api_key, token=res.token,
                                          ready_timeout=timeout)
            opts = AskOptions(chunk_ms=int(conv.run.get("chunk_ms", self.opts.chunk_ms)),
                              trailing_silence_ms=int(conv.run.get("trailing_silence_ms",
                                                                   self.opts.trailing_silence_ms)),
                              timeout_s=timeout)
            out.append(Prepared(suite, conv, settings, script_turns(conv, self.audio, self.speech),
                                res.tools, opts))
        return out

    def local_url(self) -> str:
        if self._local_url is not None:
            return self._local_url()
        if self._server is None:
            from voicecli.server.app import ServerThread
            from voicecli.server.options import ServerOptions
            self._server = ServerThread(ServerOptions(port=0))
            self._server.start()
        return str(self._server.url)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


async def run_eval(paths: Sequence[Path], flags: CommonFlags, opts: EvalOptions, reporter: Reporter,
                   stderr: IO[str]) -> tuple[int, list[ConversationResult]]:
    """Check everything, run, report. Returns (exit status, results); raises UsageError/
    ConfigError/AudioError for bad input (before connecting)."""
    suites = load_suites(paths, opts.filter)
    plan = Plan(suites, flags, opts, stderr)
    try:
        prepared = plan.prepared()
        results = await run_all(prepared, opts.concurrency, opts.repeat, reporter)
    finally:
        plan.close()
    return exit_status(results), results
