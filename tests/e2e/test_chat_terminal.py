"""`voicecli chat` on a real terminal (a pty from python's pty module, or tmux) with the virtual
devices, against the hostile-server test double: what the terminal is left with, what the screen
shows, and what a second Ctrl-C, `q` mid-reply and typed turns do (issues 10 and 12)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, unit
from tests.e2e.pulse import VirtualAudio
from tests.hostile_server import HostileServer, Hostility

KEY = ("--api-key", "k")
SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"


class PtyChat:
    """``voicecli chat ARGS`` with stdin/stdout/stderr on one pty; everything it writes is collected."""

    def __init__(self, env: dict[str, str], *args: str, cols: int = 100) -> None:
        self.master, self.slave = pty.openpty()
        import fcntl
        import struct
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        full_env = dict(env, TERM="xterm-256color", PYTHONUNBUFFERED="1", COLUMNS=str(cols), LINES="40")
        for name in ("ASSEMBLYAI_API_KEY", "NO_COLOR", "CI"):
            full_env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "chat", *args], cwd=ROOT,
                                     env=full_env, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True)
        self.out = b""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    if self.proc.poll() is not None:
                        return
                    continue
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.out += data

    def text(self) -> bytes:
        with self._lock:
            return self.out

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + unit(timeout)
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not on the terminal within {timeout} s; exit={self.proc.poll()}; "
                             f"output tail={self.text()[-1500:]!r}")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(unit(timeout))
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def lflags(self) -> int:
        return int(termios.tcgetattr(self.slave)[3])

    def close(self) -> None:
        self.kill()
        self._reader.join(unit(5))
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def _record_files(directory: Path) -> dict[str, Path]:
    return {p.suffix: p for p in directory.glob("chat-*")}


def test_second_ctrl_c_skips_only_the_wait_terminal_restored_and_recording_written(
        vaudio: VirtualAudio, tmp_path: Path) -> None:
    """Issue 12 item 6: the server takes 30 s to confirm session.end; a second Ctrl-C during that
    wait ends the chat at once, and still the terminal gets its echo and cursor back and --record
    writes both files."""
    rec = tmp_path / "rec"
    with HostileServer(Hostility(end_delay_s=30, greet_ms=600)) as srv:
        chat = PtyChat(vaudio.env, "--url", srv.url, *KEY, "--record", str(rec))
        try:
            assert chat.lflags() & termios.ECHO              # the terminal as the test hands it over
            chat.wait_for(b"connected")
            chat.wait_for(b"word5")                          # the greeting was heard
            time.sleep(0.3)
            assert not chat.lflags() & termios.ECHO          # the key reader's cbreak mode is on
            chat.signal()
            time.sleep(0.5)                                  # now waiting for session.ended
            assert chat.proc.poll() is None
            second = time.monotonic()
            chat.signal()
            code = chat.wait(timeout=10)
            took = time.monotonic() - second
            time.sleep(0.2)
            out = chat.text()
            lflags = chat.lflags()
        finally:
            chat.close()
    assert code == 130, out[-2000:]
    assert took < 1.8, f"the second Ctrl-C took {took:.1f} s to end the chat"   # end_timeout is 2 s
    assert b"Traceback" not in out, out[-3000:]
    assert lflags & termios.ECHO and lflags & termios.ICANON, "the terminal was left without echo"
    assert out.rfind(SHOW_CURSOR) > out.rfind(HIDE_CURSOR) >= 0, "the cursor was left hidden"
    files = _record_files(rec)
    assert set(files) == {".wav", ".json"}, list(rec.iterdir())
    doc = json.loads(files[".json"].read_text())
    assert [t["role"] for t in doc["transcript"]] == ["agent"]


def _json_lines(out: bytes) -> list[dict[str, Any]]:
    events = []
    for raw in out.decode("utf-8", "replace").splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            try:
                events.append(json.loads(raw))
            except ValueError:
                pass
    return events
