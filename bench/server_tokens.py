"""Token minting as tokens pile up (issue 12.14): mint N temporary tokens over one keep-alive HTTP
connection against a real `voicecli serve` process; prints the p50/p95 of the first and the last
1,000 mints (it runs on the loop shared with audio, so it must stay flat). Asserts nothing.

Reproduce:  .venv/bin/python bench/server_tokens.py [--n 20000] [--code DIR_OF_AN_OLD_CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_client import token_spam  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--code", type=Path, default=ROOT, help="directory holding the voicecli package to run")
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine", "basic",
                             "--tts", "tone", "--api-key", "bench-key"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=args.code,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    try:
        times = token_spam(url, "bench-key", args.n)
    finally:
        proc.terminate()
        proc.wait(10)
    k = min(1000, len(times) // 2)

    def fig(xs: list[float]) -> str:
        xs = sorted(xs)
        return f"p50 {statistics.median(xs) * 1000:.2f} ms, p95 {xs[int(len(xs) * 0.95)] * 1000:.2f} ms"

    print(f"server_tokens: {args.n} mints of GET /v1/token against voicecli serve ({args.code})")
    print(f"  first {k}: {fig(times[:k])}")
    print(f"  last {k}:  {fig(times[-k:])}")
    print(f"  total {sum(times):.1f} s")
    print(f"  reproduce: .venv/bin/python bench/server_tokens.py --n {args.n}" +
          (f" --code {args.code}" if args.code != ROOT else ""))


if __name__ == "__main__":
    main()
