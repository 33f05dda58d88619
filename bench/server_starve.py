"""One session's work must not starve another's handshake (issue 12.3): a real `voicecli serve`
process; one client asks for a long greeting (synthesized while the test runs) and another client
connects meanwhile, timing connect -> `session.ready`. Prints the figures, asserts nothing.

Reproduce:  .venv/bin/python bench/server_starve.py [--chars 1000] [--tts espeak] [--probes 5]
(`--code DIR` runs an older checkout; the 50 KB greeting of issue 12.3 is refused since the limits of
voicecli/protocol/constants.py, so on today's code the longest greeting is MAX_GREETING_CHARS.)
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


def start(tts: str, engine: str = "basic", code: Path = ROOT) -> tuple[subprocess.Popen[str], str]:
    """``voicecli serve`` of the package in ``code`` (``--code DIR``: e.g. an old checkout)."""
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine", engine,
                             "--tts", tts, "--no-rate-check"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=code,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("ws://"), url
    return proc, url


async def probe_idle(url: str, n: int) -> list[float]:
    from tests.hostile_client import SESSION, _open, _until
    out = []
    for i in range(n + 1):   # the first one waits for the engines to load (warm-up, not counted)
        t0 = time.perf_counter()
        ws = await _open(url)
        import json
        await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
        await _until(ws, "session.ready", 120)
        if i:
            out.append(time.perf_counter() - t0)
        await ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chars", type=int, default=1_000)
    ap.add_argument("--tts", default="espeak")
    ap.add_argument("--probes", type=int, default=5)
    ap.add_argument("--engine", default="basic")
    ap.add_argument("--text", default="words", choices=("words", "sentences"),
                    help="words: one clause without punctuation; sentences: many short clauses")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between probes")
    ap.add_argument("--code", type=Path, default=ROOT, help="directory holding the voicecli package to run")
    args = ap.parse_args()
    proc, url = start(args.tts, args.engine, args.code)
    try:
        idle = asyncio.run(probe_idle(url, args.probes))
        t0 = time.perf_counter()
        report = asyncio.run(flood(url, args.chars, args.probes, timeout=60, every_s=args.every, text=args.text))
        took = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)
    lat = report.ready_latency_s
    print(f"server_starve: voicecli serve --engine {args.engine} --tts {args.tts} ({args.code}); one client's greeting of "
          f"{args.chars} chars ({args.text}) while another connects ({args.probes} probes)")
    print(f"  connect -> session.ready, idle server: median {statistics.median(idle) * 1000:.0f} ms, "
          f"max {max(idle) * 1000:.0f} ms")
    print("  during the greeting, each probe (ms): " + " ".join(f"{x * 1000:.0f}" for x in lat))
    audio = report.first_audio_s
    print("  during the greeting, connect -> first audio of the probe's own short greeting (ms): "
          + " ".join(f"{x * 1000:.0f}" for x in audio)
          + f"; median {statistics.median(audio) * 1000:.0f} ms, max {max(audio) * 1000:.0f} ms")
    print(f"  connect -> session.ready, during the greeting: median {statistics.median(lat) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms (busy client got ready: {report.busy_client_ready}; {took:.1f} s)")
    print(f"  reproduce: .venv/bin/python bench/server_starve.py --chars {args.chars} --tts {args.tts} "
          f"--text {args.text} --engine {args.engine} --probes {args.probes} --every {args.every}")
    if not report.busy_client_ready:     # the figures above then measured an idle server
        print(f"  the busy client's {args.chars}-char greeting was refused (over the server's limit?): "
              "nothing was measured", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
