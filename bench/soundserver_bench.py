"""What asking the sound server costs (issue 10, Devices + Cost): `voicecli devices` wall time, and
the process tree's memory while a chat-like process watches the server's events.

    .venv/bin/python bench/soundserver_bench.py [--runs 7] [--asks 50] [--src DIR]

On a private PulseAudio daemon (tests/e2e/pulse.py). ``--src DIR`` runs another checkout's voicecli
package with this interpreter (e.g. ``git archive main | tar -x -C /tmp/old``: the code before a
change), for a before/after pair.

Figures:
* `voicecli devices --json` wall time, median of ``--runs`` (a fresh interpreter each);
* the watch: a process that has PortAudio's ``pulse`` PCM open (so libpulse is loaded, as in a chat)
  starts ``soundserver.Watcher``; printed is the tree's sum of VmRSS before and 1 s after, and the
  number of child processes the watch keeps running;
* where are my streams (the chat asks after every reply, when its speaker stream comes back): CPU
  of one ask, mean of ``--asks`` made 20 ms apart, on a fresh connection each (``streams_of``) and on
  a kept one (``Inspector``, both kinds and the output alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.pulse import VirtualAudio  # noqa: E402

WATCH = r"""
import json, os, sys, time
from pathlib import Path

def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p)
        for task in os.listdir(f"/proc/{p}/task"):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
    return out

def rss_mib(pids):
    total = 0.0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total

import sounddevice as sd
from voicecli.audio import devices, soundserver
ASKS = int(os.environ["ASKS"])
pulse = next(d for d in devices.list_devices(sd) if d.name == "pulse" and d.has("output"))
with sd.RawOutputStream(samplerate=24000, channels=1, dtype="int16", device=pulse.index):
    time.sleep(0.5)
    before = rss_mib(tree(os.getpid()))
    w = soundserver.Watcher(lambda: None)
    started = w.start()
    time.sleep(1.0)
    pids = tree(os.getpid())
    after = rss_mib(pids)
    w.close()
    asks = {}                                   # CPU of one ask, as the chat makes them (~20 ms apart)
    inspector = getattr(soundserver, "Inspector", None)
    ways = {"fresh": lambda: soundserver.streams_of(os.getpid())}
    if inspector is not None:
        kept = inspector(os.getpid())
        ways["kept"] = kept.streams
        ways["kept_output"] = lambda: kept.streams(("output",))
    for name, ask in ways.items():
        ask()
        cpu = 0.0
        for _ in range(ASKS):
            time.sleep(0.02)
            t0 = time.thread_time()
            found = ask()
            cpu += time.thread_time() - t0
        asks[name] = (cpu / ASKS * 1000, sorted(found))
print(json.dumps({"started": started, "before": before, "after": after, "children": len(pids) - 1,
                  "module": soundserver.__file__, "asks": asks}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--asks", type=int, default=50, help="asks of where the streams are, per way")
    parser.add_argument("--src", default=None, help="a checkout whose voicecli package to run")
    args = parser.parse_args()
    va = VirtualAudio().start()
    env = dict(va.env)
    if args.src:
        env["PYTHONPATH"] = os.path.abspath(args.src)
    try:
        times = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "voicecli.cli", "devices", "--json"], env=env,
                                 capture_output=True, text=True, timeout=60, cwd="/")
            times.append(time.monotonic() - t0)
            if out.returncode != 0:
                raise SystemExit(f"voicecli devices failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        server = json.loads(out.stdout)["sound_server"]
        watch = subprocess.run([sys.executable, "-c", WATCH], env=dict(env, ASKS=str(args.asks)), capture_output=True, text=True,
                               timeout=60, cwd="/")
        if watch.returncode != 0:
            raise SystemExit(f"the watch failed: {watch.stderr.strip()[-300:]}")
        w = json.loads(watch.stdout)
    finally:
        va.stop()
    print(f"voicecli: {Path(w['module']).parent.parent.parent}")
    print(f"voicecli devices --json: {statistics.median(times):.3f} s (median of {args.runs}; "
          f"min {min(times):.3f}), {len(server)} sound server devices")
    print(f"watch: started={w['started']}, tree RSS {w['before']:.1f} -> {w['after']:.1f} MiB "
          f"(+{w['after'] - w['before']:.1f}), {w['children']} child process(es) kept running")
    for name, (ms, kinds) in w["asks"].items():
        print(f"where are my streams, {name}: {ms:.2f} ms of CPU per ask (found {', '.join(kinds) or 'none'})")
    print("reproduce: .venv/bin/python bench/soundserver_bench.py" + (f" --src {args.src}" if args.src else ""))


if __name__ == "__main__":
    main()
