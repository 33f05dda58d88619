"""Measure `voicecli chat` on PulseAudio virtual devices against the local server (issue 3).

    .venv/bin/python bench/chat_bench.py [--seconds 60] [--prebuffer-ms 60] [--chunk-ms 20]

Set-up: a private PulseAudio daemon (tests/e2e/pulse.py: 24 kHz null sinks `vspk`, `vmic_feed`,
source `vmic`), `voicecli serve --engine scripted --scenario long --tts tone`, a timestamping
WebSocket proxy in this process between client and server (it stands for "the server": it forwards
every frame and notes when it passed, on this machine's monotonic clock), and `voicecli chat --no-ui
--json` as a subprocess using `vmic`/`vspk`. This process speaks into `vmic_feed` with a PortAudio
callback stream (each fed sample's time = callback time + PortAudio's DAC delay) and records
`vspk.monitor` with another (each recorded sample's time = callback time - PortAudio's ADC delay).

The conversation alternates: a spoken prompt (examples/hello.wav, thanks.wav); on every other
reply the next prompt starts ~1 s into the reply (a barge-in), otherwise the reply plays out.

Figures:
* capture-to-wire: the first loud sample of a prompt entering the mic -> the proxy receiving the
  `input.audio` chunk that carries it;
* wire-to-speaker: the proxy forwarding a reply's first `reply.audio` -> its first sample heard;
* barge-in flush: the proxy forwarding `input.speech.started` during a reply -> the reply's last
  sample heard;
* CPU % of one core (utime+stime over wall time) and peak RSS (VmHWM) of the chat process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.pulse import RATE, VirtualAudio

LOUD = 0.05          # a sample this loud marks speech onset in the prompts
HEARD = 0.02         # a sample this loud on the speaker is agent audio (tone TTS peaks at 0.316)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


class Feeder:
    """Plays prompts into the virtual mic; notes the time each prompt's onset sample was played."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: np.ndarray | None = None
        self.pos = 0
        self.onset_index = 0
        self.onsets: list[float] = []

    def say(self, samples: np.ndarray) -> None:
        with self.lock:
            self.pending, self.pos = samples, 0
            self.onset_index = int(np.argmax(np.abs(samples) > LOUD))

    def busy(self) -> bool:
        with self.lock:
            return self.pending is not None

    def callback(self, outdata: np.ndarray, frames: int, t: object, status: object) -> None:
        now = time.monotonic()
        outdata.fill(0)
        with self.lock:
            if self.pending is None:
                return
            chunk = self.pending[self.pos:self.pos + frames]
            outdata[:len(chunk), 0] = chunk
            if self.pos <= self.onset_index < self.pos + frames:
                dac = now + (t.outputBufferDacTime - t.currentTime)  # type: ignore[attr-defined]
                self.onsets.append(dac + (self.onset_index - self.pos) / RATE)
            self.pos += frames
            if self.pos >= len(self.pending):
                self.pending = None


