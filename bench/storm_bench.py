"""Delta storms against the terminal views (issue 12 item 11).

    .venv/bin/python bench/storm_bench.py [--seconds 10] [--rate 1000]

The hostile-server test double (tests/hostile_server.py, real loopback) sends `transcript.user.delta`
and then `transcript.agent.delta` frames at ``--rate`` per second, each storm ``--seconds`` long.

* ask: `voicecli ask examples/hello.wav` on a pty (so it draws the rich live view): wall time from
  start to exit, against the storms' own length (the reply comes after them).
* chat: `voicecli chat` on a pty with the live view, on PulseAudio virtual devices (tests/e2e/pulse.py;
  the storms come with the greeting): `input.audio` the server received during each storm / the
  storm's wall time (1.0 = the mic kept real time), the chat process's CPU (% of one core) over the
  storms, and how long `q` takes to end the chat right after them.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.pulse import VirtualAudio, pulse_missing  # noqa: E402
from tests.hostile_server import HostileServer, Hostility  # noqa: E402

HELLO = str(ROOT / "examples" / "hello.wav")


class Pty:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        env = dict(env, TERM="xterm-256color", COLUMNS="100", LINES="40")
        env.pop("ASSEMBLYAI_API_KEY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", *args], cwd=ROOT, env=env,
                                     stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.bytes = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._thread.join(5)
            os.close(self.master)


def bench_ask(seconds: float, rate: float) -> None:
    n = int(seconds * rate)
    with HostileServer(Hostility(user_delta_storm=(n, rate), delta_storm=(n, rate))) as srv:
        start = time.monotonic()
        run = Pty(["ask", HELLO, "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "600"],
                  dict(os.environ))
        code = run.wait(600)
        took = time.monotonic() - start
    print(f"ask (live view on a pty): {2 * seconds:.0f} s of storms at {rate:.0f}/s -> exit {code} after "
          f"{took:.1f} s ({took - 2 * seconds:+.1f} s after the storms), {run.bytes / 1e6:.2f} MB to the terminal")


def bench_chat(seconds: float, rate: float) -> None:
    why = pulse_missing()
    if why:
        print(f"chat: skipped ({why})")
        return
    va = VirtualAudio().start()
    n = int(seconds * rate)
    try:
        with HostileServer(Hostility(greet_ms=1000, user_delta_storm=(n, rate), delta_storm=(n, rate))) as srv:
            run = Pty(["chat", "--url", srv.url, "--api-key", "k"], va.env)
            while not srv.stats.storms and run.proc.poll() is None:
                time.sleep(0.01)
            cpu0, t0 = run.cpu_s(), time.monotonic()
            while run.proc.poll() is None and not (len(srv.stats.storms) == 2 and srv.stats.storms[1].ended):
                time.sleep(0.05)
            cpu = (run.cpu_s() - cpu0) / (time.monotonic() - t0) * 100
            quit_at = time.monotonic()
            os.write(run.master, b"q")
            code = run.wait(60)
            quit_s = time.monotonic() - quit_at
            ratios = ", ".join(f"{s.kind} {s.audio_ratio:.2f}" for s in srv.stats.storms)
    finally:
        va.stop()
    print(f"chat (live view on a pty, virtual devices): input.audio / real time during the storms: {ratios}; "
          f"CPU {cpu:.0f} % of one core during them; q -> exit {code} in {quit_s:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each storm")
    ap.add_argument("--rate", type=float, default=1000.0, help="deltas per second")
    args = ap.parse_args()
    print(f"# {' '.join(sys.argv)}  (machine load: {os.getloadavg()[0]:.1f})")
    bench_ask(args.seconds, args.rate)
    bench_chat(args.seconds, args.rate)


if __name__ == "__main__":
    main()
