"""Shared fixtures: a real `voicecli serve` subprocess on loopback, and helpers to run the real CLI.

Timeouts are multiples of one unit that ``VOICECLI_TEST_TIMEOUT_SCALE`` scales (design.md 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCALE = float(os.environ.get("VOICECLI_TEST_TIMEOUT_SCALE", "1"))


@pytest.fixture(scope="session", autouse=True)
def _private_agents_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every server and CLI run of the tests (subprocesses inherit the environment) keeps stored
    agents in a temporary file, never in the user's data dir."""
    old = os.environ.get("VOICECLI_AGENTS_STORE")
    os.environ["VOICECLI_AGENTS_STORE"] = str(tmp_path_factory.mktemp("agents") / "agents.sqlite3")
    yield
    if old is None:
        os.environ.pop("VOICECLI_AGENTS_STORE", None)
    else:
        os.environ["VOICECLI_AGENTS_STORE"] = old


def unit(seconds: float) -> float:
    return seconds * SCALE


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]

    def at(self, **query: str) -> str:
        if not query:
            return self.url
        from urllib.parse import urlencode
        return f"{self.url}?{urlencode(query)}"


def start_server(*args: str) -> Served:
    """Start `voicecli serve --port 0 ARGS` and read its URL from the first stdout line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + unit(20)
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip().startswith("ws://") or proc.poll() is not None:
            break
    if not line.strip().startswith("ws://"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"voicecli serve did not print its URL: {line!r} {err[-2000:]}")
    return Served(line.strip(), proc)


def stop_server(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(unit(10))
    except subprocess.TimeoutExpired:
        served.proc.kill()


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[Served]:
    """Scripted engine, tone TTS, no real-time check (so `ask --pace fast` works), key required."""
    served = start_server("--engine", "scripted", "--scenario", "echo", "--tts", "tone", "--no-rate-check",
                          "--api-key", "test-key")
    yield served
    stop_server(served)


@pytest.fixture(scope="session")
def default_server() -> Iterator[Served]:
    """The embedded default: energy turn detection, espeak-ng speech, the honest default brain."""
    served = start_server()
    yield served
    stop_server(served)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> Result:
    """Run the real entry point (`python -m voicecli.cli ...`) as a subprocess."""
    full_env = dict(os.environ)
    full_env.pop("ASSEMBLYAI_API_KEY", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "voicecli.cli", *args], capture_output=True, text=True,
                          timeout=unit(timeout), env=full_env, cwd=ROOT)
    return Result(proc.returncode, proc.stdout, proc.stderr)
