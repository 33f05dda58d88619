"""Cost and timing of three ways to read the mic, side by side on the virtual devices (issue 10, Cost).

    .venv/bin/python bench/capture_bench.py [--rounds 2] [--seconds 20] [--modes callback,loop-poll,thread-poll]

Each mode runs in a child process on the private PulseAudio daemon of tests/e2e/pulse.py (mic:
the virtual `vmic`, 24 kHz mono int16), reads 20 ms chunks for `--seconds` and hands each to an
asyncio loop, which only counts it (no sending, no resampling: the capture path alone):

* callback: the chat's own `voicecli.audio.devices.CaptureStream` on the default input as the
  chat resolves it (`devices.backend`, `resolve_stream`): a PortAudio callback stream of 20 ms
  blocks at `latency="low"` that wakes the loop with `call_soon_threadsafe` (quiet batching off:
  every chunk is delivered);
* loop-poll: a blocking-mode stream (10 ms period, 0.5 s ring) read by the loop itself, from a
  timer due when the next chunk should be complete (+3 ms; again 3 ms later when it is not there
  yet): no PortAudio callback thread, no cross-thread wake-up;
* thread-poll: the same polling in a Python thread, which wakes the loop like the callback does.

Figures per mode (pooled over rounds, interleaved A B C / C B A): CPU % of one core of the child
(process_time over wall time, from the stream running until it closes), deliveries/s, polls/s, and each chunk's lateness: its delivery time
minus when its last frame arrived, measured against the best case seen in the run (the smallest
delivery-minus-frames offset), p50/p95 in ms: how long a finished chunk waits before the loop has it.

Measured here (2-core VM, 2026-12-02, four runs of 1-2 x 10-20 s; CPU moves ~1 pt between runs,
compare within one): callback 1.4-3.0 % CPU, lateness p50 ~9-11 / p95 ~18-20 ms; loop-poll 0.9-2.2 %
(0.3-0.8 pt below the callback in every run), p50 3.5-5 / p95 7-7.5 ms; thread-poll 1.9-3.0 % (at or
above the callback), p50 3.5-4.5 / p95 6.5-7 ms. So PortAudio's callback path itself holds a
finished chunk ~10 ms (its ALSA period and host buffering), and waking the loop from another thread
costs about what the callback thread does. Inside a whole chat, loop-poll was CPU-neutral (the loop
then did the reads the callback thread had done, ~69 polls/s) but took capture->wire from 22.5/36.5
to 14.8/25.0 ms p50/p95 (bench/cost_bench.py, same run). voicecli does not use it: when the sound
server dies, the pulse plugin's `snd_pcm_avail_update` (PortAudio's `Pa_GetStreamReadAvailable`)
never returns, and on the loop that freezes the whole chat (seen with `py-spy dump`); a callback
stream hangs only PortAudio's own thread, which the chat's watchdog outlives. `--kill-server` ends
the daemon half-way through each run and shows it: callback finishes (rc 1: its stream reports the
failure), loop-poll hangs (thread-poll too here, but only because the child joins its hung reader
thread; a chat would not have to).
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE, CHUNK = 24000, 480          # the polled modes: 20 ms at 24 kHz
MARGIN_S = RETRY_S = 0.003
MODES = ("callback", "loop-poll", "thread-poll")


class Span:
    """CPU and wall time of the steady state only (the stream open, before it closes): device
    resolution, PortAudio's start-up and imports are not the capture path's cost."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    async def run(self, seconds: float) -> None:
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        self.cpu, self.wall = time.process_time() - cpu0, time.monotonic() - wall0


@dataclass
class Run:
    cpu: float                 # % of one core
    deliveries: float          # chunks handed to the loop per second
    polls: float               # reads tried per second (0 for the callback)
    late: list[float]          # ms per chunk, against the run's best case


