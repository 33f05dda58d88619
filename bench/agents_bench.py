"""What stored agents cost on the local server (issue 9): REST create/get latency over loopback with
concurrent writers, and the store read a ``session.update {agent_id}`` does on the event loop.

    .venv/bin/python bench/agents_bench.py [--writers 4] [--per-writer 50]

Starts a ServerThread (basic engines, tone TTS) on a temporary SQLite store, then ``--writers``
threads each POST ``--per-writer`` agents at once; prints the p50/p95/max of POST and GET, the
total write rate, and the cost of :meth:`LocalServer.find_agent` (one keyed row read, what a
session start pays) over the filled store.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicecli.server.app import ServerThread
from voicecli.server.options import ServerOptions

AGENT = {"name": "bench", "system_prompt": "p", "voice": {"voice_id": "alba"}, "greeting": "hi",
         "tools": [{"type": "function", "name": "t", "description": "", "parameters": {"type": "object"}}]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--per-writer", type=int, default=50)
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp()) / "agents.sqlite3"
    srv = ServerThread(ServerOptions(port=0, engine="basic", tts="tone", agents_store=str(store)))
    base = srv.start().replace("ws://", "http://").rsplit("/v1/", 1)[0] + "/v1/agents"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    posts: list[float] = []
    gets: list[float] = []
    ids: list[str] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(args.per_writer):
            req = urllib.request.Request(base, data=json.dumps(AGENT).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": "k"})
            t0 = time.perf_counter()
            with opener.open(req, timeout=30) as resp:
                made = json.loads(resp.read())
            dt = time.perf_counter() - t0
            with lock:
                posts.append(dt)
                ids.append(made["id"])

    started = time.perf_counter()
    threads = [threading.Thread(target=writer) for _ in range(args.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for agent_id in ids[:200]:
        t0 = time.perf_counter()
        with opener.open(urllib.request.Request(f"{base}/{agent_id}", headers={"Authorization": "k"}),
                         timeout=30) as resp:
            resp.read()
        gets.append(time.perf_counter() - t0)
    lookups = []
    for agent_id in ids[:200]:
        t0 = time.perf_counter()
        assert srv.server.find_agent(agent_id) is not None
        lookups.append(time.perf_counter() - t0)
    srv.stop()
    n = len(posts)
    ms = lambda v: f"{v * 1000:.2f} ms"   # noqa: E731
    print(f"agents stored: {n} by {args.writers} concurrent writers in {wall:.2f} s ({n / wall:.0f}/s)")
    print(f"POST /v1/agents: p50 {ms(statistics.median(posts))}, p95 {ms(pct(posts, 0.95))}, max {ms(max(posts))}")
    print(f"GET /v1/agents/ID: p50 {ms(statistics.median(gets))}, p95 {ms(pct(gets, 0.95))}")
    print(f"session bind lookup (find_agent, on the loop): p50 {ms(statistics.median(lookups))}, "
          f"p95 {ms(pct(lookups, 0.95))}, max {ms(max(lookups))}")
    print(f"reproduce: .venv/bin/python bench/agents_bench.py --writers {args.writers} "
          f"--per-writer {args.per_writer}")


if __name__ == "__main__":
    main()
