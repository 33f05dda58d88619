"""One session's work must not starve another's handshake (issue 12.3): a real `voicecli serve`
process; one client asks for a long greeting (synthesized while the test runs) and another client
connects meanwhile, timing connect -> `session.ready`. Prints the figures, asserts nothing.

Reproduce:  .venv/bin/python bench/server_starve.py [--chars 50000] [--tts espeak] [--probes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_client import flood  # noqa: E402


def start(tts: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine", "basic",
                             "--tts", tts, "--no-rate-check"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("ws://"), url
    return proc, url


async def probe_idle(url: str, n: int) -> list[float]:
    from tests.hostile_client import SESSION, _open, _until
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ws = await _open(url)
        import json
        await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
        await _until(ws, "session.ready")
        out.append(time.perf_counter() - t0)
        await ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chars", type=int, default=50_000)
    ap.add_argument("--tts", default="espeak")
    ap.add_argument("--probes", type=int, default=5)
    args = ap.parse_args()
    proc, url = start(args.tts)
    try:
        idle = asyncio.run(probe_idle(url, args.probes))
        t0 = time.perf_counter()
        report = asyncio.run(flood(url, args.chars, args.probes, timeout=60))
        took = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)
    lat = report.ready_latency_s
    print(f"server_starve: voicecli serve --engine basic --tts {args.tts}; one client's greeting of "
          f"{args.chars} chars while another connects ({args.probes} probes)")
    print(f"  connect -> session.ready, idle server: median {statistics.median(idle) * 1000:.0f} ms, "
          f"max {max(idle) * 1000:.0f} ms")
    print(f"  connect -> session.ready, during the greeting: median {statistics.median(lat) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms (busy client got ready: {report.busy_client_ready}; {took:.1f} s)")
    print(f"  reproduce: .venv/bin/python bench/server_starve.py --chars {args.chars} --tts {args.tts} "
          f"--probes {args.probes}")


if __name__ == "__main__":
    main()
