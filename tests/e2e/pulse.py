"""A private PulseAudio daemon with virtual devices (audio-lab.md section 2a), for the end-to-end tests
and the benchmarks.

``VirtualAudio.start()`` runs a user-mode daemon in its own ``XDG_RUNTIME_DIR`` (a temp dir) with two
24 kHz mono null sinks: ``vspk`` (the speaker; record ``vspk.monitor``) and ``vmic_feed`` (write to it
to speak into the mic), a ``vmic`` remap source of ``vmic_feed.monitor`` (the mic), and two 20 ms
silence loopbacks that keep the null sinks' monitors flowing (pitfall 1), then waits for ``pactl``
and 2.5 s for the first slow render blocks to pass (pitfall 2). ``env`` is what a subprocess needs
to use it (``PULSE_SERVER`` plus the runtime dir). ``stop()`` ends it (``pactl exit``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RATE = 24000


def pulse_missing() -> str | None:
    """Why real-device tests cannot run here, or None if they can."""
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)"
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        return f"PortAudio is missing ({exc}; apt-get install libportaudio2)"
    return None


class VirtualAudio:
    """A PulseAudio daemon with a virtual mic (``vmic``, fed through ``vmic_feed``) and speaker (``vspk``)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="voicecli-pulse-"))
        os.chmod(self.dir, 0o700)
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(self.dir),
                        PULSE_SERVER=f"unix:{self.dir}/pulse/native", PULSE_SINK="vspk", PULSE_SOURCE="vmic")
        self.env.pop("PULSE_COOKIE", None)

    def pactl(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)
        if check and out.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self) -> VirtualAudio:
        sink = f"rate={RATE} channels=1"
        cmd = [
            "pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--log-target=stderr",
            "--load=module-native-protocol-unix",
            f"--load=module-null-sink sink_name=vspk {sink} sink_properties=device.description=VirtualSpeaker",
            f"--load=module-null-sink sink_name=vmic_feed {sink}",
            "--load=module-remap-source master=vmic_feed.monitor source_name=vmic "
            "source_properties=device.description=VirtualMic",
            f"--load=module-null-source source_name=silence {sink}",
            "--load=module-loopback source=silence sink=vmic_feed latency_msec=20 source_dont_move=1 "
            "sink_dont_move=1",
            "--load=module-loopback source=silence sink=vspk latency_msec=20 source_dont_move=1 "
            "sink_dont_move=1",
        ]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"pulseaudio did not start: {proc.stderr.strip()[-500:]}")
        for _ in range(50):
            if subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("pulseaudio started but pactl cannot reach it")
        self.pactl("set-default-sink", "vspk")
        self.pactl("set-default-source", "vmic")
        time.sleep(2.5)  # null sinks start with 2 s render blocks (audio-lab.md 2a, pitfall 2)
        return self

    def stop(self) -> None:
        subprocess.run(["pactl", "exit"], env=self.env, capture_output=True, timeout=10)
        for _ in range(30):
            if not (self.dir / "pulse" / "pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_echo(self, delay_ms: int = 40, gain_db: float = -15.0) -> int:
        """An acoustic echo path like a laptop's: the speaker's monitor looped back into the mic feed
        (``module-loopback``, ``delay_ms`` latency) at ``gain_db``. Returns the module index."""
        module = int(self.pactl("load-module", "module-loopback", "source=vspk.monitor", "sink=vmic_feed",
                                f"latency_msec={delay_ms}", "adjust_time=0", "source_dont_move=1",
                                "sink_dont_move=1").strip())
        index = None
        for block in self.pactl("list", "sink-inputs").split("Sink Input #")[1:]:
            if f"Owner Module: {module}\n" in block:
                index = block.split("\n", 1)[0].strip()
        if index is None:
            self.pactl("unload-module", str(module), check=False)
            raise RuntimeError("the echo loopback has no sink input")
        self.pactl("set-sink-input-volume", index, f"{gain_db:g}dB")
        return module

    def remove_echo(self, module: int) -> None:
        self.pactl("unload-module", str(module), check=False)

    def play(self, wav: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Speak ``wav`` into the virtual mic (``paplay --device=vmic_feed``); returns the process."""
        return subprocess.Popen(["paplay", "--device=vmic_feed", str(wav)], env=self.env)

    def record_speaker(self, path: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Record ``vspk.monitor`` as raw 24 kHz mono s16le into ``path`` until terminated."""
        out = open(path, "wb")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(["parec", "--latency-msec=20", "--device=vspk.monitor", f"--rate={RATE}",
                                     "--channels=1", "--format=s16le", "--raw"], env=self.env, stdout=out)
        finally:
            out.close()
