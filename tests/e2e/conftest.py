"""End-to-end fixtures on real PortAudio devices: a private PulseAudio daemon with a virtual mic and
speaker (audio-lab.md section 2a, see ``pulse.py``), and a helper that runs ``voicecli chat`` as a
subprocess reading its NDJSON as it comes.

Where PulseAudio or PortAudio is missing these tests are skipped with the reason, unless
``VOICECLI_REQUIRE_AUDIO=1`` (set by ``.ci/run``): then they fail, so CI really runs them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, unit
from tests.e2e.pulse import VirtualAudio, pulse_missing


def require_audio() -> None:
    why = pulse_missing()
    if why is None:
        return
    if os.environ.get("VOICECLI_REQUIRE_AUDIO") == "1":
        pytest.fail(f"VOICECLI_REQUIRE_AUDIO=1 but real-device tests cannot run: {why}")
    pytest.skip(f"real-device tests need PortAudio and PulseAudio: {why}")


@pytest.fixture(scope="session")
def vaudio() -> Iterator[VirtualAudio]:
    require_audio()
    va = VirtualAudio().start()
    yield va
    va.stop()


class ChatProc:
    """``voicecli chat ARGS`` with the virtual devices; NDJSON lines collected by a reader thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        full_env = dict(env, PYTHONUNBUFFERED="1")
        full_env.pop("ASSEMBLYAI_API_KEY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "chat", *args], cwd=ROOT,
                                     env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.plain: list[str] = []
        self.stderr = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() and not line.startswith("{"):    # --no-ui: plain lines
                with self._lock:
                    self.plain.append(line.rstrip("\n"))
            elif line.strip():
                event = json.loads(line)
                event["_received"] = time.monotonic()
                with self._lock:
                    self.events.append(event)

    def wait_for(self, predicate: Any, timeout: float = 15.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + unit(timeout)
        seen = 0
        while time.monotonic() < deadline:
            with self._lock:
                events = list(self.events)
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {what or 'matching event'} within {timeout} s; exit={self.proc.poll()} "
                             f"types={[e.get('type') for e in self.events][-15:]} stderr={self.read_stderr()}")

    def plain_stdout(self) -> list[str]:
        with self._lock:
            return list(self.plain)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == kind]

    def session_summary(self) -> dict[str, Any]:
        """The last ``voicecli.metrics`` of scope ``session`` (the summary the chat emits at its end)."""
        return [e for e in self.of_type("voicecli.metrics") if e["scope"] == "session"][-1]

    def interrupt(self, timeout: float = 10.0) -> int:
        """Ctrl-C (SIGINT), then wait for the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        try:
            code = self.proc.wait(unit(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"voicecli chat did not exit within {timeout} s") from None
        self._reader.join(unit(5))
        self.read_stderr()
        return code

    def read_stderr(self) -> str:
        if self.proc.poll() is not None and self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read()
            self.proc.stderr.close()
        return self.stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
