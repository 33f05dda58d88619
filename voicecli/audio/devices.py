"""Audio devices through sounddevice/PortAudio: listing, selection, safe stream settings, and the
callback streams of ``voicecli chat`` (design.md principles 5 and 7).

sounddevice is imported lazily (:func:`backend`): on Linux its wheel has no PortAudio inside and
``import sounddevice`` raises ``OSError`` when ``libportaudio2`` is missing (audio-lab.md section 1);
that becomes an :class:`~voicecli.errors.AudioDeviceError` (exit 6) with the install hint.

Selection (:func:`select_device`) and settings (:func:`choose_settings`) are pure functions over
:class:`DeviceInfo` values and a ``supports(rate, channels)`` probe, so they are unit-tested on plain
device dicts. A stream is only ever opened at a rate the device says it supports: its default rate
first (never an assumed 24 kHz), then other common rates; a sound-server PCM (``pulse``, which
converts every stream to its device's rate itself) is asked for the wire rate first.

Callback contract (principle 5): the input callback copies the block and hands it to the event loop
with ``loop.call_soon_threadsafe``; the output callback only fills ``outdata`` from a
:class:`~voicecli.audio.jitter.JitterBuffer` (plus a block counter for the stall watchdog). Neither
blocks, logs or raises: an exception inside is recorded and ends the stream, and the owner learns
about it through ``on_error`` (called on the loop), as it does for a stream PortAudio finished on
its own (device unplugged, sound server gone).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voicecli.audio import soundserver
from voicecli.errors import AudioDeviceError
from voicecli.protocol.constants import RATE as WIRE_RATE

PORTAUDIO_HINT = ("install PortAudio: apt-get install libportaudio2 (Debian/Ubuntu), "
                  "brew install portaudio (macOS)")
DEVICES_HINT = "run `voicecli devices` to see them"
ALSA_ENV = "VOICECLI_ALSA"          # "system": keep libasound's own configuration (see lean_alsa)
SOUND_SERVER_ALSA_CONF = Path(__file__).with_name("alsa-sound-server.conf")
LEAN_ALSA_HINT = f"only the sound server's devices are listed ({ALSA_ENV}=system lists ALSA's own too)"
FALLBACK_RATES = (48000, 44100, 24000, 32000, 16000, 96000, 22050, 8000)


_alsa_handler: Any = None     # the installed no-op handler (kept alive: ALSA holds a C pointer to it)


def silence_alsa() -> bool:
    """Route ALSA's own messages (``ALSA lib pcm.c:...: underrun occurred``, which libasound writes to
    the C-level stderr and which would garble the live view) to a no-op handler. The device's
    under/overflows are still counted from the callbacks' status flags. True if installed; a machine
    without libasound (macOS, Windows) has nothing to silence."""
    global _alsa_handler
    if _alsa_handler is not None:
        return True
    import ctypes

    from voicecli.audio import libs
    name = libs.find("asound") or "libasound.so.2"
    try:
        lib = ctypes.CDLL(name)
        handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.c_char_p)
        handler = handler_type(lambda *_: None)
        lib.snd_lib_error_set_handler(handler)
    except (OSError, AttributeError):
        return False
    _alsa_handler = handler
    return True


def quiet_c_stderr() -> Callable[[], None]:
    """Point C stdio's ``stderr`` (the ``FILE *`` PortAudio's own messages go to, e.g. "Expression
    '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c'" when a device goes away under a stream) at
    /dev/null, so they do not garble the live view; Python's own ``sys.stderr`` writes to file
    descriptor 2 itself and is untouched. Returns the function that restores it (a no-op where
    there is no C library to do this with)."""
    import ctypes

    from voicecli.audio import libs
    try:
        libc = ctypes.CDLL(libs.find("c") or "libc.so.6")
        slot = ctypes.c_void_p.in_dll(libc, "stderr")
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fflush.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError, ValueError):
        return lambda: None
    null = libc.fopen(os.devnull.encode(), b"w")
    if not null:
        return lambda: None
    old = slot.value
    libc.fflush(old)
    slot.value = null

    def restore() -> None:
        libc.fflush(null)
        slot.value = old          # (the /dev/null FILE stays open: a thread may still hold it)

    return restore


_lean_alsa: bool | None = None      # decided once, before PortAudio first loads


def lean_alsa() -> bool:
    """On a running PulseAudio/PipeWire server, point libasound at :data:`SOUND_SERVER_ALSA_CONF`
    (``pulse`` and ``default`` through the server) before PortAudio loads. PortAudio's device scan
    opens every PCM the system configuration defines, and each loads its plugin's libraries
    (a52 -> libavcodec, jack, lavrate, ...): ~12 MiB of the process and half its start-up, for
    devices that cannot be used while the server holds the hardware anyway (the server's own
    sources and sinks are picked by name through it: :mod:`voicecli.audio.soundserver`).
    Left alone: ``VOICECLI_ALSA=system``, an ``ALSA_CONFIG_PATH`` already set, no server socket that
    takes a connection (a TCP ``PULSE_SERVER`` included), not Linux. True if it applies."""
    global _lean_alsa
    if _lean_alsa is not None:
        return _lean_alsa
    _lean_alsa = False
    if sys.platform != "linux" or "sounddevice" in sys.modules or os.environ.get("ALSA_CONFIG_PATH"):
        return False
    if os.environ.get(ALSA_ENV, "").strip().lower() == "system" or not SOUND_SERVER_ALSA_CONF.is_file():
        return False
    path = soundserver.socket_path()
    if path is None or soundserver.refuses(path):
        return False
    os.environ["ALSA_CONFIG_PATH"] = str(SOUND_SERVER_ALSA_CONF)
    _lean_alsa = True
    return True


def backend() -> Any:
    """The ``sounddevice`` module, or AudioDeviceError (exit 6) when PortAudio cannot be loaded.
    libasound's configuration is chosen first (:func:`lean_alsa`) and its messages silenced
    (:func:`silence_alsa`: PortAudio prints some at load time)."""
    lean_alsa()
    silence_alsa()
    from voicecli.audio import libs
    try:
        with libs.sonames_first():       # sounddevice looks PortAudio up while it is imported
            import sounddevice
    except OSError as exc:
        raise AudioDeviceError(f"PortAudio is not available ({exc})", PORTAUDIO_HINT) from None
    return sounddevice


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False
    sound_server: bool = False   # a PCM of the sound server (PulseAudio/PipeWire), which resamples itself

    def has(self, kind: str) -> bool:
        """True if the device has channels of ``kind`` (``input`` or ``output``)."""
        return (self.max_input_channels if kind == "input" else self.max_output_channels) > 0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "hostapi": self.hostapi,
                "max_input_channels": self.max_input_channels,
                "max_output_channels": self.max_output_channels,
                "default_samplerate": self.default_samplerate,
                "default_input": self.default_input, "default_output": self.default_output}


def devices_from_dicts(devices: Sequence[dict[str, Any]], hostapis: Sequence[dict[str, Any]],
                       default: Sequence[int]) -> list[DeviceInfo]:
    """Build :class:`DeviceInfo` values from ``sd.query_devices()``-style dicts (pure).

    ``default`` is ``[input_index, output_index]`` (``-1`` = none), like ``sd.default.device``."""
    din, dout = (list(default) + [-1, -1])[:2]
    server = soundserver.running()
    out = []
    for pos, dev in enumerate(devices):
        index = int(dev.get("index", pos))
        api_index = int(dev.get("hostapi", 0))
        api = str(hostapis[api_index].get("name", "?")) if 0 <= api_index < len(hostapis) else "?"
        out.append(DeviceInfo(index, str(dev.get("name", f"device {index}")), api,
                              int(dev.get("max_input_channels", 0)), int(dev.get("max_output_channels", 0)),
                              float(dev.get("default_samplerate", 0.0) or 0.0),
                              index == din, index == dout,
                              _is_server_pcm(str(dev.get("name", "")), api, server)))
    return out


def _is_server_pcm(name: str, hostapi: str, server_running: bool) -> bool:
    """ALSA's ``pulse``/``pipewire`` PCMs always go to the sound server; ``default`` does when one runs."""
    if "alsa" not in hostapi.lower():
        return False
    low = name.lower()
    return low in ("pulse", "pipewire") or (low == "default" and server_running)


