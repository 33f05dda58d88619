"""Issue 12 item 11: a delta storm (1,000 transcript.*.delta/s from the hostile-server test double)
must not make `voicecli ask`'s views CPU-bound: on a terminal (the rich live view, in a real pty) and
piped (plain lines) it finishes promptly after the storm; the live view redraws at a bounded rate."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
from io import StringIO

from rich.console import Console

from tests.conftest import EXAMPLES, ROOT, run_cli, unit
from tests.hostile_server import HostileServer, Hostility
from voicecli.protocol.events import server_event_from_dict
from voicecli.session.client import Received

HELLO = str(EXAMPLES / "hello.wav")
STORMS = Hostility(user_delta_storm=(1000, 1000), delta_storm=(3000, 1000))
STORM_S = 4.0


def _ask_on_a_pty(url: str) -> tuple[int, bytes, float]:
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="40")
    env.pop("ASSEMBLYAI_API_KEY", None)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "ask", HELLO, "--url", url, "--api-key", "k",
                             "--pace", "fast", "--timeout", "120"], cwd=ROOT, env=env, stdin=slave,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = start + unit(120)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    code = proc.wait(unit(10))
    took = time.monotonic() - start
    os.close(master)
    return code, out, took


def test_ask_live_view_finishes_promptly_after_a_delta_storm() -> None:
    with HostileServer(STORMS) as srv:
        code, out, took = _ask_on_a_pty(srv.url)
    assert code == 0, out[-2000:]
    assert b"Hello from the hostile server." in out
    # before the fix: 20.8 s for a 2 s storm (a full redraw per delta); now about the storm's length
    assert took < STORM_S + unit(5), f"ask took {took:.1f} s for a {STORM_S:.0f} s storm"
    assert len(out) < 2_000_000, f"{len(out)} bytes written to the terminal"


def test_ask_plain_output_finishes_promptly_after_a_delta_storm() -> None:
    with HostileServer(STORMS) as srv:
        start = time.monotonic()
        r = run_cli("ask", HELLO, "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "60")
        took = time.monotonic() - start
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == "Hello from the hostile server."
    assert took < STORM_S + unit(5), f"ask took {took:.1f} s for a {STORM_S:.0f} s storm"


def _delta(i: int) -> Received:
    return Received(server_event_from_dict({"type": "transcript.agent.delta", "reply_id": "r1",
                                            "delta": f"word{i} "}))


def test_live_view_redraws_at_a_bounded_rate_and_keeps_lines_capped() -> None:
    """20,000 deltas as fast as they come: redraws are bounded by the frame rate (one per frame
    plus the trailing one), not by the events; the line's text stays under its cap and the live
    region shows only its tail."""
    from voicecli.ui.live import FRAME_S, MAX_TEXT_CHARS, SHOWN_LIVE_CHARS, LiveOutput, render_line

    async def storm() -> tuple[int, float, int, int]:
        buf = StringIO()
        live = LiveOutput(console=Console(file=buf, width=100, force_terminal=True), auto_refresh=False)
        start, t0 = live.draws, time.monotonic()
        for i in range(20_000):
            live.server_event(_delta(i))
        elapsed = time.monotonic() - t0
        await asyncio.sleep(FRAME_S * 2)
        draws = live.draws - start
        line = live.view.lines[-1]
        shown = len(render_line(line).plain)
        live.close()
        return draws, elapsed, len(line.text), shown

    draws, elapsed, text_len, shown = asyncio.run(storm())
    assert draws <= elapsed / FRAME_S + 2, f"{draws} redraws for 20,000 events in {elapsed:.2f} s"
    assert text_len <= MAX_TEXT_CHARS
    assert shown <= SHOWN_LIVE_CHARS + 20
