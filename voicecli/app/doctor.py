"""``voicecli doctor``: a self-test of everything a live chat needs (anchors.md section 4 item 1).

Checks, in order: PortAudio loads; devices exist; the input and output devices chat would use, the
rate and channels it would open them with, and whether 24 kHz opens directly; a short microphone
recording judged for silence with the likely cause; the speaker stream runs; and, when a server is
given (``--url``/``--local`` with a key or token), that it is reachable and accepts the key.

Each check is a :class:`Check` (``ok``/``warn``/``fail``, one line, a hint). The exit status is
the code of the first failed check: 6 for audio, 3 for a refused key, 4 for an unreachable server,
5 for a server error, 7 for a timeout; 0 when nothing failed (warnings included).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicecli.audio import devices
from voicecli.audio.pipeline import SILENT_DB, level_db
from voicecli.errors import VoicecliError
from voicecli.protocol.constants import RATE
from voicecli.status import ExitStatus
from voicecli.urls import redact_url

QUIET_DB = -65.0     # RMS below this over the whole recording: probably not a live mic


@dataclass
class Check:
    name: str
    status: str              # ok | warn | fail | skip
    detail: str
    hint: str = ""
    exit_code: ExitStatus = ExitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def judge_recording(samples: np.ndarray, expected_frames: int, rate: int) -> Check:
    """Judge a mic recording (float32 mono): digital silence, too quiet, stalled, or fine."""
    got = int(samples.shape[0])
    if got < expected_frames // 2:
        detail = f"got {got / rate:.2f} s of audio in {expected_frames / rate:.2f} s"
        return Check("microphone", "fail", detail,
                     "the device stalls: pick another --input-device or restart the sound server",
                     ExitStatus.AUDIO)
    peak = float(np.max(np.abs(samples))) if got else 0.0
    level = level_db(samples)
    if peak == 0.0:
        return Check("microphone", "fail", "the microphone delivers digital silence (all zeros)",
                     "likely causes: the input is muted (pavucontrol / alsamixer / system settings), the "
                     "wrong device (--input-device, see `voicecli devices`), or on macOS the terminal app "
                     "has no microphone permission (System Settings > Privacy & Security > Microphone)",
                     ExitStatus.AUDIO)
    if level < QUIET_DB:
        detail = f"very quiet: {level:.0f} dBFS RMS, peak {20 * np.log10(peak):.0f} dBFS"
        return Check("microphone", "warn", detail,
                     "say something during the test; if you did, the input gain is low, the source is muted "
                     "or it is the wrong device")
    shown = "silent" if level <= SILENT_DB else f"{level:.0f} dBFS RMS"
    return Check("microphone", "ok", f"recorded {got / rate:.1f} s, level {shown}, peak "
                                     f"{20 * np.log10(peak):.0f} dBFS")


def _record(sd: Any, settings: devices.StreamSettings, seconds: float) -> np.ndarray:
    """Record ``seconds`` of mono float32 (less if the device stalls; gives up 2 s late)."""
    frames = int(settings.rate * seconds)
    buf = np.zeros(frames, dtype=np.float32)
    pos = [0]

    def callback(indata: np.ndarray, n: int, _time: Any, _status: Any) -> None:
        k = min(n, frames - pos[0])
        buf[pos[0]:pos[0] + k] = indata[:k].mean(axis=1)
        pos[0] += k

    with sd.InputStream(device=settings.device.index, samplerate=settings.rate, channels=settings.channels,
                        dtype="float32", callback=callback):
        deadline = time.monotonic() + seconds + 2.0
        while pos[0] < frames and time.monotonic() < deadline:
            time.sleep(0.05)
    return buf[:pos[0]]


def audio_checks(input_device: str | None, output_device: str | None, seconds: float) -> list[Check]:
    """The PortAudio, device, microphone and speaker checks (stops at the first blocking failure)."""
    checks: list[Check] = []
    try:
        sd = devices.backend()
    except VoicecliError as exc:
        return [Check("portaudio", "fail", exc.message, exc.hint or "", exc.exit_code)]
    checks.append(Check("portaudio", "ok", sd.get_portaudio_version()[1]))
    try:
        found = devices.list_devices(sd)
    except VoicecliError as exc:
        return checks + [Check("devices", "fail", exc.message, exc.hint or "", exc.exit_code)]
    n_in = sum(d.has("input") for d in found)
    n_out = sum(d.has("output") for d in found)
    checks.append(Check("devices", "ok" if n_in and n_out else "fail", f"{n_in} input, {n_out} output",
                        "" if n_in and n_out else "no sound devices: is PulseAudio/PipeWire running for this "
                                                  "user? is a sound card present?",
                        ExitStatus.OK if n_in and n_out else ExitStatus.AUDIO))
    if not (n_in and n_out):
        return checks
    chosen: dict[str, devices.StreamSettings] = {}
    for kind, spec, dtype in (("input", input_device, "float32"), ("output", output_device, "int16")):
        try:
            st = devices.resolve_stream(spec, kind, sd, dtype)
        except VoicecliError as exc:
            checks.append(Check(f"{kind} device", "fail", exc.message, exc.hint or "", exc.exit_code))
            continue
        chosen[kind] = st
        direct = devices.probe_for(sd, st.device, kind, dtype)(RATE, 1)
        checks.append(Check(f"{kind} device", "ok",
                            f"{st.device.index} {st.device.name!r} ({st.device.hostapi}): native "
                            f"{st.device.default_samplerate:.0f} Hz; chat opens {st.rate} Hz "
                            f"{st.channels} ch and resamples; {RATE // 1000} kHz "
                            f"{'also opens' if direct else 'does not open'} directly"))
    if "input" in chosen:
        checks.append(_mic_check(sd, chosen["input"], seconds))
    if "output" in chosen:
        checks.append(_speaker_check(sd, chosen["output"]))
    return checks


def _mic_check(sd: Any, st: devices.StreamSettings, seconds: float) -> Check:
    try:
        samples = _record(sd, st, seconds)
    except Exception as exc:
        return Check("microphone", "fail", f"cannot record: {exc}", devices.DEVICES_HINT, ExitStatus.AUDIO)
    return judge_recording(samples, int(st.rate * seconds), st.rate)


def _speaker_check(sd: Any, st: devices.StreamSettings) -> Check:
    try:
        with sd.OutputStream(device=st.device.index, samplerate=st.rate, channels=st.channels,
                             dtype="int16", latency="low") as stream:
            stream.write(np.zeros((st.rate // 5, st.channels), dtype=np.int16))
            latency = float(stream.latency)
    except Exception as exc:
        return Check("speaker", "fail", f"cannot play: {exc}", devices.DEVICES_HINT, ExitStatus.AUDIO)
    return Check("speaker", "ok", f"plays at {st.rate} Hz, output latency {latency * 1000:.0f} ms")


async def server_check(settings: Any) -> Check:
    """Open a session (``session.update`` -> ``session.ready``) and end it."""
    import io

    from voicecli.app.conversation import Conversation
    from voicecli.ui.output import JsonOutput
    sink = io.StringIO()
    conv = Conversation(settings, JsonOutput(stdout=sink, stderr=sink))
    conv.settings.reconnect = False
    started = time.monotonic()
    try:
        await conv.open()
        ready_ms = (time.monotonic() - started) * 1000
        await conv.close()
    except VoicecliError as exc:
        await conv.close()
        return Check("server", "fail", exc.message, exc.hint or "", exc.exit_code)
    shown = redact_url(settings.url.split("?")[0])
    return Check("server", "ok", f"{shown} reachable, key accepted, session ready in {ready_ms:.0f} ms")


def exit_code(checks: list[Check]) -> int:
    for check in checks:
        if check.status == "fail":
            return check.exit_code or ExitStatus.AUDIO
    return ExitStatus.OK


async def run_server_check(settings: Any) -> Check:
    try:
        return await asyncio.wait_for(server_check(settings), 20)
    except TimeoutError:
        return Check("server", "fail", "no session.ready within 20 s", "check the URL", ExitStatus.TIMEOUT)
