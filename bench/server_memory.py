"""`voicecli serve` memory after many sessions (issue 12.9): N sessions, each with a conversation
history (``conversation.message`` items) and one spoken turn, half ended with ``session.end`` and
half dropped (left to the resume window); prints the server's RSS before, right after, and after
the resume window has passed. Asserts nothing.

Reproduce:  .venv/bin/python bench/server_memory.py [--sessions 300] [--history-kb 64]
            [--code DIR_OF_AN_OLD_CHECKOUT --window 30]   (an old checkout has no --resume-window)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_client import SESSION, _open, _until  # noqa: E402
from voicecli.protocol.constants import BYTES_PER_MS  # noqa: E402
from voicecli.server.tts import ToneTTS  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one(url: str, i: int, history_kb: int, speech: bytes) -> None:
    ws = await _open(url, "bench-key")
    await ws.send(json.dumps({"type": "session.update", "session": {**SESSION, "greeting": "Hi."}}))
    await _until(ws, "session.ready")
    chunk = ("history " * 128)[:1024]
    for _ in range(history_kb):
        await ws.send(json.dumps({"type": "conversation.message", "role": "user", "content": chunk}))
    step = 40 * BYTES_PER_MS
    for k in range(0, len(speech), step):
        await ws.send(json.dumps({"type": "input.audio", "audio": base64.b64encode(speech[k:k + step]).decode()}))
    got = await _until(ws, "transcript.user", 20)
    assert got[-1]["type"] == "transcript.user", got[-1]
    if i % 2 == 0:
        await ws.send(json.dumps({"type": "session.end"}))
        await _until(ws, "session.ended")
        await ws.close()
    else:
        ws.transport.abort()   # a drop: the session waits out its resume window


async def run(url: str, n: int, history_kb: int, parallel: int) -> None:
    speech = ToneTTS().synthesize("one two three").pcm + bytes(1500 * BYTES_PER_MS)
    for start in range(0, n, parallel):
        await asyncio.gather(*(one(url, i, history_kb, speech) for i in range(start, min(n, start + parallel))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--history-kb", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=10)
    ap.add_argument("--window", type=float, default=3.0, help="resume window the server is started with")
    ap.add_argument("--code", type=Path, default=ROOT, help="directory holding the voicecli package to run")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine", "basic", "--tts", "tone",
           "--no-rate-check"]
    if args.code == ROOT:
        cmd += ["--resume-window", str(args.window)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=args.code,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    try:
        asyncio.run(run(url, 4, args.history_kb, 2))   # warm-up: imports, pools
        time.sleep(args.window + 2)
        before = rss_mib(proc.pid)
        t0 = time.monotonic()
        asyncio.run(run(url, args.sessions, args.history_kb, args.parallel))
        took = time.monotonic() - t0
        after = rss_mib(proc.pid)
        time.sleep(args.window + 3)
        released = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"server_memory: {args.sessions} sessions x {args.history_kb} KB of history + 1 turn, half ended, "
          f"half dropped; resume window {args.window:g} s ({args.code}; {took:.0f} s)")
    print(f"  RSS before {before:.1f} MiB, after the sessions {after:.1f} MiB (+{after - before:.1f}), "
          f"after the resume window {released:.1f} MiB (+{released - before:.1f})")
    print(f"  reproduce: .venv/bin/python bench/server_memory.py --sessions {args.sessions} "
          f"--history-kb {args.history_kb} --window {args.window:g}"
          + (f" --code {args.code}" if args.code != ROOT else ""))


if __name__ == "__main__":
    main()
