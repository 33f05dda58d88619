"""Device hot-swap in `voicecli chat` (issue 10): how long a lost device takes to come back.

On a private PulseAudio with virtual devices (tests/e2e/pulse.py), a chat against `voicecli serve`
(scripted engine, tone TTS) has its speaker stream dropped by the sound server (`pacmd
kill-sink-input`, what PortAudio sees when the device under a stream goes away) ROUNDS times, once a
second. Prints, per round and as p50/max: the chat's own reopen time (`voicecli.device.reopened`
took_ms: close, re-enumerate PortAudio, resolve, open both streams) and the time from the kill to that
event arriving on stdout (detection + reopen + the loop), then the session metrics' device_reopens.

    .venv/bin/python bench/hotswap_bench.py --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server, stop_server  # noqa: E402
from tests.e2e.conftest import ChatProc  # noqa: E402
from tests.e2e.pulse import VirtualAudio  # noqa: E402
from tests.e2e.test_chat_hotswap import _streams_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    va = VirtualAudio().start()
    va.pactl("load-module", "module-cli-protocol-unix")
    served = start_server("--engine", "scripted", "--scenario", "echo", "--tts", "tone", "--no-rate-check",
                          "--api-key", "k")
    chat = ChatProc(va.env, "--url", served.url, "--api-key", "k", "--no-ui", "--json", "--echo", "off")
    took, seen = [], []
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        time.sleep(1.0)
        for i in range(args.rounds):
            [stream] = _streams_of(va, chat.proc.pid)
            t0 = time.monotonic()
            subprocess.run(["pacmd", "kill-sink-input", stream], env=va.env, check=True, capture_output=True)
            ev = chat.wait_for(lambda e, n=i: e["type"] == "voicecli.device.reopened"
                               and len(chat.of_type("voicecli.device.reopened")) > n, timeout=10, what="reopen")
            took.append(ev["took_ms"])
            seen.append((ev["_received"] - t0) * 1000)
            print(f"round {i + 1}: reopen {ev['took_ms']} ms, kill -> event {seen[-1]:.0f} ms "
                  f"({ev['attempts']} attempt(s))", flush=True)
            time.sleep(1.0)
        code = chat.interrupt()
        summary = [e for e in chat.of_type("voicecli.metrics") if e.get("scope") == "session"][-1]
    finally:
        chat.kill()
        stop_server(served)
        va.stop()
    print(f"reopen: p50 {statistics.median(took):.0f} ms, max {max(took):.0f} ms; kill -> event: p50 "
          f"{statistics.median(seen):.0f} ms, max {max(seen):.0f} ms; {args.rounds} rounds; exit {code}; "
          f"device_reopens {summary['device_reopens']}, device_checks {summary['device_checks']}")


if __name__ == "__main__":
    main()
