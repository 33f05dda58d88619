"""The sound server's own devices (PulseAudio, or PipeWire through pipewire-pulse), issue 10.

On such machines PortAudio sees only ALSA's ``pulse`` and ``default`` PCMs, not the sources and sinks
people know by name ("VirtualMic", "USB Audio Headset"). :func:`list_server_devices` asks the server
and :func:`route` makes the next stream on the ``pulse`` PCM use one of them (``PULSE_SOURCE`` /
``PULSE_SINK``, which libpulse reads when the ALSA plugin opens a stream).

The server is asked in-process, through libpulse (``pulsectl``'s ctypes bindings; the chat has
libpulse loaded already, by ALSA's pulse plugin): no ``pactl`` child, nothing left running when the
chat is killed. The server sees a client named ``voicecli``. ``pulsectl`` is imported only here, on
first use: no sound server, no libpulse or no pulsectl is an empty list (and selection works on
PortAudio's devices only), a :class:`Watcher` that does not start, never a traceback.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

CONNECT_TIMEOUT_S = 2.0     # a local server answers in milliseconds; a hung one costs at most this
CLIENT_NAME = "voicecli"    # what the server (pactl list clients, pavucontrol) shows
PA_INVALID_INDEX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class ServerDevice:
    name: str            # the server's name (what PULSE_SOURCE/PULSE_SINK take)
    description: str     # what people see ("VirtualMic")
    kind: str            # input (a source) | output (a sink)
    rate: int
    channels: int
    default: bool = False
    monitor: bool = False    # a sink's monitor source (what the speaker plays)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "kind": self.kind, "rate": self.rate,
                "channels": self.channels, "default": self.default, "monitor": self.monitor}


_pulse_class: Any = None
_import_lock = threading.Lock()


def _pulsectl() -> Any:
    """The ``pulsectl`` module, or None (not installed, no libpulse, a libpulse without its symbols).

    pulsectl finds libpulse with ``ctypes.util.find_library("libpulse")`` while it is imported, which
    on Linux runs ``ldconfig -p``, ``gcc`` and ``ld`` as subprocesses (~50 ms) to look for a
    ``liblibpulse`` that never exists: it gets ``libpulse.so.0`` at once (:mod:`voicecli.audio.libs`)."""
    if "pulsectl" in sys.modules:
        return sys.modules["pulsectl"]
    from voicecli.audio import libs
    with _import_lock, libs.sonames_first():
        try:
            import pulsectl  # type: ignore[import-untyped]
        except Exception:    # ImportError, OSError (no libpulse), AttributeError (an old one)
            return None
    return pulsectl


def _client_class(pulsectl: Any) -> Any:
    """``pulsectl.Pulse`` with two fixes of 24.12, both on its private hooks (if those change, the
    fixes stop working but nothing fails: the e2e tests in tests/e2e/test_sound_server_live.py notice):

    * ``connect(timeout=...)`` returns as soon as the server is ready (24.12 polls until the timeout
      even when connected: a whole second per call for a 1 s timeout);
    * a sink's or source's ``sample_spec`` is copied while libpulse's struct is alive, as
      ``sample_rate`` (24.12 keeps a ctypes view of memory libpulse frees after the callback: the
      rate reads as 0 or garbage later)."""
    global _pulse_class
    if _pulse_class is None:
        class Client(pulsectl.Pulse):  # type: ignore[misc]
            def _pulse_state_cb(self, ctx: Any, userdata: Any) -> None:
                super()._pulse_state_cb(ctx, userdata)
                if self.connected:
                    self._loop_stop = True

            def _pulse_info_cb(self, info_cls: Any, data_list: list[Any], *args: Any) -> None:
                before = len(data_list)
                super()._pulse_info_cb(info_cls, data_list, *args)
                for info in data_list[before:]:
                    spec = getattr(info, "sample_spec", None)
                    info.sample_rate = int(spec.rate) if spec is not None else 0
        _pulse_class = Client
    return _pulse_class


def _connect() -> Any:
    """A connected ``pulsectl.Pulse`` (the caller closes it), or None where there is no server."""
    pulsectl = _pulsectl()
    if pulsectl is None:
        return None
    try:
        pulse = _client_class(pulsectl)(CLIENT_NAME, connect=False)
    except Exception:
        return None
    try:
        pulse.connect(autospawn=False, timeout=CONNECT_TIMEOUT_S)
    except Exception:        # PulseError: refused, timed out
        pulse.close()
        return None
    return pulse


@contextmanager
def _session() -> Iterator[Any]:
    """A short connection for a few queries (None where there is no server)."""
    pulse = _connect()
    try:
        yield pulse
    finally:
        if pulse is not None:
            pulse.close()


def list_server_devices() -> list[ServerDevice]:
    """The sound server's sources (inputs) and sinks (outputs); empty when there is none."""
    with _session() as pulse:
        if pulse is None:
            return []
        try:
            info = pulse.server_info()
            sources, sinks = pulse.source_list(), pulse.sink_list()
        except Exception:    # the server went away while asked
            return []
    found = []
    for kind, listed, default in (("input", sources, info.default_source_name),
                                  ("output", sinks, info.default_sink_name)):
        for dev in listed:
            monitor = kind == "input" and dev.monitor_of_sink not in (None, PA_INVALID_INDEX)
            rate = getattr(dev, "sample_rate", 0)        # (see _client_class)
            found.append(ServerDevice(dev.name, dev.description or dev.name, kind, rate,
                                      int(dev.channel_count), dev.name == default, monitor))
    return found


