"""Cost of `voicecli chat` side by side with peers' clients, in one run (issue 10, Cost).

    .venv/bin/python bench/cost_bench.py [--rounds 3] [--seconds 30] [--echo off]
        [--peer "NAME=COMMAND"]...

Every client talks to the same `voicecli serve --engine scripted --scenario long --tts tone` through
the same timestamping proxy, on the same private PulseAudio daemon (tests/e2e/pulse.py: the client's
default source is the virtual mic `vmic`, its default sink the virtual speaker `vspk`), with the
same conversation as bench/chat_bench.py (prompts spoken into the mic; every other reply barged
into ~1 s in). Clients run one after the other, interleaved: round 1 A B C, round 2 C B A, ...
so a machine whose load changes during the run affects them alike.

A peer is any command: `{url}` in it is replaced by the proxy's WebSocket URL (also in the env as
VOICECLI_BENCH_URL), `{python}` by this interpreter; the API key is `bench` (VOICECLI_BENCH_KEY,
ASSEMBLYAI_API_KEY). The peer's code stays out of this repository. AssemblyAI's raw example, e.g.:

    git -C <clone of dan-ince-aai/assemblyai-s2s-examples> show HEAD:websocket/python/basic_client.py \\
        > /tmp/peers/basic_client.py
    # then, after "Connected.", add the one session.update today's protocol needs:
    #   await ws.send(json.dumps({"type": "session.update", "session": {
    #       "input": {"format": {"encoding": "audio/pcm", "sample_rate": 24000}},
    #       "output": {"format": {"encoding": "audio/pcm"}}}}))
    .venv/bin/python bench/cost_bench.py --peer "raw={python} /tmp/peers/basic_client.py --url {url}"

Figures per client (pooled over its rounds):
* CPU % of one core of the client's whole process tree (utime+stime of every process in it, sampled
  every 0.2 s, over wall time), for the whole conversation and for the spans while the user talks
  (a prompt is being spoken into the mic);
* peak RSS: the sum of VmHWM over the tree's processes (for a one-process client: its VmHWM);
* capture->wire p50/p95 and barge-in flush p50/p95 as in bench/chat_bench.py (a client that does
  not flush on `input.speech.started` shows the reply playing on, capped by the 1 s window);
* `voicecli --help` wall time (median of 5 runs), for the import-weight target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
import chat_bench as cb  # noqa: E402

from tests.e2e.pulse import VirtualAudio  # noqa: E402

KEY = "bench"


# -- process tree ---------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


class TreeMeter:
    """Samples a process tree: CPU seconds (last seen per pid, so exited children still count)
    and the sum of VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[int, float] = {}
        self.hwm: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        for p in tree(self.pid):
            try:
                self.cpu[p] = cb.proc_cpu_s(p)
                self.hwm[p] = cb.proc_hwm_mib(p)
            except (OSError, IndexError, ValueError):
                continue
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def start(self) -> TreeMeter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_rss_mib(self) -> float:
        return sum(v for v in self.hwm.values() if v == v)


# -- one client run -------------------------------------------------------------------------------

@dataclass
class Result:
    cpu_whole: list[float] = field(default_factory=list)
    cpu_talking: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=lambda: {"capture_to_wire": [], "barge_in_flush": [],
                                                                     "wire_to_speaker": []})
    failures: list[str] = field(default_factory=list)


class _Onsets:
    def __init__(self, onsets: list[float]) -> None:
        self.onsets = onsets


class _Blocks:
    def __init__(self, blocks: list[tuple[float, np.ndarray]]) -> None:
        self.blocks = blocks

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        return cb.Recorder.timeline(self)  # type: ignore[arg-type]


