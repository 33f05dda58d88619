"""End of user speech -> first reply audio at the socket, against a real `voicecli serve` process with
the offline engines (silero VAD, whisper tiny.en, piper) and a brain that answers at once (the
no-LLM echo brain). Prints figures, asserts nothing (design.md 16).

Each turn: piper-rendered prompt (tests/speech/speechgen.py) streamed at real time in 20 ms chunks,
then silence. t0 = when the chunk holding the last speech sample was sent; t1 = the first
`reply.audio` received. Also: the server's CPU while the user talks (VAD + partials; /proc utime +
stime over the speech part), its CPU per turn, and its peak RSS (VmHWM) with the engines loaded.

Reproduce:  .venv/bin/python bench/turn_bench.py [--turns 10] [--min-silence 300]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect

from tests.speech.speechgen import PROMPTS, piper, silence

CHUNK_MS = 20
BYTES_PER_MS = 48
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_serve() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stdout is not None and proc.stderr is not None
    url = proc.stdout.readline().strip()
    while "engines ready" not in (line := proc.stderr.readline()):
        print("serve:", line.strip())
        if not line:
            raise SystemExit("serve exited")
    print("serve:", line.strip())
    return proc, url


async def one_turn(url: str, pcm: bytes, td: dict[str, int], pid: int) -> tuple[float, float, float, float]:
    """(latency s, server CPU s while talking, talk s, server CPU s for the whole turn)."""
    async with connect(url, additional_headers={"Authorization": "Bearer bench"}) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"input": {"turn_detection": td}}}))
        while json.loads(await ws.recv())["type"] != "session.ready":
            pass
        step = CHUNK_MS * BYTES_PER_MS
        audio = pcm + silence(2500)
        first_audio: list[float] = []

        async def reader() -> None:
            async for msg in ws:
                ev = json.loads(msg)
                if ev["type"] == "reply.audio" and not first_audio:
                    first_audio.append(time.perf_counter())
                if ev["type"] == "reply.done":
                    return

        task = asyncio.create_task(reader())
        c0 = cpu_s(pid)
        start = time.perf_counter()
        t_end = talk_cpu = 0.0
        for i in range(0, len(audio), step):
            await ws.send(json.dumps({"type": "input.audio",
                                      "audio": base64.b64encode(audio[i:i + step]).decode()}))
            if i < len(pcm) <= i + step:
                t_end = time.perf_counter()
                talk_cpu = cpu_s(pid) - c0
            await asyncio.sleep(max(0.0, start + (i + step) / step * CHUNK_MS / 1000 - time.perf_counter()))
            if first_audio:
                break
        await asyncio.wait_for(task, 30)
        return first_audio[0] - t_end, talk_cpu, t_end - start, cpu_s(pid) - c0


async def main(turns: int, min_silence: int) -> None:
    synth = piper()
    prompts = [synth(p) for p in PROMPTS]
    proc, url = start_serve()
    td = {"min_silence": min_silence, "max_silence": max(min_silence + 1, 3000)}
    lat, talk_cpu, talk_s, turn_cpu = [], [], [], []
    try:
        for i in range(turns):
            pcm = prompts[i % len(prompts)]
            pcm = pcm[: len(pcm) - len(pcm) % 2]
            a, b, c, d = await one_turn(url, pcm, td, proc.pid)
            lat.append(a)
            talk_cpu.append(b)
            talk_s.append(c)
            turn_cpu.append(d)
            print(f"turn {i + 1}: end of speech -> first reply audio {a * 1000:.0f} ms; "
                  f"server CPU while talking {100 * b / c:.0f} % of a core")
        q = statistics.quantiles(lat, n=20) if len(lat) > 1 else [lat[0]] * 19
        print(f"\nmin_silence {min_silence} ms, {turns} turns (piper prompts, echo brain):")
        print(f"  end of speech -> first reply.audio: p50 {statistics.median(lat) * 1000:.0f} ms, "
              f"p95 {q[18] * 1000:.0f} ms (target p50 <= 500 ms)")
        print(f"  server CPU while the user talks (VAD + partials): "
              f"{100 * sum(talk_cpu) / sum(talk_s):.0f} % of one core")
        print(f"  server CPU per turn (talk + final + TTS): {statistics.median(turn_cpu):.2f} s")
        print(f"  serve peak RSS (VmHWM): {vm_hwm_mib(proc.pid):.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--min-silence", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(main(args.turns, args.min_silence))
