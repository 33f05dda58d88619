"""The floor under any client's capture cost: a bare PortAudio input stream whose Python callback
only copies the block, per block size and latency (issue 10, Cost).

    .venv/bin/python bench/capture_floor_bench.py [--seconds 8] [--runs 2] [CONFIG ...]

CONFIG is ``FRAMES,LATENCY`` (LATENCY: low, high or seconds; a malformed one exits 2 before any run;
default: ``480,low 480,high 1024,high``): 480 frames is the chat's
20 ms block at 24 kHz, ``1024,high`` what AssemblyAI's raw example opens (sounddevice's default
latency). Each run is a child process on the private PulseAudio daemon of tests/e2e/pulse.py
(mic: the virtual ``vmic``, fed silence at the bench rig's 10 ms cadence), 1 s to settle, then
``--seconds`` measured.

Figures per run: callbacks/s, the stream's reported latency, the mean/max callback interval, the
callback thread's CPU (% of a core) with its voluntary/involuntary context switches per second,
the same for the pulse plugin's ``threaded-ml`` thread, and the callback thread's CPU per callback.

Measured here (2-core VM, 2026-12-02): 480 frames ~0.9-1.0 % (~190 us a callback, ~1.2 voluntary
switches each, whatever the latency); 1024 frames ~0.6 % (~255 us a callback); the threaded-ml
thread ~1.0-1.2 % in both (it wakes ~200-240 times a second at the sound server's own cadence).
So a 20 ms client pays ~0.35 % of a core more than a 43 ms one before its callback does anything:
the per-period cost of PortAudio + ALSA's pulse plugin + the GIL, half of voicecli's remaining CPU
gap to the raw example, which buys that with a 43 ms block (capture->wire p50 ~55 ms vs ~23).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.pulse import VirtualAudio, pulse_missing  # noqa: E402

CHILD = r'''
import json, os, statistics, sys, threading, time
import sounddevice as sd
frames, latency, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
lat = float(latency) if latency not in ("low", "high") else latency
tids, stamps = set(), []

def callback(indata, n, time_info, status):
    tids.add(threading.get_native_id())
    stamps.append(time.monotonic())
    bytes(indata)

def snap():
    out = {}
    for t in os.listdir("/proc/self/task"):
        run = int(open(f"/proc/self/task/{t}/schedstat").read().split()[0])
        st = open(f"/proc/self/task/{t}/status").read()
        vol = int(st.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        invol = int(st.split("nonvoluntary_ctxt_switches:")[1].split()[0])
        out[int(t)] = (run, vol, invol, open(f"/proc/self/task/{t}/comm").read().strip())
    return out

with sd.RawInputStream(samplerate=24000, channels=1, dtype="int16", blocksize=frames, latency=lat,
                       callback=callback) as stream:
    time.sleep(1.0)
    a, n0, t0 = snap(), len(stamps), time.monotonic()
    time.sleep(secs)
    b, n1, dt = snap(), len(stamps), time.monotonic() - t0
    reported = stream.latency
threads = {"callback": [0.0, 0.0, 0.0], "threaded-ml": [0.0, 0.0, 0.0]}
for t, (run, vol, invol, comm) in b.items():
    row = threads.get("callback" if t in tids else comm)
    if row is not None:
        r0, v0, i0, _ = a.get(t, (0, 0, 0, comm))
        for k, x in enumerate(((run - r0) / 1e9 * 100, vol - v0, invol - i0)):
            row[k] += x / dt
gaps = [y - x for x, y in zip(stamps[n0:n1], stamps[n0 + 1:n1])]
print(json.dumps({"cb_s": (n1 - n0) / dt, "latency": reported, "threads": threads,
                  "gap_ms": [statistics.mean(gaps) * 1e3, max(gaps) * 1e3]}))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", default=["480,low", "480,high", "1024,high"])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    bad = [c for c in args.configs if not _valid(c)]
    if bad:
        print(f"capture_floor_bench: bad config(s) {', '.join(bad)} (FRAMES,LATENCY: e.g. 480,low 1024,high "
              f"720,0.05)", file=sys.stderr)
        return 2
    missing = pulse_missing()
    if missing:
        print(f"capture_floor_bench: {missing}", file=sys.stderr)
        return 2
    va = VirtualAudio().start()
    os.environ.update({k: v for k, v in va.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")})
    os.environ["PULSE_SINK"] = "vmic_feed"
    import sounddevice as sd

    from voicecli.audio.devices import reinitialize
    reinitialize(sd)   # pulse_missing imported sounddevice before this daemon ran: enumerate afresh
    feed = sd.OutputStream(samplerate=24000, channels=1, dtype="float32", blocksize=240, latency="low",
                           callback=lambda out, *_: out.fill(0))
    feed.start()
    try:
        print(f"{'config':<12} {'cb/s':>5} {'latency':>8} {'gap mean/max':>13}  callback thread"
              f"                      threaded-ml")
        for _ in range(args.runs):
            for cfg in args.configs:
                frames, _, latency = cfg.partition(",")
                try:
                    out = subprocess.run([sys.executable, "-c", CHILD, frames, latency, str(args.seconds)],
                                         env=dict(va.env), capture_output=True, text=True, timeout=args.seconds + 30)
                except subprocess.TimeoutExpired:
                    print(f"{cfg:<12} FAILED: hung (no result {args.seconds + 30:g} s in)")
                    continue
                if out.returncode:
                    print(f"{cfg:<12} FAILED: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout)
                cb, ml = r["threads"]["callback"], r["threads"]["threaded-ml"]
                per = cb[0] / 100 / max(r["cb_s"], 1e-9) * 1e6
                print(f"{cfg:<12} {r['cb_s']:5.1f} {r['latency'] * 1e3:6.1f}ms "
                      f"{r['gap_ms'][0]:6.1f}/{r['gap_ms'][1]:4.1f}ms  "
                      f"{cb[0]:4.2f}% {cb[1]:4.0f}v/s {cb[2]:3.0f}i/s {per:4.0f} us/cb   "
                      f"{ml[0]:4.2f}% {ml[1]:4.0f}v/s {ml[2]:3.0f}i/s", flush=True)
    finally:
        feed.stop()
        feed.close()
        va.stop()
    print("reproduce: .venv/bin/python bench/capture_floor_bench.py " + " ".join(sys.argv[1:]))
    return 0


def _valid(config: str) -> bool:
    frames, sep, latency = config.partition(",")
    if not sep or not frames.isdigit():
        return False
    try:
        return latency in ("low", "high") or float(latency) > 0
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
