"""Soak: a long `voicecli chat` on PulseAudio virtual devices against `voicecli serve` (issue 12).

    .venv/bin/python bench/soak.py [--minutes 30] [--turn-every 15] [--barge-every 3] [--drop-after-replies 40]

Set-up: a private PulseAudio daemon (tests/e2e/pulse.py), `voicecli serve --engine basic --tts tone`
(energy turn detection, the model-free brain, so every turn is answered deterministically), and
`voicecli chat --no-ui --json --record DIR` on the virtual mic/speaker, connected with
`?fault=drop-after-replies=N`: the server drops the TCP connection (no close frame) after every N
replies on a connection, so the client must resume several times during the run.

Every ``--turn-every`` seconds a prompt (examples/hello.wav or thanks.wav) is spoken into the mic;
every ``--barge-every``-th prompt is spoken again ~0.6 s into its reply (a barge-in).

Figures:
* chat's RSS (VmRSS, sampled every 5 s): after the warm-up (the first 10 % of the run, at least
  60 s), at the end, the drift between them (target <= 5 MiB), the least-squares slope (MiB/h),
  and the peak (VmHWM);
* turns: prompts spoken, user turns transcribed, replies finished (completed or interrupted),
  barge-ins, resumes; "lost" = prompts that got no reply;
* the recording: the WAV's duration vs the chat's wall time, and the transcript JSON's entries.
Chat ends with Ctrl-C (exit 130, as documented). Exit status 1 when something was lost or the drift exceeds the target (so a soak can gate).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.pulse import VirtualAudio

PROMPTS = [ROOT / "examples" / "hello.wav", ROOT / "examples" / "thanks.wav"]
DRIFT_TARGET_MIB = 5.0


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Events:
    """NDJSON lines of the chat's stdout, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lock = threading.Lock()
        self.items: list[dict[str, Any]] = []
        self.bad_lines = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            event["_at"] = time.monotonic()
            with self.lock:
                self.items.append(event)

    def count(self, kind: str, pred: Any = None) -> int:
        with self.lock:
            return sum(1 for e in self.items if e.get("type") == kind and (pred is None or pred(e)))

    def wait(self, kind: str, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` events of ``kind`` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(kind) > after:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--engine", "basic",
                             "--tts", "tone"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ws://"):
        proc.kill()
        raise SystemExit(f"voicecli serve did not print its URL: {line!r}")
    return proc, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--turn-every", type=float, default=15.0, help="seconds between prompts")
    parser.add_argument("--barge-every", type=int, default=3, help="every Nth prompt is barged into")
    parser.add_argument("--drop-after-replies", type=int, default=40,
                        help="the server drops the connection after this many replies on it")
    args = parser.parse_args()

    va = VirtualAudio().start()
    record_dir = Path(tempfile.mkdtemp(prefix="voicecli-soak-"))
    serve, url = start_serve(dict(os.environ))
    env = dict(va.env, PYTHONUNBUFFERED="1")
    env.pop("ASSEMBLYAI_API_KEY", None)
    chat = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "chat", "--url",
                             f"{url}?fault=drop-after-replies={args.drop_after_replies}", "--no-ui", "--json",
                             "--record", str(record_dir)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = Events(chat)
    rss: list[tuple[float, float]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(5.0):
            if chat.poll() is None:
                rss.append((time.monotonic(), vm_kib(chat.pid, "VmRSS") / 1024))

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    prompts = barges = 0
    hwm = 0.0
    try:
        if not events.wait("session.ready", 0, 30):
            raise SystemExit(f"chat never got session.ready: {chat.stderr.read() if chat.poll() is not None else ''}")
        sampler.start()
        end = t0 + args.minutes * 60
        next_turn = time.monotonic() + 2.0
        while time.monotonic() < end and chat.poll() is None:
            if time.monotonic() < next_turn:
                time.sleep(0.1)
                continue
            next_turn += args.turn_every
            started_before = events.count("reply.started")
            va.play(PROMPTS[prompts % 2]).wait(30)
            prompts += 1
            if args.barge_every and prompts % args.barge_every == 0:
                if events.wait("reply.started", started_before, 15):
                    time.sleep(0.6)
                    va.play(PROMPTS[prompts % 2]).wait(30)
                    prompts += 1
                    barges += 1
        hwm = vm_kib(chat.pid, "VmHWM") / 1024 if chat.poll() is None else float("nan")
        time.sleep(min(10.0, args.turn_every))            # let the last reply finish
        wall = time.monotonic() - t0
        stop_sampling.set()
        chat.send_signal(signal.SIGINT)
        code = chat.wait(30)
    finally:
        stop_sampling.set()
        if chat.poll() is None:
            chat.kill()
        serve.terminate()
        serve.wait(10)
        va.stop()
    events.thread.join(5)
    stderr = chat.stderr.read() if chat.stderr else ""

    user_turns = events.count("transcript.user")
    done = events.count("reply.done")
    interrupted = events.count("reply.done", lambda e: e.get("status") == "interrupted")
    resumes = events.count("voicecli.resumed")
    # A barge-in's prompt and the prompt it cut make one user turn when the VAD merges them; every
    # prompt must at least be heard as (part of) a user turn, and every user turn must get a reply.
    lost = max(0, user_turns - done)

    warm_until = t0 + max(60.0, 0.1 * wall)
    warm = [m for t, m in rss if t >= warm_until]
    drift = (warm[-1] - warm[0]) if len(warm) >= 2 else float("nan")
    slope = float("nan")
    if len(warm) >= 3:
        ts = np.array([t for t, _ in rss if t >= warm_until]) / 3600.0
        slope = float(np.polyfit(ts, np.array(warm), 1)[0])

    wavs = sorted(record_dir.glob("*.wav"))
    jsons = sorted(record_dir.glob("*.json"))
    wav_s = sf.info(str(wavs[0])).duration if wavs else float("nan")
    entries = 0
    if jsons:
        data = json.loads(jsons[0].read_text())
        entries = len(data.get("transcript", data.get("entries", []))) if isinstance(data, dict) else len(data)

    print(f"soak: {wall / 60:.1f} min of voicecli chat on virtual devices, a prompt every {args.turn_every:g} s, "
          f"every {args.barge_every}rd a barge-in, a server drop after every {args.drop_after_replies} replies")
    print(f"  chat exit code {code}; NDJSON lines unparsable: {events.bad_lines}")
    print(f"  prompts spoken {prompts} (barge-ins {barges}); user turns {user_turns}; replies done {done} "
          f"(interrupted {interrupted}); resumes {resumes}; lost (user turns without a reply) {lost}")
    if warm:
        print(f"  RSS after warm-up {warm[0]:.1f} MiB, at the end {warm[-1]:.1f} MiB: drift {drift:+.1f} MiB "
              f"(target <= {DRIFT_TARGET_MIB:g}), slope {slope:+.2f} MiB/h, peak (VmHWM) {hwm:.1f} MiB")
    print(f"  recording: {len(wavs)} wav ({wav_s:.1f} s of {wall:.1f} s wall), {len(jsons)} json "
          f"({entries} transcript entries) in {record_dir}")
    if stderr.strip():
        print("  chat stderr (last lines): " + " | ".join(stderr.strip().splitlines()[-3:]))
    print(f"reproduce: .venv/bin/python bench/soak.py --minutes {args.minutes:g} --turn-every {args.turn_every:g} "
          f"--barge-every {args.barge_every} --drop-after-replies {args.drop_after_replies}")
    ok = (code in (0, 130) and lost == 0 and user_turns > 0 and resumes >= 1 and wavs and jsons
          and not (drift > DRIFT_TARGET_MIB) and abs(wav_s - wall) < 0.1 * wall)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
