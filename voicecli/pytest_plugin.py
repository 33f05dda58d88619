"""pytest plugin (entry point ``voicecli`` in ``pytest11``): eval suites as test items.

Files named ``voice_*.toml`` (or matching ``--voice-suite GLOB``) are collected as suites, one test
item per conversation, run by the same runner as ``voicecli eval``
(:func:`voicecli.app.eval_run.run_conversation`). A conversation with ``expect_fail = true`` is a
strict xfail. With no ``--voice-url`` (and no url in the suite or config) the suite talks to the
embedded local server, one per pytest process (so ``-n 2`` with pytest-xdist runs two). Heavy
imports happen only when a suite is collected, so the plugin costs other test runs nothing.
"""

from __future__ import annotations

import asyncio
import fnmatch
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SERVER = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("voicecli", "voicecli eval suites")
    group.addoption("--voice-suite", default="voice_*.toml", metavar="GLOB",
                    help="File names collected as voicecli eval suites (default: voice_*.toml).")
    group.addoption("--voice-url", default=None, help="Server for the suites (default: the suite's "
                                                      "settings, else the embedded local server).")
    group.addoption("--voice-api-key", default=None, help="API key for --voice-url.")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    glob = parent.config.getoption("--voice-suite")
    if file_path.suffix == ".toml" and fnmatch.fnmatch(file_path.name, glob):
        return VoiceSuiteFile.from_parent(parent, path=file_path)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.stop()


def _local_url(config: pytest.Config) -> str:
    server = config.stash.get(_SERVER, None)
    if server is None:
        from voicecli.server.app import ServerThread
        from voicecli.server.options import ServerOptions
        server = ServerThread(ServerOptions(port=0))
        server.start()
        config.stash[_SERVER] = server
    return str(server.url)


class VoiceSuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from voicecli.app.eval_suite import load_suite
        from voicecli.errors import VoicecliError
        try:
            suite = load_suite(self.path)
        except VoicecliError as exc:
            raise self.CollectError(exc.one_line()) from None
        for conv in suite.conversations:
            item = VoiceConversation.from_parent(self, name=conv.name, suite=suite, conv=conv)
            if conv.expect_fail:
                item.add_marker(pytest.mark.xfail(strict=True, reason="expect_fail = true in the suite"))
            yield item


class VoiceFailure(Exception):
    """A conversation failed an expectation or broke; the message lists every failure."""


class _Collect:
    """A Reporter that keeps notices for the failure report."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def start(self, total: int) -> None: ...
    def conversation_started(self, suite: str, name: str, repeat: int) -> None: ...
    def turn(self, result: Any) -> None: ...
    def conversation(self, result: Any) -> None: ...
    def summary(self, results: list[Any]) -> None: ...
    def close(self) -> None: ...

    def notice(self, label: str, message: str, level: str) -> None:
        self.notices.append(f"{level}: {message}")


class VoiceConversation(pytest.Item):
    def __init__(self, *, suite: Any, conv: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite, self.conv = suite, conv

    def runtest(self) -> None:
        from voicecli.app.eval_main import EvalOptions, Plan
        from voicecli.app.eval_run import run_conversation
        from voicecli.app.eval_suite import Suite
        from voicecli.config import CommonFlags
        from voicecli.ui.eval_output import turn_line
        url = self.config.getoption("--voice-url")
        flags = CommonFlags(url=url, api_key=self.config.getoption("--voice-api-key"))
        one = Suite(self.suite.path, self.suite.name, self.suite.text, self.suite.settings, (self.conv,))
        plan = Plan([one], flags, EvalOptions(), sys.stderr, local_url=lambda: _local_url(self.config))
        reporter = _Collect()
        result = asyncio.run(run_conversation(plan.prepared()[0], 1, reporter))
        if result.error is not None:
            raise VoiceFailure(f"the conversation broke: {result.error}")
        if result.failed_checks:
            lines = [turn_line(t) for t in result.turns if t.status == "failed"]
            raise VoiceFailure("\n".join(lines + reporter.notices))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, VoiceFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.suite.name}/{self.conv.name}"
