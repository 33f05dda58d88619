"""The sound server's own feed delay on the bench rig (issue 10, Cost: "capture -> wire p95 <= 30 ms
plus the sound server's own feed delay").

    .venv/bin/python bench/feed_delay_bench.py [--prompts 20] [--block-ms 5]

On the private PulseAudio of tests/e2e/pulse.py, as bench/chat_bench.py and bench/cost_bench.py use
it: this process speaks the example prompts into `vmic_feed` (each fed sample's time = callback time
+ PortAudio's DAC delay, chat_bench.Feeder) and, as the quickest client there could be, captures the
virtual mic `vmic` in `--block-ms` blocks. Per prompt: the onset's feed time -> the callback that
delivers the block holding it (time.monotonic() at the callback). That is how long the sound server
and PortAudio take to hand a fed sample to any client: a client's capture -> wire figure on this rig
includes it, plus the client's own chunking and send.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import chat_bench as cb  # noqa: E402

from tests.e2e.pulse import RATE, VirtualAudio  # noqa: E402


class FirstLoud:
    """Capture callback: the monotonic times of the blocks that hold a loud sample."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loud_at: list[float] = []

    def callback(self, indata: np.ndarray, frames: int, t: object, status: object) -> None:
        now = time.monotonic()
        if np.max(np.abs(indata)) > cb.LOUD:
            with self.lock:
                self.loud_at.append(now)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--block-ms", type=int, default=5)
    args = ap.parse_args()
    va = VirtualAudio().start()
    try:
        os.environ.update({k: v for k, v in va.env.items() if k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")})
        os.environ["PULSE_SINK"], os.environ["PULSE_SOURCE"] = "vmic_feed", "vmic"
        import sounddevice as sd
        feeder, probe = cb.Feeder(), FirstLoud()
        prompts = [cb.load_prompt("hello.wav"), cb.load_prompt("thanks.wav")]
        delays: list[float] = []
        with sd.OutputStream(samplerate=RATE, channels=1, dtype="float32", blocksize=240, latency="low",
                             callback=feeder.callback), \
                sd.InputStream(samplerate=RATE, channels=1, dtype="float32", latency="low",
                               blocksize=RATE * args.block_ms // 1000, callback=probe.callback):
            time.sleep(0.5)
            for i in range(args.prompts):
                n_onsets = len(feeder.onsets)
                with probe.lock:
                    probe.loud_at.clear()
                feeder.say(prompts[i % 2])
                while feeder.busy():
                    time.sleep(0.01)
                time.sleep(0.3)
                if len(feeder.onsets) > n_onsets:
                    onset = feeder.onsets[n_onsets]
                    with probe.lock:
                        after = [t for t in probe.loud_at if t >= onset - 0.005]
                    if after:
                        delays.append((after[0] - onset) * 1000)
        if not delays:
            sys.exit("no onset was captured")
        delays.sort()
        p95 = delays[min(len(delays) - 1, int(round(0.95 * (len(delays) - 1))))]
        print(f"sound server feed delay (vmic_feed -> a {args.block_ms} ms-block client of vmic), "
              f"{len(delays)} prompts: p50 {statistics.median(delays):.1f} ms, p95 {p95:.1f} ms, "
              f"max {delays[-1]:.1f} ms")
        print(f"reproduce: .venv/bin/python bench/feed_delay_bench.py --prompts {args.prompts} "
              f"--block-ms {args.block_ms}")
    finally:
        va.stop()


if __name__ == "__main__":
    main()