class Switch:
    """The proxy the clients connect to; each run gets a fresh :class:`chat_bench.Proxy`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.proxy = cb.Proxy(upstream)
        self.ready = asyncio.Event()

    def fresh(self) -> cb.Proxy:
        self.proxy = cb.Proxy(self.upstream)
        self.ready = asyncio.Event()
        return self.proxy

    async def handler(self, client: object) -> None:
        from websockets.asyncio.client import connect
        proxy, ready = self.proxy, self.ready
        async with connect(self.upstream, additional_headers={"Authorization": f"Bearer {KEY}"},
                           compression=None, proxy=None, max_size=None) as server:
            await asyncio.gather(_pump(proxy, ready, client, server, True),
                                 _pump(proxy, ready, server, client, False), return_exceptions=True)


async def _pump(proxy: cb.Proxy, ready: asyncio.Event, src: object, dst: object, upward: bool) -> None:
    """One direction; notes what bench/chat_bench.py's proxy notes. Closing either side (a client
    killed at the end of its run) closes the other."""
    try:
        async for frame in src:  # type: ignore[attr-defined]
            now = time.monotonic()
            await dst.send(frame)  # type: ignore[attr-defined]
            if proxy.note(json.loads(frame), now, upward) == "session.ready":
                ready.set()
    finally:
        await dst.close()  # type: ignore[attr-defined]


async def run_client(name: str, argv: list[str] | str, switch: Switch, feeder: cb.Feeder, speaker: cb.Recorder,
                     va: VirtualAudio, url: str, seconds: float, result: Result) -> None:
    proxy = switch.fresh()
    env = dict(va.env, VOICECLI_BENCH_URL=url, VOICECLI_BENCH_KEY=KEY, ASSEMBLYAI_API_KEY=KEY,
               ASSEMBLYAI_REALTIME_URL=url)
    proc = subprocess.Popen(argv, shell=isinstance(argv, str), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    meter = TreeMeter(proc.pid).start()
    onsets0, blocks0 = len(feeder.onsets), len(speaker.blocks)
    try:
        try:
            await asyncio.wait_for(switch.ready.wait(), 30)
        except TimeoutError:
            result.failures.append(f"{name}: no session.ready within 30 s")
            return
        await asyncio.sleep(0.5)
        prompts = [cb.load_prompt("hello.wav"), cb.load_prompt("thanks.wav")]
        cpu0, t0 = meter.sample(), time.monotonic()
        talking_cpu = talking_wall = 0.0
        turn = 0
        while time.monotonic() - t0 < seconds:
            replies_before = len(proxy.first_reply_audio)
            c, w = meter.sample(), time.monotonic()
            feeder.say(prompts[turn % 2])
            while feeder.busy():
                await asyncio.sleep(0.01)
            talking_cpu += meter.sample() - c
            talking_wall += time.monotonic() - w
            deadline = time.monotonic() + 15
            while len(proxy.first_reply_audio) == replies_before and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if turn % 2 == 0:
                await asyncio.sleep(1.0)
            else:
                done_before = len(proxy.reply_done)
                while len(proxy.reply_done) == done_before and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.8)
            turn += 1
        wall = time.monotonic() - t0
        result.cpu_whole.append((meter.sample() - cpu0) / wall * 100)
        result.cpu_talking.append(talking_cpu / max(talking_wall, 1e-9) * 100)
        result.rss.append(meter.peak_rss_mib)
    finally:
        meter.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if "Traceback" in err and name == "voicecli":
            result.failures.append(f"{name}: traceback on stderr: {err.strip().splitlines()[-1]}")
        await asyncio.sleep(1.0)     # let the last reply's audio drain before the next client
    figures = cb.analyse(proxy, _Onsets(feeder.onsets[onsets0:]),  # type: ignore[arg-type]
                         _Blocks(speaker.blocks[blocks0:]))  # type: ignore[arg-type]
    for key, values in figures.items():
        result.figures[key] += values


def help_time() -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "voicecli.cli", "--help"], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def parse_peer(text: str, n: int) -> tuple[str, str]:
    name, sep, cmd = text.partition("=")
    if not sep or " " in name or not name:
        return f"peer{n}", text
    return name, cmd


async def main_async(args: argparse.Namespace) -> None:
    va, server, upstream = cb.start_rig()
    import sounddevice as sd
    from websockets.asyncio.server import serve
    switch, feeder, speaker = Switch(upstream), cb.Feeder(), cb.Recorder()
    results: dict[str, Result] = {}
    try:
        async with serve(switch.handler, "127.0.0.1", 0, compression=None, max_size=None) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/v1/ws"
            clients: list[tuple[str, list[str] | str]] = [("voicecli", [
                sys.executable, "-m", "voicecli.cli", "chat", "--no-ui", "--json", "--api-key", KEY, "--url", url,
                "--echo", args.echo, "--chunk-ms", str(args.chunk_ms)])]
            for n, text in enumerate(args.peer, 1):
                name, cmd = parse_peer(text, n)
                clients.append((name, cmd.replace("{url}", shlex.quote(url)).replace("{python}",
                                                                                    shlex.quote(sys.executable))))
            results = {name: Result() for name, _ in clients}
            with sd.OutputStream(samplerate=cb.RATE, channels=1, dtype="float32", blocksize=240, latency="low",
                                 callback=feeder.callback), \
                    sd.InputStream(samplerate=cb.RATE, channels=1, dtype="float32", blocksize=240, latency="low",
                                   callback=speaker.callback):
                for r in range(args.rounds):
                    order = clients if r % 2 == 0 else clients[::-1]
                    for name, argv in order:
                        print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                        await run_client(name, argv, switch, feeder, speaker, va, url, args.seconds, results[name])
        report(args, results, help_time())
    finally:
        server.terminate()
        server.wait(10)
        va.stop()


def _p(values: list[float], q: float) -> str:
    return f"{cb.pct(values, q):.1f}" if values else "-"


def report(args: argparse.Namespace, results: dict[str, Result], help_s: float) -> None:
    print(f"cost of chat clients on PulseAudio virtual devices: {args.rounds} round(s) x {args.seconds:g} s each, "
          f"interleaved, one server, voicecli --echo {args.echo}")
    print(f"{'client':<12} {'CPU %':>7} {'talking':>8} {'peak RSS':>9} {'cap->wire p50/p95':>19} "
          f"{'flush p50/p95':>15}  runs")
    for name, r in results.items():
        cw, bf = r.figures["capture_to_wire"], r.figures["barge_in_flush"]
        cpu = f"{statistics.mean(r.cpu_whole):.1f}" if r.cpu_whole else "-"
        talk = f"{statistics.mean(r.cpu_talking):.1f}" if r.cpu_talking else "-"
        rss = f"{max(r.rss):.0f} MiB" if r.rss else "-"
        print(f"{name:<12} {cpu:>7} {talk:>8} {rss:>9} {_p(cw, 50) + '/' + _p(cw, 95) + ' ms':>19} "
              f"{_p(bf, 50) + '/' + _p(bf, 95) + ' ms':>15}  {len(r.cpu_whole)} "
              f"(CPU per run {', '.join(f'{c:.1f}' for c in r.cpu_whole)}; n={len(cw)}/{len(bf)})")
    for r in results.values():
        for f in r.failures:
            print(f"  FAILED: {f}")
    print(f"voicecli --help: {help_s:.3f} s (median of 5)")
    print("reproduce: .venv/bin/python bench/cost_bench.py " + shlex.join(sys.argv[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--echo", default="off", choices=("off", "aec", "half"))
    parser.add_argument("--chunk-ms", type=int, default=20)
    parser.add_argument("--peer", action="append", default=[],
                        help='"NAME=COMMAND" ({url}: the server URL, {python}: this interpreter)')
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