async def _callback(span: Span, seconds: float, got: Callable[[int], None]) -> None:
    from voicecli.audio import devices
    loop = asyncio.get_running_loop()
    sd = devices.backend()
    settings = devices.resolve_stream(None, "input", sd, "float32")
    chunk = settings.rate * 20 // 1000
    failed: list[str] = []
    stream = devices.CaptureStream(settings, loop,
                                   lambda blocks, _at, _adc: got(sum(len(b) for b in blocks) // 2),
                                   failed.append, chunk, chunk, sd)
    await span.run(seconds)
    stream.close()
    if failed:
        raise SystemExit(failed[0])


async def _polled(span: Span, mode: str, seconds: float, got: Callable[[int], None],
                  polls: list[int]) -> None:
    import sounddevice as sd
    loop = asyncio.get_running_loop()
    stream = sd.RawInputStream(samplerate=RATE, channels=1, dtype="int16", blocksize=RATE // 100,
                               latency=0.5)
    stream.start()
    stop = threading.Event()
    deliver = got if mode == "loop-poll" else (lambda n: loop.call_soon_threadsafe(got, n))

    def poll_once() -> float:
        """Read every whole chunk waiting; the delay until the next chunk should be complete."""
        polls[0] += 1
        waiting = int(stream.read_available)
        take = waiting // CHUNK * CHUNK
        if take:
            deliver(len(bytes(stream.read(take)[0])) // 2)
        due = (CHUNK - (waiting - take)) / RATE
        return max(RETRY_S, due + MARGIN_S) if take else max(RETRY_S, due)

    if mode == "loop-poll":
        def tick() -> None:
            if not stop.is_set():
                loop.call_later(poll_once(), tick)
        loop.call_soon(tick)
        await span.run(seconds)
        stop.set()
    else:
        def reader() -> None:
            while not stop.is_set():
                time.sleep(poll_once())
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        await span.run(seconds)
        stop.set()
        thread.join()
    stream.close()


def child(mode: str, seconds: float) -> Run:
    arrivals: list[tuple[float, int]] = []
    polls = [0]

    def got(frames: int) -> None:
        arrivals.append((time.monotonic(), frames))

    span = Span()
    asyncio.run(_callback(span, seconds, got) if mode == "callback" else _polled(span, mode, seconds, got, polls))
    cpu, wall = span.cpu, span.wall
    offsets, frames = [], 0
    for at, n in arrivals:
        frames += n
        offsets.append(at - frames / RATE)
    offsets = offsets[len(offsets) // 10:]          # the stream's start-up is not the steady state
    best = min(offsets) if offsets else 0.0
    return Run(cpu / wall * 100, len(arrivals) / wall, polls[0] / wall, [(o - best) * 1000 for o in offsets])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _start(mode: str, seconds: float, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--child", mode, "--seconds", str(seconds)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str] | None:
    """The child's stdout and stderr, or None (killed) when it has not ended within ``timeout``."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None


def kill_server_runs(modes: list[str], seconds: float) -> None:
    """Each mode on a fresh daemon that is ended half-way through: which ones still finish."""
    from tests.e2e.pulse import VirtualAudio
    for mode in modes:
        va = VirtualAudio().start()
        try:
            proc = _start(mode, seconds, va.env)
            time.sleep(seconds / 2)
            va.pactl("exit", check=False)
            done = _finish(proc, seconds + 15)
        finally:
            va.stop()
        print(f"  {mode}: " + (f"finished (rc {proc.returncode}) after the sound server ended" if done else
                               f"HUNG (did not finish {seconds + 15:g} s after starting)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--kill-server", action="store_true",
                    help="end the sound server half-way through and report which modes hang")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asdict(child(args.child, args.seconds))))
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
    if args.kill_server:
        kill_server_runs(modes, args.seconds)
        return 0
    results: dict[str, list[Run]] = {m: [] for m in modes}
    va = VirtualAudio().start()
    try:
        for r in range(args.rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                print(f"round {r + 1}/{args.rounds}: {mode}", file=sys.stderr, flush=True)
                proc = _start(mode, args.seconds, va.env)
                done = _finish(proc, args.seconds + 15)
                if done is None or proc.returncode != 0:
                    why = "hung" if done is None else (done[1].strip().splitlines() or ["?"])[-1]
                    print(f"  {mode}: failed: {why}")
                    continue
                results[mode].append(Run(**json.loads(done[0])))
    finally:
        va.stop()
    print(f"mic capture on PulseAudio virtual devices: {args.rounds} round(s) x {args.seconds:g} s, 20 ms chunks")
    print(f"{'mode':<12} {'CPU %':>6} {'deliv/s':>8} {'polls/s':>8} {'lateness p50/p95':>18}  runs")
    for mode, runs in results.items():
        if not runs:
            print(f"{mode:<12} {'-':>6}")
            continue
        late = [x for run in runs for x in run.late]
        print(f"{mode:<12} {statistics.mean(r.cpu for r in runs):6.2f} "
              f"{statistics.mean(r.deliveries for r in runs):8.1f} {statistics.mean(r.polls for r in runs):8.1f} "
              f"{pct(late, 0.5):8.1f}/{pct(late, 0.95):.1f} ms  {len(runs)} (CPU per run "
              f"{', '.join(f'{r.cpu:.2f}' for r in runs)})")
    print("reproduce: .venv/bin/python bench/capture_bench.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
