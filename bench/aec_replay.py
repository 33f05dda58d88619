"""Replay chats recorded with ``VOICECLI_AEC_TRACE`` through the echo canceller offline (issue 10).

    .venv/bin/python bench/aec_replay.py TRACE.npz [...] [--gate on|off] [--ns on|off] [--detail] [--guard-ms 300]

A trace (written by ``voicecli chat --echo aec`` with ``VOICECLI_AEC_TRACE=FILE.npz``, e.g. from
bench/aec_echo_runs.py) holds what the speaker played with its DAC times, the mic's capture notes
and every ``process()`` call with the far-end ring's state at that moment, and the mic signal. The
replay feeds the same calls to a fresh :class:`~voicecli.audio.aec.EchoCanceller` (so a change to
the canceller is judged on the very audio that made it fail live) and reports, per trace: the echo
reduction (ERLE: mic energy in vs out while the far end plays), the frames whose residual is above
the local server's speech threshold (-50 dBFS), and how many times the server's turn detector
would have heard "speech" in the residual (a self-interruption), with the echo guard applied.
``--detail`` prints the leaks per 10 ms frame: delay fed, reference, in, out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from voicecli.audio import aec  # noqa: E402
from voicecli.server.vad import EnergyTurnDetector  # noqa: E402

RATE = 24000
FRAME = 240
SPEECH_DB = -50.0


def db(x: np.ndarray) -> np.ndarray:
    frames = x[: x.shape[0] // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def replay(path: Path, gate: bool, guard_ms: float, detail: bool, ns: bool = True) -> dict[str, Any]:
    tr = np.load(path)
    c, x, out, call_t = aec.replay_trace(tr, gate=gate, noise_suppression=ns)
    ring_rate = int(tr["ring_rate"])
    same = bool("mic_out" in tr and tr["mic_out"].shape[0] >= out.shape[0]
                and np.allclose(tr["mic_out"][: out.shape[0]], out, atol=1e-4))
    # reply windows (monotonic time of the played blocks): far end active, after >0.5 s of silence
    played, pt, pn = tr["played"], tr["played_t"], tr["played_n"]
    starts_n = np.cumsum(np.concatenate(([0], pn)))[:-1]
    windows: list[list[float]] = []
    quiet = 1e9
    for k in range(len(pt)):
        if np.any(played[starts_n[k]:starts_n[k] + pn[k]]):
            if quiet > 0.5:
                windows.append([pt[k][1], pt[k][1]])
            windows[-1][1] = pt[k][1] + 0.2
            quiet = 0.0
        else:
            quiet += pn[k] / ring_rate
    # monotonic time of every output frame (each process() call's samples end at its call time)
    t_frames = np.zeros(out.shape[0] // FRAME)
    p = 0
    for t, n in call_t:
        t_frames[p // FRAME:(p + n) // FRAME] = t - (np.arange((p + n) // FRAME - p // FRAME)[::-1]) * 0.01
        p += n
    in_reply = np.zeros(t_frames.shape[0], bool)
    guard = np.zeros(t_frames.shape[0], bool)
    for w0, w1 in windows:
        in_reply |= (t_frames >= w0) & (t_frames <= w1)
        guard |= (t_frames >= w0) & (t_frames < w0 + guard_ms / 1000)
    guarded = out[: t_frames.shape[0] * FRAME].copy().reshape(-1, FRAME)
    guarded[guard] = 0
    vad = EnergyTurnDetector()
    starts = [e.at_ms for e in vad.feed(_i16(guarded.ravel())) if e.kind == "started"]
    self_starts = [s for s in starts if in_reply[min(int(s / 10) + 8, in_reply.shape[0] - 1)]]
    lin, lout = db(x), db(out)
    n = min(lin.shape[0], in_reply.shape[0])
    act = in_reply[:n] & ~guard[:n] & (lin[:n] > -70)
    erle = float(np.mean(lin[:n][act]) - np.mean(np.maximum(lout[:n][act], -120))) if act.any() else 0.0
    leaks = np.nonzero(act & (lout[:n] > SPEECH_DB))[0]
    res = {"trace": path.name, "frames": int(lin.shape[0]), "replies": len(windows), "erle_db": round(erle, 1),
           "leak_frames": int(leaks.shape[0]), "self_interruptions_ms": self_starts,
           "realigned": c.realigned, "same_as_live": same, **{k: v for k, v in c.stats().items() if k in ("gated_frames", "echo_lag_ms")}}
    if detail:
        for i in leaks:
            w0 = next(w0 for w0, w1 in windows if w0 <= t_frames[i] <= w1)
            print(f"   frame {i:5d} t={i / 100:6.2f}s ({(t_frames[i] - w0) * 1000:5.0f} ms into the reply) "
                  f"in {lin[i]:6.1f} out {lout[i]:6.1f} dBFS")
    return res


def _i16(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x * 32768), -32768, 32767).astype("<i2").tobytes()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("traces", nargs="+", type=Path)
    ap.add_argument("--gate", default="on", help="the residual echo gate (off: AEC3 alone, as before)")
    ap.add_argument("--guard-ms", type=float, default=300.0)
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("--ns", default="on", choices=("on", "off"), help="the APM's noise suppression (live: on)")
    args = ap.parse_args()
    bad = 0
    for path in args.traces:
        r = replay(path, args.gate == "on", args.guard_ms, args.detail, args.ns == "on")
        bad += bool(r["self_interruptions_ms"])
        print(r, flush=True)
    print(f"{len(args.traces) - bad} of {len(args.traces)} replays without a self-interruption")


if __name__ == "__main__":
    main()
