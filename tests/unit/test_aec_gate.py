"""voicecli.audio.aec, issue 10: why ``--echo aec`` cut the agent's own replies on the virtual echo path,
and the fix. A chat recorded there with ``VOICECLI_AEC_TRACE`` (tests/data/aec_reply_leak.npz: the
played audio with its DAC times, the mic's capture notes and process() calls, the mic signal) is
replayed through the canceller call by call: AEC3 alone lets the second reply's echo through in the
500-1000 Hz band for ~130 ms (ERLE ~10 dB), 450-580 ms into it, and the local server's turn detector
hears "speech" there; with the residual-echo gate it does not. Synthetic checks: the lag measurement,
and that the gate never mutes a talker who is louder than the echo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicecli.audio import aec
from voicecli.audio.aec import FRAME, GATE_MAX_LAG, GATE_WINDOW, EchoCanceller, FarEndRing
from voicecli.server.vad import EnergyTurnDetector

RATE = 24000
TRACE = Path(__file__).resolve().parents[1] / "data" / "aec_reply_leak.npz"
needs_aec = pytest.mark.skipif(not aec.available(), reason="the aec extra (livekit) is not installed")


def test_the_echo_lag_is_measured_and_noise_or_silence_give_none() -> None:
    rng = np.random.default_rng(1)
    ref = (rng.standard_normal(GATE_WINDOW + GATE_MAX_LAG) * 0.1).astype(np.float32)
    mic = (0.3 * ref[GATE_MAX_LAG - 1000:GATE_MAX_LAG - 1000 + GATE_WINDOW]).astype(np.float32)
    assert aec._echo_lag(mic, ref) == 1000
    assert aec._echo_lag(np.zeros(GATE_WINDOW, np.float32), ref) is None
    other = (rng.standard_normal(GATE_WINDOW) * 0.1).astype(np.float32)
    assert aec._echo_lag(other, ref) is None


def _path(seconds: float, talker_from: float | None) -> tuple[int, EchoCanceller]:
    """Far-end noise through a 30 ms, -12 dB echo path; from ``talker_from`` s on a near-end talker
    (independent noise, 10 dB louder than the echo) talks over it. Returns the frames gated from
    100 ms after the talker started, and the canceller."""
    rng = np.random.default_rng(2)
    n = int(seconds * RATE)
    far = (rng.standard_normal(n) * 0.1).astype(np.float32)
    d = int(0.03 * RATE)
    echo = np.concatenate((np.zeros(d, np.float32), 0.25 * far[:-d])).astype(np.float32)
    near = np.zeros(n, np.float32)
    if talker_from is not None:
        k = int(talker_from * RATE)
        near[k:] = (rng.standard_normal(n - k) * 0.25 * 0.1 * 10 ** (10 / 20)).astype(np.float32)
    mic = (echo + near).astype(np.float32)
    ring = FarEndRing(RATE)
    c = EchoCanceller(ring, RATE)
    gated_before = None
    for i in range(n // FRAME - 2):
        ring.write((far[i * FRAME:(i + 1) * FRAME] * 32767).astype(np.int16), dac_time=i * FRAME / RATE + 0.015)
        if i >= 2:
            k = (i - 2) * FRAME
            c.note_capture(k / RATE, FRAME)
            c.process(mic[k:k + FRAME])
            if talker_from is not None and gated_before is None and k >= (talker_from + 0.1) * RATE:
                gated_before = c.gated_frames
    return c.gated_frames - (gated_before or 0), c


@needs_aec
def test_the_gate_mutes_pure_echo_and_lets_a_talker_through() -> None:
    _, c = _path(4.0, None)
    assert c.echo_lag_ms == pytest.approx(30.0 - 15.0, abs=0.5)   # acoustic delay - DAC lead and c.gated_frames > 300
    # the gate is shut while only the echo is heard (2 s) and open from the talker's first 100 ms on
    gated_while_talking, c = _path(4.0, talker_from=2.0)
    assert c.gated_frames > 150 and gated_while_talking == 0


def _self_interruptions(gate: bool) -> tuple[list[float], EchoCanceller]:
    """Replay the trace; return where the server's turn detector hears speech inside a reply (after
    the chat's 300 ms echo guard, during which the mic is closed)."""
    tr = np.load(TRACE)
    c, _, out, calls = aec.replay_trace(tr, gate=gate)
    played, pn, pt = tr["played"], tr["played_n"], tr["played_t"]
    starts = np.cumsum(np.concatenate(([0], pn)))[:-1]
    windows: list[list[float]] = []
    quiet = 1e9
    for k in range(len(pn)):
        if np.any(played[starts[k]:starts[k] + pn[k]]):
            if quiet > 0.5:
                windows.append([pt[k][1], pt[k][1]])
            windows[-1][1] = pt[k][1] + 0.2
            quiet = 0.0
        else:
            quiet += pn[k] / int(tr["ring_rate"])
    t = np.zeros(out.shape[0] // FRAME)
    p = 0
    for when, n in calls:         # each call's frames end at its time
        m = (p + n) // FRAME - p // FRAME
        t[p // FRAME:p // FRAME + m] = when - np.arange(m)[::-1] * 0.01
        p += n
    frames = out[: t.shape[0] * FRAME].reshape(-1, FRAME).copy()
    in_reply = np.zeros(t.shape[0], bool)
    for w0, w1 in windows:
        in_reply |= (t >= w0 + 0.3) & (t <= w1)
    frames[~in_reply] = 0        # only what the mic sends during replies
    pcm = np.clip(np.rint(frames.ravel() * 32768), -32768, 32767).astype("<i2").tobytes()
    assert len(windows) == 2
    return [e.at_ms for e in EnergyTurnDetector().feed(pcm) if e.kind == "started"], c


@needs_aec
def test_a_recorded_self_interruption_is_gone_with_the_gate() -> None:
    heard, _ = _self_interruptions(gate=False)
    assert heard, "the trace no longer reproduces the leak (AEC3 alone)"
    heard, c = _self_interruptions(gate=True)
    assert heard == [] and c.gated_frames > 100