class Recorder:
    """Records a source with a timestamp per block (time of the block's first sample)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[float, np.ndarray]] = []

    def callback(self, indata: np.ndarray, frames: int, t: object, status: object) -> None:
        now = time.monotonic()
        adc = now - (t.currentTime - t.inputBufferAdcTime)  # type: ignore[attr-defined]
        self.blocks.append((adc, indata[:, 0].copy()))

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        times = np.concatenate([a + np.arange(len(b)) / RATE for a, b in self.blocks])
        return times, np.concatenate([b for _, b in self.blocks])


class Proxy:
    """Forwards client <-> server frames and notes when the interesting ones passed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.audio_in: list[tuple[float, np.ndarray]] = []     # (arrival, samples)
        self.first_reply_audio: dict[str, float] = {}
        self.speech_started: list[float] = []
        self.reply_started: list[tuple[float, str]] = []
        self.reply_done: list[tuple[float, str, str]] = []

    async def handler(self, client: object) -> None:
        from websockets.asyncio.client import connect
        path = client.request.path  # type: ignore[attr-defined]
        url = self.upstream + path[len("/v1/ws"):]
        async with connect(url, additional_headers={"Authorization": "Bearer bench"}, compression=None,
                           proxy=None, max_size=None) as server:
            await asyncio.gather(self._pump(client, server, True), self._pump(server, client, False),
                                 return_exceptions=True)

    async def _pump(self, src: object, dst: object, upward: bool) -> None:
        async for frame in src:  # type: ignore[attr-defined]
            now = time.monotonic()
            await dst.send(frame)  # type: ignore[attr-defined]
            self.note(json.loads(frame), now, upward)
        await dst.close()  # type: ignore[attr-defined]

    def note(self, event: dict[str, object], now: float, upward: bool) -> str | None:
        """Note what one forwarded event tells the figures; returns its type."""
        kind = event.get("type")
        if upward and kind == "input.audio":
            pcm = np.frombuffer(base64.b64decode(str(event["audio"])), dtype="<i2") / 32768.0
            self.audio_in.append((now, pcm))
        elif kind == "reply.audio":
            self.first_reply_audio.setdefault(str(event["reply_id"]), now)
        elif kind == "input.speech.started":
            self.speech_started.append(now)
        elif kind == "reply.started":
            self.reply_started.append((now, str(event["reply_id"])))
        elif kind == "reply.done":
            self.reply_done.append((now, str(event["reply_id"]), str(event.get("status", ""))))
        return kind if isinstance(kind, str) else None


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_prompt(name: str) -> np.ndarray:
    data, rate = sf.read(ROOT / "examples" / name, dtype="float32")
    assert rate == RATE, "the example prompts are 24 kHz"
    return np.concatenate([np.zeros(RATE // 10, np.float32), data, np.zeros(RATE // 5, np.float32)])


async def converse(args: argparse.Namespace, proxy: Proxy, feeder: Feeder, chat: subprocess.Popen[str],
                   ready: asyncio.Event) -> tuple[float, float, float]:
    await asyncio.wait_for(ready.wait(), 20)
    prompts = [load_prompt("hello.wav"), load_prompt("thanks.wav")]
    cpu0, t0 = proc_cpu_s(chat.pid), time.monotonic()
    turn = 0
    while time.monotonic() - t0 < args.seconds:
        replies_before = len(proxy.first_reply_audio)
        feeder.say(prompts[turn % 2])
        while feeder.busy():
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 15
        while len(proxy.first_reply_audio) == replies_before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if turn % 2 == 0:
            await asyncio.sleep(1.0)          # barge in ~1 s into the reply (next prompt's onset)
        else:
            done_before = len(proxy.reply_done)
            while len(proxy.reply_done) == done_before and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.8)
        turn += 1
    cpu = (proc_cpu_s(chat.pid) - cpu0) / (time.monotonic() - t0) * 100
    return cpu, proc_hwm_mib(chat.pid), time.monotonic() - t0


def analyse(proxy: Proxy, feeder: Feeder, speaker: Recorder) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"capture_to_wire": [], "wire_to_speaker": [], "barge_in_flush": []}
    # capture-to-wire: each fed onset -> first chunk after it that carries a loud sample
    for onset in feeder.onsets:
        for arrival, pcm in proxy.audio_in:
            if arrival > onset and np.max(np.abs(pcm)) > LOUD:
                out["capture_to_wire"].append((arrival - onset) * 1000)
                break
    times, samples = speaker.timeline()
    loud = np.abs(samples) > HEARD
    for wire in proxy.first_reply_audio.values():
        idx = np.flatnonzero(loud & (times >= wire))
        if idx.size and times[idx[0]] - wire < 1.0:
            out["wire_to_speaker"].append((times[idx[0]] - wire) * 1000)
    # barge-in: speech.started while a reply was audible -> that reply's last audible sample
    for started in proxy.speech_started:
        before = np.flatnonzero(loud & (times < started))
        if not before.size or started - times[before[-1]] > 0.1:
            continue                          # nothing was playing: a plain turn start
        after = np.flatnonzero(loud & (times >= started) & (times < started + 1.0))
        last = times[after[-1]] if after.size else times[before[-1]]
        # the last sample before a >= 150 ms silence that starts after speech.started
        gaps = np.flatnonzero(np.diff(times[after]) > 0.15) if after.size else np.array([])
        if gaps.size:
            last = times[after[gaps[0]]]
        out["barge_in_flush"].append(max(0.0, (last - started) * 1000))
    return out


def start_rig() -> tuple[VirtualAudio, subprocess.Popen[str], str]:
    """The private PulseAudio (this process's PortAudio then plays into ``vmic_feed`` and records
    ``vspk.monitor``) and ``voicecli serve --engine scripted --scenario long --tts tone``: returns
    (the audio daemon, the server process, the server's URL)."""
    va = VirtualAudio().start()
    os.environ.update({k: v for k, v in va.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")})
    os.environ["PULSE_SINK"], os.environ["PULSE_SOURCE"] = "vmic_feed", "vspk.monitor"
    server = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine",
                               "scripted", "--scenario", "long", "--tts", "tone"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    return va, server, server.stdout.readline().strip()


async def main_async(args: argparse.Namespace) -> None:
    va, server, upstream = start_rig()
    import sounddevice as sd
    from websockets.asyncio.server import serve
    proxy, feeder, speaker = Proxy(upstream), Feeder(), Recorder()
    chat: subprocess.Popen[str] | None = None
    try:
        async with serve(proxy.handler, "127.0.0.1", 0, compression=None, max_size=None) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            with sd.OutputStream(samplerate=RATE, channels=1, dtype="float32", blocksize=240, latency="low",
                                 callback=feeder.callback), \
                    sd.InputStream(samplerate=RATE, channels=1, dtype="float32", blocksize=240, latency="low",
                                   callback=speaker.callback):
                chat = subprocess.Popen(
                    [sys.executable, "-m", "voicecli.cli", "chat", "--no-ui", "--json", "--api-key", "bench",
                     "--url", f"ws://127.0.0.1:{port}/v1/ws", "--prebuffer-ms", str(args.prebuffer_ms),
                     "--chunk-ms", str(args.chunk_ms)],
                    cwd=ROOT, env=dict(va.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                ready = asyncio.Event()
                lines: list[dict[str, object]] = []
                loop = asyncio.get_running_loop()

                def read() -> None:
                    assert chat is not None and chat.stdout is not None
                    for line in chat.stdout:
                        event = json.loads(line)
                        lines.append(event)
                        if event.get("type") == "session.ready":
                            loop.call_soon_threadsafe(ready.set)

                threading.Thread(target=read, daemon=True).start()
                cpu, rss, wall = await converse(args, proxy, feeder, chat, ready)
                chat.send_signal(signal.SIGINT)
                code = await asyncio.to_thread(chat.wait, 10)
        figures = analyse(proxy, feeder, speaker)
        report(args, figures, cpu, rss, wall, code, lines)
    finally:
        if chat is not None and chat.poll() is None:
            chat.kill()
        server.terminate()
        server.wait(10)
        va.stop()


def report(args: argparse.Namespace, figures: dict[str, list[float]], cpu: float, rss: float, wall: float,
           code: int, lines: list[dict[str, object]]) -> None:
    summary = next((e for e in lines if e.get("type") == "voicecli.metrics" and e.get("scope") == "session"), {})
    print(f"voicecli chat on PulseAudio virtual devices, {wall:.0f} s conversation, chunk {args.chunk_ms} ms, "
          f"prebuffer {args.prebuffer_ms} ms")
    for key, label in (("capture_to_wire", "capture-to-wire (speech onset into mic -> input.audio at server)"),
                       ("wire_to_speaker", "wire-to-speaker (first reply.audio -> heard)"),
                       ("barge_in_flush", "barge-in flush (input.speech.started -> reply silent)")):
        v = figures[key]
        print(f"  {label}: p50 {pct(v, 50):.1f} ms, p95 {pct(v, 95):.1f} ms, max {max(v, default=float('nan')):.1f}"
              f" ms (n={len(v)})")
    print(f"  CPU {cpu:.1f} % of one core; peak RSS {rss:.0f} MiB; exit on Ctrl-C: {code}")
    print(f"  client-side: {json.dumps({k: summary.get(k) for k in ('turns', 'total_ms', 'local_ms', 'barge_ins', 'underruns')})}")
    print("reproduce: .venv/bin/python bench/chat_bench.py " + " ".join(sys.argv[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--prebuffer-ms", type=int, default=60)
    parser.add_argument("--chunk-ms", type=int, default=20)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