def match(devices: Sequence[ServerDevice], spec: str, kind: str) -> list[ServerDevice]:
    """Devices of ``kind`` named by ``spec``: an exact description or server name (case-insensitive)
    wins, else every device whose description contains it (the rules of PortAudio names)."""
    usable = [d for d in devices if d.kind == kind]
    needle = spec.strip().lower()
    exact = [d for d in usable if needle in (d.description.lower(), d.name.lower())]
    return exact or [d for d in usable if needle in d.description.lower()]


def running() -> bool:
    """True if a PulseAudio/PipeWire server is reachable by its socket (no subprocess): the
    ``PULSE_SERVER`` setting, or the user's runtime dir's ``pulse/native`` / ``pipewire-0``."""
    if os.environ.get("PULSE_SERVER"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ""
    sockets = ("pulse/native", "pipewire-0")
    return bool(runtime) and any(os.path.exists(os.path.join(runtime, p)) for p in sockets)


def socket_path() -> str | None:
    """The unix socket of the configured sound server, if it is one and exists (``PULSE_SERVER``
    may name a TCP server, which cannot be checked this cheaply: None)."""
    server = os.environ.get("PULSE_SERVER", "")
    if server:
        for part in server.split():
            if part.startswith("unix:"):
                return part[len("unix:"):]
            if part.startswith("/"):
                return part
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ""
    for name in ("pulse/native", "pipewire-0"):
        if runtime and os.path.exists(os.path.join(runtime, name)):
            return os.path.join(runtime, name)
    return None


def refuses(path: str) -> bool:
    """True when the sound server's socket ``path`` (from :func:`socket_path` while it ran) no longer
    takes a connection: the daemon exited or crashed. One connect(): no subprocess, no PortAudio."""
    import socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            probe.connect(path)
    except OSError:
        return True
    return False


def route(device: ServerDevice) -> None:
    """Make streams opened from now on through the ``pulse`` PCM use ``device``."""
    os.environ["PULSE_SOURCE" if device.kind == "input" else "PULSE_SINK"] = device.name


KINDS = ("output", "input")
_QUERIES = {"output": ("sink_input_list", "sink", "sink_info", "sink-input"),
            "input": ("source_output_list", "source", "source_info", "source-output")}


def streams_of(pid: int, kinds: Sequence[str] = KINDS) -> dict[str, tuple[str, str]]:
    """Where the sound server has this process's streams: ``{"output": (sink description, "sink-input
    #N"), "input": (source description, "source-output #N")}`` (a kind is missing when the process has
    no such stream, or the server cannot be asked). One short connection; :class:`Inspector` keeps
    one for repeated asking."""
    inspector = Inspector(pid)
    try:
        return inspector.streams(kinds)
    finally:
        inspector.close()


def _streams(pulse: Any, pid: int, kinds: Sequence[str]) -> dict[str, tuple[str, str]]:
    """:func:`streams_of` on a connection: per kind, the stream list and the one device it is on
    (a device gone between the two queries leaves the kind out). Raises what pulsectl raises."""
    pulsectl = sys.modules["pulsectl"]
    found: dict[str, tuple[str, str]] = {}
    for kind in kinds:
        list_name, field, info_name, facility = _QUERIES[kind]
        mine = [s for s in getattr(pulse, list_name)()
                if s.proplist.get("application.process.id") == str(pid)]
        if not mine:
            continue
        try:
            dev = getattr(pulse, info_name)(getattr(mine[-1], field))
        except pulsectl.PulseIndexError:
            continue
        desc = dev.description or dev.name
        if desc:
            found[kind] = (desc, f"{facility} #{mine[-1].index}")
    return found


class Inspector:
    """:func:`streams_of` on a kept connection, for a chat that asks after every reply (its speaker
    stream is paused between replies and comes back as a new sink-input, issue 10). Measured here
    (`bench/soundserver_bench.py`): a fresh connection and its four lists cost 3.7-5.6 ms of CPU per
    ask, the output alone on a kept connection 1.0-1.3 ms. Asked from one thread at a time (a
    lock); a connection that fails (the server restarted) is replaced once per ask. :meth:`close`
    from any thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pulse: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def streams(self, kinds: Sequence[str] = KINDS) -> dict[str, tuple[str, str]]:
        with self._lock:
            try:
                for _ in range(2):
                    if self._closed:
                        return {}
                    if self._pulse is None:
                        self._pulse = _connect()
                        if self._pulse is None:
                            return {}
                    try:
                        return _streams(self._pulse, self.pid, kinds)
                    except Exception:      # PulseOperationFailed, PulseDisconnected: a fresh connection
                        self._drop()
                return {}
            finally:
                if self._closed:           # closed while asking
                    self._drop()

    def _drop(self) -> None:
        pulse, self._pulse = self._pulse, None
        if pulse is not None:
            pulse.close()

    def close(self, timeout: float = 0.5) -> None:
        """Close the connection; one that is mid-ask (a hung server) is closed when its ask ends."""
        self._closed = True
        if self._lock.acquire(timeout=timeout):
            try:
                self._drop()
            finally:
                self._lock.release()


class Watcher:
    """The sound server's events in a thread: ``on_event()`` (from that thread) for every sink or
    source added or removed, and anything happening to one of :attr:`streams`. The thread sleeps in
    libpulse's poll() on its own connection: no polling, no cost while nothing happens.
    :meth:`start` is False where there is no server; a server that goes away ends the thread."""

    FACILITIES = ("sink", "source", "sink_input", "source_output")

    def __init__(self, on_event: Any) -> None:
        self.on_event = on_event
        self.streams: set[str] = set()     # "sink-input #N": the streams whose events count
        self.thread: threading.Thread | None = None
        self._pulse: Any = None            # the thread's connection (None once it has closed it)
        self._lock = threading.Lock()      # the thread closing it vs close() waking it
        self._stopping = False

    def start(self) -> bool:
        pulse = _connect()
        if pulse is None:
            return False
        try:
            pulse.event_mask_set(*self.FACILITIES)
            pulse.event_callback_set(self._event)
        except Exception:
            pulse.close()
            return False
        self._pulse = pulse
        self.thread = threading.Thread(target=self._listen, args=(pulse,), daemon=True,
                                       name="voicecli-sound-server-events")
        self.thread.start()
        return True

    def _listen(self, pulse: Any) -> None:
        try:
            while not self._stopping:
                pulse.event_listen()       # returns when close() stops it
        except Exception:                  # PulseDisconnected: the server went away (the chat sees it)
            pass
        finally:
            with self._lock:
                self._pulse = None
                pulse.close()

    def _event(self, event: Any) -> None:
        """pulsectl's callback, in the listening thread (an exception here would be printed by ctypes)."""
        facility = next((f for f in self.FACILITIES if event.facility == f), None)
        kind = next((k for k in ("new", "change", "remove") if event.t == k), None)
        if self._stopping or facility is None or kind is None:
            return
        if not self.relevant(kind, facility, event.index):
            return
        try:
            self.on_event()
        except Exception:                  # e.g. the chat's loop closed under us: stop listening
            self._stopping = True
            raise sys.modules["pulsectl"].PulseLoopStop() from None

    def relevant(self, event: str, facility: str, index: int) -> bool:
        """A device added or removed (``event`` new/remove on a sink or source), or anything happening
        to one of :attr:`streams` (a move). Not other programs' streams, nor state changes (those come
        often on a busy desktop)."""
        if facility in ("sink", "source"):
            return event in ("new", "remove")
        return f"{facility.replace('_', '-')} #{index}" in self.streams

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread (from another thread) and join it."""
        self._stopping = True
        thread = self.thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            with self._lock:               # (a stop before its poll starts is lost: ask again)
                if self._pulse is not None:
                    self._pulse.event_listen_stop()
            thread.join(0.05)