def list_devices(sd: Any | None = None) -> list[DeviceInfo]:
    """Every PortAudio device (an empty list on a machine without sound devices)."""
    sd = sd or backend()
    try:
        default = list(sd.default.device)
        return devices_from_dicts(list(sd.query_devices()), list(sd.query_hostapis()), default)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}", PORTAUDIO_HINT) from None


def _describe(devices: Sequence[DeviceInfo], limit: int = 6) -> str:
    shown = ", ".join(f"{d.index} {d.name!r}" for d in devices[:limit])
    return shown + (f" and {len(devices) - limit} more" if len(devices) > limit else "")


def _devices_hint() -> str:
    return DEVICES_HINT + (f"; {LEAN_ALSA_HINT}" if _lean_alsa else "")


def select_device(devices: Sequence[DeviceInfo], spec: str | int | None, kind: str) -> DeviceInfo:
    """The ``kind`` (``input``/``output``) device named by ``spec``.

    ``None`` or ``""`` = the default device (or, with no default, the only/first device of that kind);
    an integer (or digit string) = that device index; anything else = a case-insensitive substring
    of the name, where an exact name match wins over substring matches. Raises AudioDeviceError
    listing the candidates when nothing or more than one device matches."""
    usable = [d for d in devices if d.has(kind)]
    if not usable:
        raise AudioDeviceError(f"no {kind} device found", "connect one, or check that the sound server runs "
                                                          "(PulseAudio/PipeWire) and this user may use it")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        for dev in usable:
            if dev.default_input if kind == "input" else dev.default_output:
                return dev
        return usable[0]
    text = str(spec).strip()
    if isinstance(spec, int) or text.lstrip("-").isdigit():
        index = int(text)
        for dev in devices:
            if dev.index == index:
                if not dev.has(kind):
                    raise AudioDeviceError(f"device {index} ({dev.name!r}) has no {kind} channels",
                                           f"{kind} devices: {_describe(usable)}")
                return dev
        raise AudioDeviceError(f"there is no audio device {index}", f"{kind} devices: {_describe(usable)}; "
                                                                    f"{_devices_hint()}")
    needle = text.lower()
    exact = [d for d in usable if d.name.lower() == needle]
    matches = exact or [d for d in usable if needle in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioDeviceError(f"no {kind} device matches {text!r}", f"{kind} devices: {_describe(usable)}; "
                                                                    f"{_devices_hint()}")
    raise AudioDeviceError(f"{len(matches)} {kind} devices match {text!r}: {_describe(matches)}",
                           "use the index or a longer part of the name")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    device: DeviceInfo
    kind: str
    rate: int
    channels: int


Probe = Callable[[int, int], bool]   # (rate, channels) -> does the device accept it?


def choose_settings(device: DeviceInfo, kind: str, supports: Probe,
                    prefer_rate: int | None = None) -> StreamSettings:
    """Pick a rate and channel count the device accepts: ``prefer_rate`` (a reopened stream keeps
    the rate it had, so the pipelines behind it need not change), its default rate, then
    :data:`FALLBACK_RATES`; mono if accepted, else stereo, else the device's own count (the
    caller downmixes/duplicates). Raises AudioDeviceError when nothing is accepted.

    A sound-server PCM (``device.sound_server``) is asked for the wire rate (24 kHz) first: the
    server converts every stream to its device's rate anyway (in C, in its own process), so a
    stream at its default rate would be resampled twice, once there and once in Python here (the
    live resampler is most of the live path's CPU, issue 10)."""
    max_ch = device.max_input_channels if kind == "input" else device.max_output_channels
    channel_options = [c for c in dict.fromkeys((1, 2, max_ch)) if 1 <= c <= max_ch]
    rates = [prefer_rate] if prefer_rate else []
    rates += [WIRE_RATE] if device.sound_server else []
    rates += [int(device.default_samplerate)] if device.default_samplerate > 0 else []
    rates = list(dict.fromkeys(rates + list(FALLBACK_RATES)))
    for rate in rates:
        for channels in channel_options:
            if supports(rate, channels):
                return StreamSettings(device, kind, rate, channels)
    raise AudioDeviceError(f"{kind} device {device.index} ({device.name!r}) accepts none of the usual "
                           f"sample rates", "pick another device; " + DEVICES_HINT)


def probe_for(sd: Any, device: DeviceInfo, kind: str, dtype: str) -> Probe:
    """A :data:`Probe` backed by ``sd.check_input_settings``/``check_output_settings``."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings

    def supports(rate: int, channels: int) -> bool:
        try:
            check(device=device.index, channels=channels, dtype=dtype, samplerate=rate)
        except Exception:  # PortAudioError or ValueError: not supported
            return False
        return True

    return supports


def select_with_server(devices: Sequence[DeviceInfo], spec: str | int | None, kind: str,
                       server: Callable[[], Sequence[soundserver.ServerDevice]]) -> DeviceInfo:
    """:func:`select_device`, then, for a name no PortAudio device has, the sound server's sources
    or sinks (``server()``, asked only then) by description or name with the same rules. A server
    device is opened through PortAudio's ``pulse`` (else ``default``) PCM, routed to it
    (:func:`~voicecli.audio.soundserver.route`); the returned DeviceInfo carries its description
    and native rate."""
    try:
        return select_device(devices, spec, kind)
    except AudioDeviceError as exc:
        text = "" if spec is None else str(spec).strip()
        if not text or text.lstrip("-").isdigit() or " devices match " in exc.message:
            raise
        listed = list(server())
        found = soundserver.match(listed, text, kind)
        names = [d.description for d in listed if d.kind == kind]
        if not found:
            if names:
                exc.hint = (exc.hint or "").replace(f"; {_devices_hint()}", "") + \
                    "; sound server: " + ", ".join(repr(n) for n in names[:6]) + \
                    (f" and {len(names) - 6} more" if len(names) > 6 else "") + f"; {_devices_hint()}"
            raise
        if len(found) > 1:
            raise AudioDeviceError(f"{len(found)} sound server {kind}s match {text!r}: "
                                   + ", ".join(repr(d.description) for d in found[:6]),
                                   "use a longer part of the description, or its name "
                                   f"({', '.join(d.name for d in found[:6])})") from None
        via = [d for d in devices if d.has(kind) and d.name == "pulse"] or \
              [d for d in devices if d.has(kind) and d.name == "default"]
        if not via:
            raise AudioDeviceError(f"{found[0].description!r} is a sound server {kind}, but PortAudio has "
                                   "no 'pulse' device to reach it", "install libasound2-plugins") from None
        soundserver.route(found[0])
        return replace(via[0], name=found[0].description,
                       default_samplerate=float(found[0].rate or via[0].default_samplerate))


def resolve_stream(spec: str | int | None, kind: str, sd: Any | None = None,
                   dtype: str = "float32", prefer_rate: int | None = None) -> StreamSettings:
    """Select the device for ``spec`` (:func:`select_with_server`) and the settings to open it with
    (:func:`choose_settings`)."""
    sd = sd or backend()
    device = select_with_server(list_devices(sd), spec, kind, soundserver.list_server_devices)
    return choose_settings(device, kind, probe_for(sd, device, kind, dtype), prefer_rate)


def reinitialize(sd: Any) -> None:
    """Make PortAudio enumerate the devices afresh: it caches the list (and the defaults) from
    ``Pa_Initialize``, so a device plugged in, or one that came back, is only seen after
    ``Pa_Terminate``/``Pa_Initialize`` (sounddevice's ``_terminate``/``_initialize``; this stops
    every open stream, so close them first). Raises AudioDeviceError if PortAudio cannot start."""
    try:
        sd._terminate()
    except Exception:  # not initialised (a failed earlier attempt): initialise below
        pass
    try:
        sd._initialize()
    except Exception as exc:
        raise AudioDeviceError(f"PortAudio cannot start again: {_portaudio_message(exc)}",
                               PORTAUDIO_HINT) from None


def _stream_time(time_info: Any, field: str, now: float) -> float:
    """A PortAudio time-info field (``inputBufferAdcTime``/``outputBufferDacTime``) on PortAudio's own
    clock, which both streams of one host API share. Read raw, not mapped to ``time.monotonic()``
    in the callback: the callback may wait for the GIL, and that wait would show up as jitter in the
    echo canceller's alignment. 0 (not provided) falls back to ``currentTime``, then to ``now``."""
    for name in (field, "currentTime"):
        try:
            t = float(getattr(time_info, name))
        except (AttributeError, TypeError, ValueError):
            continue
        if t > 0.0:
            return t
    return now


def _portaudio_message(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    return text.strip() or type(exc).__name__


class _StreamBase:
    """Owns one sounddevice stream; reports errors on the loop via ``on_error(message)``."""

    def __init__(self, settings: StreamSettings, loop: asyncio.AbstractEventLoop,
                 on_error: Callable[[str], None]) -> None:
        self.settings = settings
        self.loop = loop
        self.on_error = on_error
        self.stream: Any = None
        self.blocks = 0                  # callbacks so far (the watchdog reads it)
        self.status_flags = 0            # callbacks that reported an over/underflow
        self.underflows = 0              # the device's own flags (PortAudio callback status)
        self.overflows = 0
        self.failure: str | None = None  # set from the callback thread; reported on the loop
        self._closing = False
        self._reported = False
        self.paused = False              # stopped on purpose (PlaybackStream.pause): not a failure

    @property
    def latency_s(self) -> float:
        """PortAudio's latency estimate for this stream (0.0 before it is open)."""
        lat = getattr(self.stream, "latency", 0.0) if self.stream is not None else 0.0
        return float(lat if isinstance(lat, (int, float)) else lat[0])

    def _open(self, factory: Any, **kwargs: Any) -> None:
        s = self.settings
        try:
            self.stream = factory(device=s.device.index, samplerate=s.rate, channels=s.channels,
                                  finished_callback=self._finished, **kwargs)
            self.stream.start()
        except Exception as exc:
            self.stream = None
            raise AudioDeviceError(f"cannot open {s.kind} device {s.device.index} ({s.device.name!r}) "
                                   f"at {s.rate} Hz: {_portaudio_message(exc)}",
                                   "is another program holding it? pick one with --"
                                   f"{s.kind}-device; {DEVICES_HINT}") from None

    def _finished(self) -> None:  # PortAudio thread: the stream became inactive
        if not self._closing and not self.paused:
            self.loop.call_soon_threadsafe(self._report, self.failure or "the stream stopped by itself")

    def _count_status(self, status: Any) -> None:
        """Callback thread: count the device's under/overflow flags (cheap attribute reads)."""
        self.status_flags += 1
        if getattr(status, "input_underflow", False) or getattr(status, "output_underflow", False):
            self.underflows += 1
        if getattr(status, "input_overflow", False) or getattr(status, "output_overflow", False):
            self.overflows += 1

    def _fail_from_callback(self, exc: BaseException) -> None:
        self.failure = f"{type(exc).__name__}: {exc}"

    def _report(self, why: str) -> None:
        if self._closing or self._reported:
            return
        self._reported = True
        s = self.settings
        self.on_error(f"the {s.kind} device {s.device.name!r} stopped working ({why})")

    def check_alive(self) -> None:
        """Called by the owner's watchdog: report a stream PortAudio no longer runs."""
        if self.stream is not None and not self._closing and not self.paused and not self.stream.active:
            self._report(self.failure or "PortAudio stopped the stream")

    def close(self) -> None:
        """Stop and close (abort: queued audio is dropped, nothing drains). Idempotent."""
        self._closing = True
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception:
                pass


QUIET_FLOOR = 256            # |int16| of a mic sample that counts as sound (~-42 dBFS: see _has_sound)
QUIET_HANGOVER_S = 0.5       # a mic that had sound this recently delivers every chunk
QUIET_BATCH_S = 0.1          # how much a quiet mic's delivery holds (input.audio takes 20-100 ms chunks)
_HIGH_BYTE = 1 if sys.byteorder == "little" else 0
_QUIET_HIGH = b"\x00\xff"   # the high byte of a PCM16 sample in [-256, 255]


def _has_sound(block: bytes) -> bool:
    """True if the PCM16 ``block`` (native-endian int16 samples: what an int16 stream delivers) has
    a sample outside [-:data:`QUIET_FLOOR`, QUIET_FLOOR - 1], looking at every 8th sample (speech
    is loud for far longer than 8 samples): a sample is in that range exactly when its high byte is
    0x00 or 0xFF, so two C calls on the high bytes decide, without an int per sample. In the PortAudio
    callback, 50 times a second: ~34 us here where max/min over a cast memoryview took ~77 us
    (cold caches after each 20 ms sleep; issue 10, Cost)."""
    return bool(block[_HIGH_BYTE::16].translate(None, _QUIET_HIGH))


def quiet_frames_for(wake_frames: int, rate: int) -> int:
    """The ``quiet_frames`` of :class:`CaptureStream` for chunks of ``wake_frames`` at ``rate``: the
    whole chunks that make :data:`QUIET_BATCH_S` (0 when one chunk is that long already)."""
    if wake_frames <= 0:
        return 0
    chunks = int(QUIET_BATCH_S * rate) // wake_frames
    return chunks * wake_frames if chunks > 1 else 0


class CaptureStream(_StreamBase):
    """A raw int16 callback InputStream (interleaved). Blocks are copied as PCM16 ``bytes`` and
    delivered on the loop as ``on_blocks(blocks, captured_at, adc_time)``: a list of blocks, oldest
    first, the ``time.monotonic()`` when PortAudio delivered the last one, and the time the first
    one's first frame was at the ADC (PortAudio's clock, from its time info; the output stream gives
    the echo canceller's ring DAC times on the same clock). Raw streams, not numpy ones: sounddevice
    builds two numpy arrays per callback otherwise, and a mono 24 kHz int16 stream is the wire format
    itself, so the chat's live path needs no numpy at all (issue 10).

    ``wake_frames``: the loop is woken only when the frames captured so far cross a multiple of it
    (the caller passes one ``input.audio`` chunk's worth at the device rate), so the loop wakes once
    per chunk however small the device blocks are: small blocks keep capture latency low, batching
    keeps CPU low. ``wake_frames=0`` wakes for every block.

    ``quiet_frames`` (a multiple of ``wake_frames``; 0: off): while the mic is quiet — no block
    with a sample at or above :data:`QUIET_FLOOR` for :data:`QUIET_HANGOVER_S` — and the loop has not
    set :attr:`prompt` (the server is in a user turn), whole chunks are held and delivered that many
    frames at a time (~100 ms) instead of one by one. Each delivery costs the loop a wake-up and the
    socket a send (~0.2 ms of CPU each on the 2-core VMs here), and a quiet mic is most of a
    conversation. A block with sound is delivered at once, with what was held before it, so a
    speech onset leaves as fast as without batching."""

    def __init__(self, settings: StreamSettings, loop: asyncio.AbstractEventLoop,
                 on_blocks: Callable[[list[bytes], float, float | None], None],
                 on_error: Callable[[str], None],
                 blocksize: int, wake_frames: int = 0, sd: Any | None = None, quiet_frames: int = 0) -> None:
        super().__init__(settings, loop, on_error)
        self.on_blocks = on_blocks
        self.wake_frames = max(0, wake_frames)
        self.quiet_frames = max(0, quiet_frames)
        self.prompt = False               # set by the loop: deliver every chunk (the server hears a turn)
        self._sound_until = -1.0          # monotonic time until which the mic counts as having sound
        self._delivered_frames = 0
        self._batch: list[bytes] = []
        self._batch_adc: float | None = None
        self._frames = 0
        self._next_wake = self.wake_frames
        self._sd = sd or backend()
        self._open(self._sd.RawInputStream, dtype="int16", blocksize=blocksize, latency="low",
                   callback=self._callback)

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        try:
            self.blocks += 1
            if status:
                self._count_status(status)
            now = time.monotonic()
            if self._batch_adc is None:     # the ADC time of this batch's first frame
                self._batch_adc = _stream_time(time_info, "inputBufferAdcTime", now)
            block = bytes(indata)
            self._batch.append(block)
            self._frames += frames
            if self.quiet_frames and _has_sound(block):
                self._sound_until = now + QUIET_HANGOVER_S
            if self._frames < self._next_wake:
                return
            while self._next_wake <= self._frames:
                self._next_wake += self.wake_frames or frames
            if self.quiet_frames and not self.prompt and now >= self._sound_until \
                    and self._frames - self._delivered_frames < self.quiet_frames:
                return
            self._delivered_frames = self._frames
            batch, self._batch = self._batch, []
            adc, self._batch_adc = self._batch_adc, None
            self.loop.call_soon_threadsafe(self.on_blocks, batch, now, adc)
        except RuntimeError:   # the loop is closed: we are shutting down
            raise self._sd.CallbackAbort from None
        except Exception as exc:
            self._fail_from_callback(exc)
            raise self._sd.CallbackAbort from None


class PlaybackStream(_StreamBase):
    """A raw int16 callback OutputStream fed only by ``buffer.pull_into``: a mono stream's buffer is
    handed over as an int16 ``memoryview`` (no numpy), a multichannel one as a ``(frames,
    channels)`` numpy view (the buffer copies mono to every channel). With ``ring`` (a
    :class:`~voicecli.audio.aec.FarEndRing`) each played block is also handed to it, with its DAC
    time, as the echo canceller's far-end reference."""

    def __init__(self, settings: StreamSettings, loop: asyncio.AbstractEventLoop, buffer: Any,
                 on_error: Callable[[str], None], blocksize: int, sd: Any | None = None,
                 ring: Any | None = None) -> None:
        super().__init__(settings, loop, on_error)
        self.buffer = buffer
        self.ring = ring
        self._sd = sd or backend()
        self._view: Callable[[Any, int], Any] = _mono_view if settings.channels == 1 else _frames_view
        self.pauses = 0                  # pause() calls that worked
        self.paused_at: float | None = None   # the stream's time (PortAudio's clock) at the last pause
        # through a sound server: its socket, asked before a resume (see resume)
        self._server_socket = soundserver.socket_path() if settings.device.sound_server else None
        self._open(self._sd.RawOutputStream, dtype="int16", blocksize=blocksize, latency="low",
                   callback=self._callback)

    def pause(self) -> bool:
        """Loop side: stop the callbacks while there is nothing to play (PortAudio abort: the
        callback thread and its sound-server thread sleep; ~330 context switches a second fewer on a
        10 ms stream, issue 10). What the device still holds is dropped, so the caller pauses only
        after the buffer has been silent for longer than the output latency. While paused, the
        finished callback and :meth:`check_alive` do not count the stopped stream as a failure.
        True if it paused; a stream that cannot be paused is reported through ``on_error``."""
        if self.paused or self.stream is None or self._closing or self._reported:
            return False
        self.paused = True                # before abort: its finished callback runs inside it
        try:
            self.paused_at = float(self.stream.time)     # PortAudio's clock, as the DAC times are
        except Exception:
            self.paused_at = None
        try:
            self.stream.abort()
        except Exception as exc:
            self.paused = False
            self._report(f"it could not be paused: {_portaudio_message(exc)}")
            return False
        self.pauses += 1
        return True

    def resume(self) -> bool:
        """Loop side: start a paused stream again (~1.5 ms until its first callback here). Through a
        sound server this makes a new stream there (a new sink-input). A start that fails (the sound
        server has gone) is reported through ``on_error``, like a stream that stopped by itself.
        True if the stream runs (or was not paused).

        Through a sound server that has gone away, the stream is not started at all: the pulse
        plugin then fails to make its stream and PortAudio's Pa_StartStream never returns (seen
        here with libportaudio 19.6); one connect() to the server's socket first (~0.1 ms). A
        pinned sink that went away does the same: the chat opens a fresh stream then
        (:meth:`~voicecli.app.chat_devices.ChatDevices.restart_needs_reopen`)."""
        if not self.paused:
            return self.stream is not None and not self._closing
        self.paused = False               # from here on a stop is a failure again
        if self.stream is None or self._closing:
            return False
        if self._server_socket is not None and soundserver.refuses(self._server_socket):
            self._report("it could not be started again: the sound server is not running")
            return False
        try:
            self.stream.start()
        except Exception as exc:
            self._report(f"it could not be started again: {_portaudio_message(exc)}")
            return False
        return True

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        try:
            self.blocks += 1
            if status:
                self._count_status(status)
            out = self._view(outdata, frames)
            self.buffer.pull_into(out)
            if self.ring is not None:
                self.ring.write(out, _stream_time(time_info, "outputBufferDacTime", time.monotonic()))
        except Exception as exc:
            memoryview(outdata).cast("B")[:] = bytes(len(outdata))
            self._fail_from_callback(exc)
            raise self._sd.CallbackAbort from None


def _mono_view(outdata: Any, frames: int) -> memoryview:
    return memoryview(outdata).cast("B").cast("h")


def _frames_view(outdata: Any, frames: int) -> Any:
    import numpy as np
    return np.frombuffer(outdata, dtype=np.int16).reshape(frames, -1)
