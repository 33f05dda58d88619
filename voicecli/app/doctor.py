"""``voicecli doctor``: a self-test of everything a live chat needs (anchors.md section 4 item 1).

Checks, in order: PortAudio loads; devices exist; the input and output devices chat would use, the
rate and channels it would open them with, and whether 24 kHz opens directly; a short microphone
recording judged for silence with the likely cause; the speaker plays an audible test tone (a 0.5 s
rising sweep at -12 dBFS) while the microphone records, and if the microphone hears it, the echo
path's delay and level are measured (:func:`measure_echo`) and ``--echo aec``, ``half`` or
headphones recommended; and, when a server is given (``--url``/``--local`` with a key or token),
that it is reachable and accepts the key.

Each check is a :class:`Check` (``ok``/``warn``/``fail``, one line, a hint). The exit status is
the code of the first failed check: 6 for audio, 3 for a refused key, 4 for an unreachable server,
5 for a server error, 7 for a timeout; 0 when nothing failed (warnings included).
"""

from __future__ import annotations

import asyncio
import contextlib
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
TONE_S = 0.5         # the speaker test tone: a sweep (audible, and its echo has one clear lag)
TONE_PEAK = 0.25     # -12 dBFS
TONE_LEAD_S = 0.2    # silence before the tone (the streams settle) and ...
TONE_TAIL_S = 0.5    # ... after it (an echo up to this late is still caught)
ECHO_MIN_CORR = 0.5  # the recording at the best lag is mostly the tone: the mic hears the speaker
LOUD_ECHO_DB = -6.0  # an echo this strong defeats cancellation: headphones or half duplex


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


