"""What the echo canceller of `voicecli chat --echo aec` removes and costs (issue 10), offline.

    .venv/bin/python bench/aec_bench.py [--seconds 20] [--delay-ms 40] [--gain-db -15]

A speech-like far-end signal (gated noise) is played through a simulated output stream into a
:class:`~voicecli.audio.aec.FarEndRing`; its echo (``--delay-ms`` acoustic delay, ``--gain-db``)
is captured by a simulated mic with true DAC/ADC times, and :class:`EchoCanceller` (WebRTC AEC3
through livekit, noise suppression on) removes it. Prints the echo reduction per stretch and the
canceller's cost per 10 ms frame (the whole path: reference alignment, int16 conversion, the APM).
The live figures come from a chat's session summary (`voicecli.metrics` scope=session, key `aec`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from voicecli.audio import aec

RATE = 24000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--delay-ms", type=float, default=40.0)
    ap.add_argument("--gain-db", type=float, default=-15.0)
    args = ap.parse_args()
    if not aec.available():
        sys.exit("the aec extra is not installed: pip install -e '.[aec]'")
    rng = np.random.default_rng(0)
    n = int(args.seconds * RATE)
    env = (np.abs(np.sin(np.arange(n) / RATE * 2.5)) > 0.3).astype(np.float32)
    far = rng.standard_normal(n).astype(np.float32) * 0.1 * env
    gain = 10 ** (args.gain_db / 20)
    d = int(args.delay_ms / 1000 * RATE)
    echo = np.concatenate((np.zeros(d, np.float32), far[:-d] * gain)).astype(np.float32)
    ring = aec.FarEndRing(RATE)
    c = aec.EchoCanceller(ring, RATE)
    block, lead = 240, 0.015
    out = []
    t0 = time.perf_counter()
    for i in range(n // block - 2):
        now = i * block / RATE
        ring.write((far[i * block:(i + 1) * block] * 32767).astype(np.int16), now + lead)
        if i >= 2:
            k = (i - 2) * block
            c.note_capture(k / RATE, block)
            out.append(c.process(echo[k:k + block]))
    wall = time.perf_counter() - t0
    y = np.concatenate(out)
    x = echo[:len(y)]
    print(f"echo path: {args.delay_ms:g} ms, {args.gain_db:g} dB; {args.seconds:g} s of speech-like far end")
    for a, b in ((0, 1), (1, 3), (3, args.seconds - 0.1)):
        s = slice(int(a * RATE), int(b * RATE))
        red = 10 * np.log10(np.mean(y[s] ** 2) / np.mean(x[s] ** 2) + 1e-20)
        print(f"  {a:4.1f}-{b:4.1f} s: echo reduced by {-red:5.1f} dB")
    print(f"cost: {c.stats()['ms_per_frame']} ms per 10 ms frame in the canceller "
          f"({wall * 1000 / c.frames:.3f} ms per frame for the whole simulated loop), "
          f"{c.stats()['ms_per_frame'] / 10 * 100:.1f} % of one core")


if __name__ == "__main__":
    main()
