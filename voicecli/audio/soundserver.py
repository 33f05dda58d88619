"""The sound server's own devices (PulseAudio, or PipeWire through pipewire-pulse), issue 10.

On such machines PortAudio sees only ALSA's ``pulse`` and ``default`` PCMs, not the sources and sinks
people know by name ("VirtualMic", "USB Audio Headset"). :func:`list_server_devices` asks the server
(``pactl list sources|sinks`` in the C locale, parsed as text so any pactl version works) and
:func:`route` makes the next stream on the ``pulse`` PCM use one of them (``PULSE_SOURCE`` /
``PULSE_SINK``, which libpulse reads when the ALSA plugin opens a stream). No pactl or no server:
an empty list, and selection works on PortAudio's devices only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PACTL_TIMEOUT_S = 3.0


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


def _pactl(*args: str) -> str | None:
    if shutil.which("pactl") is None:
        return None
    try:
        out = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=PACTL_TIMEOUT_S,
                             env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def parse_pactl(text: str, kind: str, default: str | None) -> list[ServerDevice]:
    """Devices from ``pactl list sources`` (kind ``input``) or ``... sinks`` (``output``) text (pure)."""
    devices = []
    for block in re.split(r"^(?:Source|Sink) #\d+\s*$", text, flags=re.M)[1:]:
        fields = dict(re.findall(r"^\t([A-Za-z ]+): (.*)$", block, flags=re.M))
        name = fields.get("Name", "").strip()
        if not name:
            continue
        spec = fields.get("Sample Specification", "")
        rate = re.search(r"(\d+)Hz", spec)
        ch = re.search(r"(\d+)ch", spec)
        devices.append(ServerDevice(name, fields.get("Description", name).strip() or name, kind,
                                    int(rate.group(1)) if rate else 0, int(ch.group(1)) if ch else 0,
                                    name == default, fields.get("Monitor of Sink", "n/a").strip() != "n/a"))
    return devices


def list_server_devices() -> list[ServerDevice]:
    """The sound server's sources (inputs) and sinks (outputs); empty when there is none."""
    info = _pactl("info")
    if info is None:
        return []
    defaults = dict(re.findall(r"^Default (Source|Sink): (.*)$", info, flags=re.M))
    found = []
    for kind, what in (("input", "sources"), ("output", "sinks")):
        text = _pactl("list", what)
        if text:
            found += parse_pactl(text, kind, defaults.get("Source" if kind == "input" else "Sink"))
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


SUBSCRIBE_EVENT = re.compile(r"^Event '(new|remove|change)' on (sink|source|sink-input|source-output) #(\d+)")


def _devices_by_index(what: str) -> dict[str, str]:
    """``{index: description}`` of the sinks or sources (one ``pactl list``)."""
    found = {}
    for block in re.split(r"^(?=(?:Source|Sink) #\d+\s*$)", _pactl("list", what) or "", flags=re.M):
        head = re.match(r"(?:Source|Sink) #(\d+)", block)
        if head is None:
            continue
        fields = dict(re.findall(r"^\t([A-Za-z ]+): (.*)$", block, flags=re.M))
        found[head.group(1)] = fields.get("Description", "").strip() or fields.get("Name", "").strip()
    return found


def streams_of(pid: int) -> dict[str, tuple[str, str]]:
    """Where the sound server has this process's streams: ``{"output": (sink description, "sink-input
    #N"), "input": (source description, "source-output #N")}`` (a kind is missing when the process has
    no such stream, or the server cannot be asked). Two ``pactl list`` calls per kind."""
    found: dict[str, tuple[str, str]] = {}
    kinds = (("output", "sink-inputs", "Sink Input #", "Sink", "sinks", "sink-input"),
             ("input", "source-outputs", "Source Output #", "Source", "sources", "source-output"))
    for kind, what, head, field, devs, facility in kinds:
        mine = None
        for block in (_pactl("list", what) or "").split(head)[1:]:
            if f'application.process.id = "{pid}"' in block:
                m = re.search(rf"^\t{field}: (\d+)$", block, flags=re.M)
                if m:
                    mine = (m.group(1), f"{facility} #{block.split(chr(10), 1)[0].strip()}")
        if mine is not None:
            desc = _devices_by_index(devs).get(mine[0])
            if desc:
                found[kind] = (desc, mine[1])
    return found


class Watcher:
    """``pactl subscribe`` in a thread: ``on_event()`` (from that thread) for every sink/source or
    stream added, removed or changed. The thread sleeps in a blocking read: no polling, no cost
    while nothing happens. :meth:`start` is False where there is no pactl."""

    def __init__(self, on_event: Any) -> None:
        self.on_event = on_event
        self.streams: set[str] = set()     # "sink-input #N": the streams whose events count
        self.proc: subprocess.Popen[str] | None = None
        self.thread: Any = None

    def start(self) -> bool:
        import threading
        if shutil.which("pactl") is None:
            return False
        try:
            self.proc = subprocess.Popen(["pactl", "subscribe"], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
                                         env=dict(os.environ, LC_ALL="C"))
        except OSError:
            return False
        self.thread = threading.Thread(target=self._read, name="voicecli-pactl-subscribe", daemon=True)
        self.thread.start()
        return True

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.relevant(line):
                self.on_event()

    def relevant(self, line: str) -> bool:
        """A device added or removed, or anything happening to one of :attr:`streams` (a move). Not
        other programs' streams, nor state changes (those come often on a busy desktop)."""
        m = SUBSCRIBE_EVENT.match(line)
        if m is None:
            return False
        event, facility, index = m.groups()
        if facility in ("sink", "source"):
            return event != "change"
        return f"{facility} #{index}" in self.streams

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if self.thread is not None:
                self.thread.join(1.0)          # EOF ends it
            if proc.stdout is not None and (self.thread is None or not self.thread.is_alive()):
                proc.stdout.close()
