"""What the echo canceller of `voicecli chat --echo aec` removes and costs (issue 10), offline.

    .venv/bin/python bench/aec_bench.py [--seconds 20] [--delay-ms 40] [--gain-db -15] [--repeat 3]
        [--before REV] [--trace FILE.npz ...]

Two simulated chats, each through :class:`~voicecli.audio.aec.EchoCanceller` (WebRTC AEC3 through
livekit) call by call with true DAC/ADC times: a speech-like far end (gated noise) is played into a
:class:`FarEndRing`, and the mic hears

* ``echo``: its echo (``--delay-ms`` acoustic delay, ``--gain-db``, a laptop's speaker) on a -70 dBFS
  noise floor: prints the echo reduction per stretch;
* ``no-echo``: no echo (headphones; the cost bench's virtual devices), and every 4 s a talker
  (examples/thanks.wav) who starts 1.4 s into the far end's playing: prints how much of the
  talker's first 100 ms the canceller passes (AEC3 alone suppressed it by 60-80 dB, issue 10).

Cost: CPU microseconds of the canceller per 10 ms frame of mic audio (thread CPU time: reference
alignment, the residual-echo gate, int16 conversions and the APM), the part spent in the APM's
native calls (livekit's FFI: one request per call), the rest (Python and numpy), each with noise
suppression on (as in a chat) and off. The median of ``--repeat`` runs, interleaved. ``--before REV``
runs the canceller of that git revision (voicecli/audio/aec.py at REV) on the same signals, for a
before/after table. ``--trace`` replays chats recorded with VOICECLI_AEC_TRACE the same way.
The live figure is a chat's session summary (`voicecli.metrics` scope=session, ``aec.ms_per_frame``).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from voicecli.audio import aec  # noqa: E402

RATE = 24000
BLOCK = 240


def load_at(rev: str) -> ModuleType:
    """voicecli/audio/aec.py as it was at git revision ``rev``, as a module of its own."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:voicecli/audio/aec.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"aec_{rev.replace('/', '_')}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class TimedApm:
    """Forwards to the APM and adds up the time its native calls take."""

    def __init__(self, apm: Any) -> None:
        self.apm, self.seconds = apm, 0.0

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.apm, name)

        def timed(*args: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*args)
            finally:
                self.seconds += time.thread_time() - t
        return timed


def signals(kind: str, seconds: float, delay_ms: float, gain_db: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(far end, mic, the talker's onsets in mic samples) for scenario ``kind``."""
    rng = np.random.default_rng(0)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    far = (rng.standard_normal(n) * 0.1 * (np.abs(np.sin(t * 2.5)) > 0.3)).astype(np.float32)
    mic = (rng.standard_normal(n) * 10 ** (-70 / 20)).astype(np.float32)
    onsets: list[int] = []
    if kind == "echo":
        d = int(delay_ms / 1000 * RATE)
        mic[d:] += far[:-d] * np.float32(10 ** (gain_db / 20))
    else:
        talk = sf.read(ROOT / "examples" / "thanks.wav", dtype="float32")[0][: int(1.2 * RATE)]
        lead = int(np.argmax(np.abs(talk) > 0.05))
        # the far end plays from 0.12 s in each 1.26 s period (|sin(2.5 t)| > 0.3)
        for start in np.arange(0.12 + 1.4, seconds - 1.5, 4.0):
            k = int(start * RATE)
            mic[k:k + talk.shape[0]] += talk
            onsets.append(k + lead)
    return far, mic, onsets


def simulate(mod: ModuleType, far: np.ndarray, mic: np.ndarray, ns: bool) -> tuple[Any, np.ndarray, float]:
    """Play ``far`` and capture ``mic`` through ``mod``'s canceller: (canceller, output, APM seconds)."""
    ring = mod.FarEndRing(RATE)
    c = mod.EchoCanceller(ring, RATE, noise_suppression=ns)
    c.apm = TimedApm(c.apm)
    out = []
    for i in range(far.shape[0] // BLOCK - 2):
        ring.write((far[i * BLOCK:(i + 1) * BLOCK] * 32767).astype(np.int16), i * BLOCK / RATE + 0.015)
        if i >= 2:
            k = (i - 2) * BLOCK
            c.note_capture(k / RATE, BLOCK)
            out.append(c.process(mic[k:k + BLOCK]))
    return c, np.concatenate(out), c.apm.seconds


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def cost(c: Any, apm_s: float) -> tuple[float, float, float]:
    """(total, APM, rest) microseconds per 10 ms frame."""
    total, native = c.cost_s / c.frames * 1e6, apm_s / c.frames * 1e6
    return total, native, total - native


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--delay-ms", type=float, default=40.0)
    ap.add_argument("--gain-db", type=float, default=-15.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", metavar="REV", help="also run the canceller of this git revision")
    ap.add_argument("--trace", type=Path, nargs="*", default=[], help="VOICECLI_AEC_TRACE files to replay")
    args = ap.parse_args()
    if not aec.available():
        sys.exit("the aec extra is not installed: pip install -e '.[aec]'")
    impls: list[tuple[str, ModuleType]] = [("now", aec)]
    if args.before:
        impls.insert(0, (args.before, load_at(args.before)))
    scen = {k: signals(k, args.seconds, args.delay_ms, args.gain_db) for k in ("echo", "no-echo")}
    figures: dict[tuple[str, str, bool], list[tuple[float, float, float]]] = {}
    quality: dict[tuple[str, str, bool], str] = {}
    for _ in range(args.repeat):
        for kind, (far, mic, onsets) in scen.items():
            for ns in (True, False):
                for name, mod in impls:
                    c, y, apm_s = simulate(mod, far, mic, ns)
                    figures.setdefault((kind, name, ns), []).append(cost(c, apm_s))
                    x = mic[: y.shape[0]]
                    if kind == "echo":
                        quality[(kind, name, ns)] = "echo reduced by " + ", ".join(
                            f"{db(x[int(a * RATE):int(b * RATE)]) - db(y[int(a * RATE):int(b * RATE)]):.0f}"
                            for a, b in ((0, 1), (1, 3), (3, args.seconds - 0.1))) + " dB (0-1, 1-3, 3- s)"
                    else:
                        passed = [db(y[o:o + RATE // 10]) - db(x[o:o + RATE // 10]) for o in onsets]
                        quality[(kind, name, ns)] = (f"talker's first 100 ms passed at {min(passed):.1f} dB "
                                                     f"(worst of {len(passed)})")
    print(f"aec cost per 10 ms frame (median of {args.repeat}; us: total = APM native calls + the rest); "
          f"{args.seconds:g} s each; echo path {args.delay_ms:g} ms {args.gain_db:g} dB")
    for kind in scen:
        for ns in (True, False):
            for name, _ in impls:
                runs = figures[(kind, name, ns)]
                total, native, rest = (statistics.median(r[i] for r in runs) for i in range(3))
                print(f"  {kind:<8} NS {'on ' if ns else 'off'} {name:<10} {total:6.1f} = {native:6.1f} + {rest:5.1f}"
                      f"   {quality[(kind, name, ns)]}")
    for path in args.trace:
        tr = np.load(path)
        for name, mod in impls:
            totals = []
            for _ in range(args.repeat):
                c = mod.replay_trace(tr)[0]
                totals.append(c.cost_s / c.frames * 1e6)
            print(f"  trace {path.name} {name:<10} {statistics.median(totals):6.1f} us per frame ({c.frames} frames)")
    print("reproduce: .venv/bin/python bench/aec_bench.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
