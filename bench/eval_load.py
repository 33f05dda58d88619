"""How far `voicecli eval` scales on this machine (issue 11, load mode).

    .venv/bin/python bench/eval_load.py [--levels 1,10,25,50] [--turns 2]

For each level N it runs ``voicecli eval SUITE --concurrency N --repeat N --json`` (N concurrent
real-time sessions of one conversation: ``--turns`` spoken turns from examples/hello.wav and
thanks.wav, each expecting a reply) against one ``voicecli serve --port 0`` subprocess: the default
engine, with its real-time check on, so a session that cannot keep real-time pacing is reported as
``audio_rate_violation`` and fails its turn. Per level it prints: conversations passed / broken,
turns, any rate violations, latency (end of the user's speech -> first reply audio, the client's
clock) p50/p95/max, and the client's CPU seconds per session (user+sys of the eval process, from
wait4; also per added session, which leaves out the process's start-up) and the server's (/proc). The last lines name the level at which p95 latency is at least
twice the 1-session p95, and the command that reproduces the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("ws://"):
        proc.kill()
        raise SystemExit(f"voicecli serve did not print its URL: {url!r}")
    return proc, url


def proc_cpu_s(pid: int) -> float:
    """user+sys CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_suite(folder: Path, turns: int) -> Path:
    files = [EXAMPLES / "hello.wav", EXAMPLES / "thanks.wav"]
    body = ['name = "load"', "timeout_s = 30", "trailing_silence_ms = 800", "",
            "[[conversations]]", 'name = "spoken turns"']
    for i in range(turns):
        body += ["  [[conversations.turns]]", f'  audio = "{files[i % len(files)]}"', '  reply = "."']
    path = folder / "load.toml"
    path.write_text("\n".join(body) + "\n")
    return path


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, as the eval summary computes it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def run_level(suite: Path, url: str, server_pid: int, n: int) -> dict[str, Any]:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        server_before = proc_cpu_s(server_pid)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "eval", str(suite), "--url", url,
                                 "--api-key", "bench", "--concurrency", str(n), "--repeat", str(n), "--json"],
                                stdout=out, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        server_cpu = proc_cpu_s(server_pid) - server_before
        out.seek(0)
        err.seek(0)
        events = [json.loads(line) for line in out if line.strip().startswith("{")]
        stderr = err.read()
    turns = [e for e in events if e.get("type") == "voicecli.eval.turn"]
    convs = [e for e in events if e.get("type") == "voicecli.eval.conversation"]
    latencies = [float(t["latency_ms"]) for t in turns if t.get("latency_ms") is not None]
    errors = [str(c.get("error")) for c in convs if c.get("error")]
    return {"sessions": n, "exit": proc.returncode, "wall_s": round(wall, 1),
            "passed": sum(c.get("status") == "passed" for c in convs), "conversations": len(convs),
            "turns": len(turns), "broken": errors,
            "rate_violations": stderr.count("audio_rate_violation") + sum("audio_rate_violation" in e
                                                                           for e in errors),
            "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95), "max_ms": pct(latencies, 100),
            "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "client_cpu_s_per_session": round((usage.ru_utime + usage.ru_stime) / n, 3),
            "server_cpu_s_per_session": round(server_cpu / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,10,25,50", help="comma-separated session counts")
    ap.add_argument("--turns", type=int, default=2, help="spoken turns per conversation")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    server, url = start_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            suite = write_suite(Path(tmp), args.turns)
            for n in levels:
                row = run_level(suite, url, server.pid, n)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "broken"}), flush=True)
                for reason in sorted(set(row["broken"]))[:3]:
                    print(f"  broken: {reason}", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    base = rows[0]["p95_ms"] if rows and rows[0]["sessions"] == 1 else None
    doubled = next((r["sessions"] for r in rows if base and r["p95_ms"] and r["p95_ms"] >= 2 * base), None)
    if rows and rows[0]["sessions"] == 1 and len(rows) > 1:
        last = rows[-1]     # the process's start-up (imports, one synthesis) is paid once: leave it out
        marginal = (last["client_cpu_s"] - rows[0]["client_cpu_s"]) / (last["sessions"] - 1)
        print(f"client CPU per added session (level 1 -> {last['sessions']}): {marginal:.3f} s "
              f"for {args.turns} turns")
    print(f"machine: {os.cpu_count()} CPUs; 1-session p95 {base} ms; p95 doubles at: "
          f"{doubled if doubled is not None else f'not within {levels[-1]} sessions'}")
    print("command: .venv/bin/python bench/eval_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