def speaker_tone(rate: int, seconds: float = TONE_S, f0: float = 400.0, f1: float = 2400.0) -> np.ndarray:
    """The speaker test tone at ``rate``: a linear sweep ``f0`` -> ``f1`` with 10 ms fades (float32)."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t * t))
    fade = min(len(x) // 2, rate // 100)
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[len(x) - fade:] *= ramp[::-1]
    return (TONE_PEAK * x).astype(np.float32)


@dataclass(frozen=True)
class Echo:
    heard: bool
    delay_ms: float      # tone at the DAC -> its echo at the ADC
    level_db: float      # echo level relative to what was played
    match: float         # normalised correlation at the best lag (1.0: the recording is the tone)


def measure_echo(recorded: np.ndarray, recorded_at: float, tone: np.ndarray, played_at: float,
                 rate: int) -> Echo:
    """Find ``tone`` (played with its first sample at the DAC at ``played_at``) in ``recorded`` (mic
    samples at the same ``rate``, the first at the ADC at ``recorded_at``, same clock): the lag of the
    best cross-correlation gives the delay, the energy there the level (pure)."""
    if len(recorded) < len(tone):
        return Echo(False, 0.0, SILENT_DB, 0.0)
    n = len(recorded) + len(tone)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(tone, size)), size)
    corr = corr[: len(recorded) - len(tone) + 1]
    lag = int(np.argmax(np.abs(corr)))
    window = recorded[lag: lag + len(tone)].astype(np.float64)
    ref = tone.astype(np.float64)
    dot = float(np.dot(window, ref))
    match = abs(dot) / (float(np.linalg.norm(window) * np.linalg.norm(ref)) + 1e-12)
    # level: the energy at that lag against the tone's (a real echo path smears the tone's phase,
    # which would pull a least-squares gain down by the match)
    ratio = float(np.linalg.norm(window)) / (float(np.linalg.norm(ref)) + 1e-12)
    level = max(SILENT_DB, 20.0 * float(np.log10(ratio))) if ratio > 0 else SILENT_DB
    delay_ms = (recorded_at + lag / rate - played_at) * 1000.0
    return Echo(match >= ECHO_MIN_CORR and level > SILENT_DB, delay_ms, level, match)


def judge_echo(echo: Echo, aec_installed: bool) -> Check:
    """The recommendation for ``--echo`` from a measured echo path."""
    if not echo.heard:
        return Check("echo", "ok", "the microphone does not hear the speaker: full duplex (--echo off) works "
                                   "(headphones, or a quiet speaker)")
    detail = (f"the microphone hears the speaker {echo.delay_ms:.0f} ms later at {echo.level_db:+.0f} dB "
              f"(match {echo.match:.2f})")
    if echo.level_db >= LOUD_ECHO_DB:
        return Check("echo", "warn", detail + ": too loud to cancel",
                     "use headphones, or --echo half (the mic closes while the agent speaks)")
    return Check("echo", "warn", detail,
                 "use --echo aec (echo cancellation" + ("" if aec_installed else
                                                         ": pip install 'voicecli[aec]'")
                 + "), --echo half, or headphones; with --echo off the agent will interrupt itself")


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
                            f"{st.channels} ch" + (" and resamples" if st.rate != RATE else "")
                            + f"; {RATE // 1000} kHz "
                            f"{'also opens' if direct else 'does not open'} directly"))
    if "input" in chosen:
        checks.append(_mic_check(sd, chosen["input"], seconds))
    if "output" in chosen:
        checks += _speaker_check(sd, chosen["output"], chosen.get("input"))
    return checks


def _mic_check(sd: Any, st: devices.StreamSettings, seconds: float) -> Check:
    try:
        samples = _record(sd, st, seconds)
    except Exception as exc:
        return Check("microphone", "fail", f"cannot record: {exc}", devices.DEVICES_HINT, ExitStatus.AUDIO)
    return judge_recording(samples, int(st.rate * seconds), st.rate)


def _speaker_check(sd: Any, st: devices.StreamSettings,
                   mic: devices.StreamSettings | None = None) -> list[Check]:
    """Play the test tone; with ``mic``, record meanwhile and judge the echo path."""
    tone = speaker_tone(st.rate)
    lead = int(st.rate * TONE_LEAD_S)
    tail = np.zeros(int(st.rate * TONE_TAIL_S), np.float32)
    signal = np.concatenate([np.zeros(lead, np.float32), tone, tail])
    pcm = np.rint(signal * 32767).astype(np.int16)
    pos = [0]
    played_at: list[float] = []
    recorded: list[np.ndarray] = []
    recorded_at: list[float] = []

    def out_cb(outdata: np.ndarray, n: int, t: Any, _status: Any) -> None:
        k = max(0, min(n, len(pcm) - pos[0]))
        outdata[:k] = pcm[pos[0]:pos[0] + k, None]
        outdata[k:] = 0
        if not played_at and pos[0] <= lead < pos[0] + n:
            dac = devices._stream_time(t, "outputBufferDacTime", 0.0)
            played_at.append(dac + (lead - pos[0]) / st.rate)
        pos[0] += n

    def in_cb(indata: np.ndarray, n: int, t: Any, _status: Any) -> None:
        if not recorded_at:
            recorded_at.append(devices._stream_time(t, "inputBufferAdcTime", 0.0))
        recorded.append(indata.mean(axis=1).astype(np.float32))

    try:
        with contextlib.ExitStack() as stack:
            if mic is not None:
                try:
                    stack.enter_context(sd.InputStream(device=mic.device.index, samplerate=mic.rate,
                                                       channels=mic.channels, dtype="float32", latency="low",
                                                       callback=in_cb))
                except Exception:
                    mic = None       # the microphone check already said why
            stream = stack.enter_context(sd.OutputStream(device=st.device.index, samplerate=st.rate,
                                                         channels=st.channels, dtype="int16", latency="low",
                                                         callback=out_cb))
            latency = float(stream.latency)
            deadline = time.monotonic() + len(pcm) / st.rate + 2.0
            while pos[0] < len(pcm) + int(st.rate * latency) and time.monotonic() < deadline:
                time.sleep(0.02)
    except Exception as exc:
        return [Check("speaker", "fail", f"cannot play: {exc}", devices.DEVICES_HINT, ExitStatus.AUDIO)]
    checks = [Check("speaker", "ok", f"played a {TONE_S:g} s test tone at {st.rate} Hz (you should have "
                                     f"heard a rising sweep), output latency {latency * 1000:.0f} ms")]
    if mic is not None and recorded and played_at:
        from voicecli.audio import aec_support as aec
        ref = speaker_tone(mic.rate)
        echo = measure_echo(np.concatenate(recorded), recorded_at[0], ref, played_at[0], mic.rate)
        checks.append(judge_echo(echo, aec.available()))
    return checks


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
