"""Cost and timing of three ways to read the mic, side by side on the virtual devices (issue 10, Cost).

    .venv/bin/python bench/capture_bench.py [--rounds 2] [--seconds 20] [--modes callback,loop-poll,thread-poll]

Each mode runs in a child process on the private PulseAudio daemon of tests/e2e/pulse.py (mic:
the virtual `vmic`, 24 kHz mono int16), reads 20 ms chunks for `--seconds` and hands each to an
asyncio loop, which only counts it (no sending, no resampling: the capture path alone):

* callback: what voicecli's chat does (`voicecli.audio.devices.CaptureStream`): a PortAudio
  callback stream with 20 ms blocks and `latency="low"`; the callback copies the block and wakes
  the loop with `call_soon_threadsafe`;
* loop-poll: a blocking-mode stream (10 ms period, 0.5 s ring) read by the loop itself, from a
  timer due when the next chunk should be complete (+3 ms; again 3 ms later when it is not there
  yet): no PortAudio callback thread, no cross-thread wake-up;
* thread-poll: the same polling in a Python thread, which wakes the loop like the callback does.

Figures per mode (pooled over rounds, interleaved A B C / C B A): CPU % of one core of the child
(process_time over wall time), deliveries/s, polls/s, and each chunk's lateness: its delivery time
minus when its last frame arrived, measured against the best case seen in the run (the smallest
delivery-minus-frames offset), p50/p95 in ms: how long a finished chunk waits before the loop has it.

Measured here (2-core VM, 2026-12-02, two runs of 2 x 15-20 s): callback 1.4-2.2 % CPU, lateness
p50 ~10 / p95 ~19 ms; loop-poll 0.9-1.3 %, p50 3.5-5 / p95 7-7.5 ms; thread-poll 1.9-2.3 %, p50
3.5-4.5 / p95 6.5-7 ms. So PortAudio's callback path itself holds a finished chunk ~10 ms (its
ALSA period and host buffering), and waking the loop from another thread costs about what the
callback thread does. Inside a whole chat, loop-poll was CPU-neutral (the loop then did the reads
the callback thread had done, ~69 polls/s) but took capture->wire from 22.5/36.5 to 14.8/25.0 ms
p50/p95 (bench/cost_bench.py, same run). voicecli does not use it: when the sound server dies,
the pulse plugin's `snd_pcm_avail_update` (PortAudio's `Pa_GetStreamReadAvailable`) never
returns, and on the loop that freezes the whole chat (seen with `py-spy dump`); a callback
stream hangs only PortAudio's own thread, which the chat's watchdog outlives. `--kill-server`
ends the daemon half-way through each run and shows it: callback finishes, loop-poll hangs
(thread-poll too here, but only because the child joins its hung reader thread; a chat would not
have to).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE, CHUNK = 24000, 480          # 20 ms at 24 kHz
MARGIN_S = RETRY_S = 0.003
MODES = ("callback", "loop-poll", "thread-poll")


def child(mode: str, seconds: float) -> dict[str, object]:
    import sounddevice as sd
    arrivals: list[tuple[float, int]] = []
    polls = [0]

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def got(frames: int) -> None:
            arrivals.append((time.monotonic(), frames))

        if mode == "callback":
            def callback(indata, frames, time_info, status) -> None:  # noqa: ANN001
                loop.call_soon_threadsafe(got, len(bytes(indata)) // 2)
            stream = sd.RawInputStream(samplerate=RATE, channels=1, dtype="int16", blocksize=CHUNK,
                                       latency="low", callback=callback)
            stream.start()
            await asyncio.sleep(seconds)
            stream.close()
            return
        stream = sd.RawInputStream(samplerate=RATE, channels=1, dtype="int16", blocksize=RATE // 100,
                                   latency=0.5)
        stream.start()
        stop = threading.Event()

        def poll_once() -> float:
            polls[0] += 1
            waiting = int(stream.read_available)
            take = waiting // CHUNK * CHUNK
            if take:
                frames = len(bytes(stream.read(take)[0])) // 2
                if mode == "loop-poll":
                    got(frames)
                else:
                    loop.call_soon_threadsafe(got, frames)
            due = (CHUNK - (waiting - take)) / RATE
            return max(RETRY_S, due + MARGIN_S) if take else max(RETRY_S, due)

        if mode == "loop-poll":
            def tick() -> None:
                if not stop.is_set():
                    loop.call_later(poll_once(), tick)
            loop.call_soon(tick)
            await asyncio.sleep(seconds)
            stop.set()
        else:
            def reader() -> None:
                while not stop.is_set():
                    time.sleep(poll_once())
            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            await asyncio.sleep(seconds)
            stop.set()
            thread.join()
        stream.close()

    cpu0, wall0 = time.process_time(), time.monotonic()
    asyncio.run(main())
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    offsets, frames = [], 0
    for at, n in arrivals:
        frames += n
        offsets.append(at - frames / RATE)
    offsets = offsets[len(offsets) // 10:]          # the stream's start-up is not the steady state
    best = min(offsets) if offsets else 0.0
    return {"cpu": cpu / wall * 100, "deliveries": len(arrivals) / wall, "polls": polls[0] / wall,
            "late": [(o - best) * 1000 for o in offsets]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--kill-server", action="store_true",
                    help="end the sound server half-way through and report which modes hang")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return 0
    from tests.e2e.pulse import VirtualAudio, pulse_missing
    missing = pulse_missing()
    if missing:
        print(f"capture_bench: {missing}", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        print(f"capture_bench: unknown mode(s) {', '.join(bad)} (known: {', '.join(MODES)})", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
    va = VirtualAudio().start()
    try:
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else modes[::-1]
            for mode in order:
                print(f"round {r + 1}/{args.rounds}: {mode}", file=sys.stderr, flush=True)
                cmd = [sys.executable, __file__, "--child", mode, "--seconds", str(args.seconds)]
                proc = subprocess.Popen(cmd, env=va.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                if args.kill_server:
                    time.sleep(args.seconds / 2)
                    va.pactl("exit", check=False)
                try:
                    out, err = proc.communicate(timeout=args.seconds + 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    print(f"  {mode}: HUNG (did not finish {args.seconds + 15:g} s after starting)")
                    if args.kill_server:
                        va.stop()
                        va = VirtualAudio().start()
                    continue
                if args.kill_server:
                    print(f"  {mode}: finished (rc {proc.returncode}) after the sound server ended")
                    va.stop()
                    va = VirtualAudio().start()
                    continue
                if proc.returncode != 0:
                    print(f"  {mode}: failed: {err.strip().splitlines()[-1:]}")
                    continue
                results[mode].append(json.loads(out))
    finally:
        va.stop()
    if args.kill_server:
        return 0
    print(f"mic capture on PulseAudio virtual devices: {args.rounds} round(s) x {args.seconds:g} s, 20 ms chunks")
    print(f"{'mode':<12} {'CPU %':>6} {'deliv/s':>8} {'polls/s':>8} {'lateness p50/p95':>18}  runs")
    for mode, runs in results.items():
        if not runs:
            print(f"{mode:<12} {'-':>6}")
            continue
        late = [x for run in runs for x in run["late"]]  # type: ignore[attr-defined]
        cpus = [float(run["cpu"]) for run in runs]  # type: ignore[arg-type]
        print(f"{mode:<12} {statistics.mean(cpus):6.2f} {statistics.mean(float(r['deliveries']) for r in runs):8.1f} "  # type: ignore[arg-type]
              f"{statistics.mean(float(r['polls']) for r in runs):8.1f} "  # type: ignore[arg-type]
              f"{pct(late, 0.5):8.1f}/{pct(late, 0.95):.1f} ms  {len(runs)} (CPU per run "
              f"{', '.join(f'{c:.2f}' for c in cpus)})")
    print("reproduce: .venv/bin/python bench/capture_bench.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
