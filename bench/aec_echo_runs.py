"""Run the echo-path chat of tests/e2e/test_chat_echo.py N times and count self-interruptions (issue 10).

    .venv/bin/python bench/aec_echo_runs.py [--runs 10] [--echo aec] [--tts tone|espeak]
        [--delay-ms 40] [--gain-db -15] [--trace-dir DIR]

A private PulseAudio daemon with the virtual devices and an acoustic echo path (module-loopback of
the speaker monitor into the mic feed), a scripted local server, and per run a two-turn chat
(hello -> reply, thanks -> reply). Prints per run whether the agent cut itself (``voicecli.barge_in``)
and the canceller's summary, then "N of M runs clean". With ``--trace-dir`` every run writes
``VOICECLI_AEC_TRACE`` (the canceller's inputs, replayable offline by bench/aec_replay.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import start_server, stop_server  # noqa: E402
from tests.e2e.pulse import VirtualAudio  # noqa: E402
from tests.e2e.test_chat_echo import _two_turns  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--echo", default="aec")
    ap.add_argument("--tts", default="tone")
    ap.add_argument("--delay-ms", type=int, default=40)
    ap.add_argument("--gain-db", type=float, default=-15.0)
    ap.add_argument("--trace-dir", type=Path)
    args = ap.parse_args()
    va = VirtualAudio().start()
    served = start_server("--engine", "scripted", "--scenario", "echo", "--tts", args.tts, "--no-rate-check",
                          "--api-key", "test-key")
    module = va.add_echo(delay_ms=args.delay_ms, gain_db=args.gain_db)
    time.sleep(0.3)
    clean = 0
    try:
        for i in range(args.runs):
            if args.trace_dir:
                args.trace_dir.mkdir(parents=True, exist_ok=True)
                va.env["VOICECLI_AEC_TRACE"] = str(args.trace_dir / f"run{i:02d}.npz")
            try:
                chat = _two_turns(va, served, args.echo)
            except AssertionError as exc:
                print(f"run {i}: FAILED to finish: {str(exc)[:300]}", flush=True)
                continue
            barge = chat.of_type("voicecli.barge_in")
            summary = [e for e in chat.of_type("voicecli.metrics") if e.get("scope") == "session"]
            aec = summary[-1].get("aec") if summary else None
            clean += not barge
            print(f"run {i}: {'clean' if not barge else 'SELF-INTERRUPTED'} "
                  f"barge_ins={[round(b.get('played_ms', 0)) for b in barge]} aec={aec}", flush=True)
    finally:
        va.remove_echo(module)
        stop_server(served)
        va.stop()
    print(f"{clean} of {args.runs} runs clean (--echo {args.echo}, --tts {args.tts}, echo path "
          f"{args.delay_ms} ms {args.gain_db:g} dB)")


if __name__ == "__main__":
    main()
