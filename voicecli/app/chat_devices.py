"""The devices of a chat, kept open across a hot-swap (issue 10, Devices).

A device that disappears or changes mid-session (a USB headset unplugged, Bluetooth switching from
A2DP to HFP, the sound server dropping the stream) ends a PortAudio stream: its finished callback
runs, its callback raises, or its callback clock stalls (the chat's watchdog). :meth:`ChatDevices.lost`
then closes both streams, makes PortAudio enumerate the devices afresh
(:func:`~voicecli.audio.devices.reinitialize`: PortAudio caches its device list) and reopens them:
the same device (by name, then by the user's spec) at the rate it had, else the default device.
It tries every ``RETRY_EVERY_S`` for at most ``REOPEN_S`` seconds; only when nothing opens in that
time does the chat fail with exit 6.

The conversation is untouched: the jitter buffer, the playback pipeline and the turn state live in
the chat, not in the streams, so a reply that was playing continues from where the old stream left
it, and the mic's audio clock is re-anchored (:meth:`~voicecli.app.chat_mic.Mic.resync`). A device
that comes back at another rate gets its pipeline rebuilt (``on_rate``).

Through a sound server (PulseAudio, PipeWire) the stream survives its device: the server moves it to
another device (its default) when the device goes away, and back when it returns. PortAudio sees
nothing; :meth:`ChatDevices.watch` follows the server's events (libpulse in-process, a sleeping
thread) and reports each move of the chat's streams in one line.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicecli.audio import devices, soundserver
from voicecli.errors import AudioDeviceError, VoicecliError

REOPEN_S = 5.0          # give up (exit 6) when no device opens for this long
RETRY_EVERY_S = 0.25
MOVE_CHECK_S = 0.3      # after a sound-server event, ask where the streams are (events come in bursts)
WHO = {"input": "mic", "output": "speaker"}


@dataclass(frozen=True, slots=True)
class Reopened:
    """What one recovery did: why, what it opened, how long it took."""

    reason: str
    input: devices.StreamSettings
    output: devices.StreamSettings
    took_s: float
    attempts: int

    def line(self) -> str:
        """The ONE line the user sees."""
        i, o = self.input, self.output
        return (f"audio device lost ({self.reason}); reopened in {self.took_s:.1f} s: mic "
                f"{i.device.name!r} ({i.rate} Hz), speaker {o.device.name!r} ({o.rate} Hz); "
                "the conversation goes on")

    def fields(self) -> dict[str, Any]:
        """The NDJSON event's fields (``voicecli.device.reopened``)."""
        i, o = self.input, self.output
        return {"reason": self.reason, "input": i.device.name, "input_rate": i.rate, "output": o.device.name,
                "output_rate": o.rate, "took_ms": round(self.took_s * 1000), "attempts": self.attempts}


def moved_line(kind: str, before: str, now_on: str) -> str:
    """The ONE line for a stream the sound server moved."""
    return (f"{WHO[kind]} now on {now_on!r} (the sound server moved it from {before!r}: a device went "
            "away, came back or was switched)")


Opener = Callable[[devices.StreamSettings, devices.StreamSettings], None]


class ChatDevices:
    """Resolves, and on loss re-resolves, the chat's two streams. ``open_streams(in_s, out_s)`` is the
    chat's own opener (it builds the callback streams); ``close_streams()`` closes them."""

    def __init__(self, input_spec: str | int | None, output_spec: str | int | None, sd: Any,
                 open_streams: Opener, close_streams: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, reopen_s: float = REOPEN_S) -> None:
        self.specs = {"input": input_spec, "output": output_spec}
        self.sd = sd
        self.open_streams, self.close_streams = open_streams, close_streams
        self.clock = clock
        self.reopen_s = reopen_s
        self.current: dict[str, devices.StreamSettings] = {}
        self.recovering = False
        self.closed = False          # the chat is shutting down: stop trying, close what opens
        self.reopened = 0
        self.watcher: soundserver.Watcher | None = None
        self.placed: dict[str, str] = {}           # kind -> the sound-server device it is on now
        self.keys: dict[str, str] = {}             # kind -> its stream there ("sink-input #N")
        self.home: dict[str, str] = {}             # kind -> the device its stream was first placed on
        self.move_checks = 0
        self.inspector: soundserver.Inspector | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._pending_kinds: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_moved: Callable[[str, str, str], None] | None = None
        # the sound server's socket while the chat started: when it refuses connections the daemon
        # is gone, and PortAudio is NOT cycled (Pa_Terminate/Pa_Initialize with the pulse plugin and
        # no server corrupted the heap: free(): invalid next size, SIGSEGV at exit, 2 runs in 5)
        self.server_socket = soundserver.socket_path()

    def resolve(self) -> tuple[devices.StreamSettings, devices.StreamSettings]:
        """The first resolution (errors propagate: a missing device at start is exit 6 at once)."""
        in_s = devices.resolve_stream(self.specs["input"], "input", self.sd, "float32")
        out_s = devices.resolve_stream(self.specs["output"], "output", self.sd, "int16")
        self.current = {"input": in_s, "output": out_s}
        return in_s, out_s

    def _candidates(self, kind: str) -> list[str | int | None]:
        """Where to reopen ``kind``: the device it had (by name: indexes shift when the list changes),
        the user's spec, then the default device."""
        had = self.current.get(kind)
        out: list[str | int | None] = []
        for spec in (had.device.name if had else None, self.specs[kind], None):
            if spec not in out:
                out.append(spec)
        if None in out:                       # the default last
            out.remove(None)
            out.append(None)
        return out

    def _resolve_kind(self, kind: str) -> devices.StreamSettings:
        had = self.current.get(kind)
        dtype = "float32" if kind == "input" else "int16"
        last: AudioDeviceError | None = None
        for spec in self._candidates(kind):
            try:
                return devices.resolve_stream(spec, kind, self.sd, dtype, had.rate if had else None)
            except AudioDeviceError as exc:
                last = exc
        assert last is not None
        raise last

    def _attempt(self) -> tuple[devices.StreamSettings, devices.StreamSettings]:
        """One try (blocking: runs in a worker thread): re-enumerate, resolve, open both streams."""
        self.close_streams()
        if self.server_socket is not None and soundserver.refuses(self.server_socket):
            raise AudioDeviceError("the sound server (PulseAudio/PipeWire) is not running")
        devices.reinitialize(self.sd)
        in_s, out_s = self._resolve_kind("input"), self._resolve_kind("output")
        try:
            self.open_streams(in_s, out_s)
        except VoicecliError:
            self.close_streams()
            raise
        if self.closed:          # the chat stopped while this attempt ran
            self.close_streams()
        return in_s, out_s

    async def recover(self, reason: str) -> Reopened:
        """Close, re-enumerate and reopen until it works or ``reopen_s`` has passed (then the last
        error, an AudioDeviceError, saying how long it tried)."""
        self.recovering = True
        start, attempts = self.clock(), 0
        try:
            while not self.closed:
                attempts += 1
                try:
                    in_s, out_s = await asyncio.to_thread(self._attempt)
                except Exception as error:  # PortAudio may fail in ways of its own: each is one failed try
                    exc = error if isinstance(error, AudioDeviceError) else \
                        AudioDeviceError(f"{type(error).__name__}: {error}")
                    if self.closed:
                        raise
                    if self.clock() - start + RETRY_EVERY_S > self.reopen_s:
                        raise AudioDeviceError(
                            f"{reason}, and no audio device could be opened again for {self.reopen_s:g} s "
                            f"({attempts} attempts; last: {exc.message})", exc.hint) from None
                    await asyncio.sleep(RETRY_EVERY_S)
                    continue
                self.current = {"input": in_s, "output": out_s}
                self.reopened += 1
                self._poke()                  # where the new streams are (their events count from then)
                return Reopened(reason, in_s, out_s, self.clock() - start, attempts)
            raise AudioDeviceError(f"{reason} (the chat stopped while reopening the devices)")
        finally:
            self.recovering = False

    # -- through a sound server: follow its moves ----------------------------------------------
    def watch(self, loop: asyncio.AbstractEventLoop, on_moved: Callable[[str, str, str], None]) -> bool:
        """If a stream goes through a sound server, report where the server moves it:
        ``on_moved(kind, from, to)`` (device descriptions) on the loop. False when there is nothing
        to watch (or no sound server to ask)."""
        if not any(s.device.sound_server for s in self.current.values()):
            return False
        self._loop, self._on_moved = loop, on_moved
        watcher = soundserver.Watcher(lambda: loop.call_soon_threadsafe(self._poke))
        if not watcher.start():
            return False
        self.watcher = watcher
        self.inspector = soundserver.Inspector(os.getpid())
        self._poke()                      # where the streams start
        return True

    def _poke(self, kinds: tuple[str, ...] = soundserver.KINDS) -> None:
        """Ask where ``kinds``' streams are, ``MOVE_CHECK_S`` from now (asks in between join it)."""
        self._pending_kinds.update(kinds)
        if self._pending is None and not self.closed and self._loop is not None:
            self._pending = self._loop.call_later(MOVE_CHECK_S, self._spawn_check)

    def _spawn_check(self) -> None:
        self._pending = None
        kinds, self._pending_kinds = tuple(k for k in soundserver.KINDS if k in self._pending_kinds), set()
        if self._loop is not None and not self.closed:
            task = self._loop.create_task(self._check(kinds))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _check(self, kinds: tuple[str, ...] = soundserver.KINDS) -> None:
        """Where the server has ``kinds``' streams now (a kind it has none of loses its key)."""
        inspector = self.inspector
        if inspector is None:
            return
        self.move_checks += 1
        where = await asyncio.to_thread(inspector.streams, kinds)
        for kind in kinds:
            if kind in where:
                self.keys[kind] = where[kind][1]
            else:
                self.keys.pop(kind, None)
        if self.watcher is not None:
            self.watcher.streams = set(self.keys.values())
        for kind, (now_on, _) in where.items():
            before = self.placed.get(kind)
            self.placed[kind] = now_on
            self.home.setdefault(kind, now_on)
            if before is not None and before != now_on and self._on_moved is not None and not self.closed:
                self._on_moved(kind, before, now_on)

    def paused(self, kind: str) -> None:
        """The chat paused ``kind``'s stream: through PulseAudio its stream there stays, corked, until
        the restart replaces it. The cork is no move: that stream's own events stop counting (no
        check for them). A device that goes away meanwhile still makes a check (the device's own
        event), which sees where the server moved the corked stream."""
        key = self.keys.pop(kind, None)
        if self.watcher is not None and key is not None:
            self.watcher.streams.discard(key)

    def restart_needs_reopen(self, kind: str) -> bool:
        """True if the paused ``kind`` stream must be opened afresh rather than started again: the
        server moved it (its device went away, while it played or was paused) and a sink is
        pinned for this process (``PULSE_SINK``: ``--output-device`` or the environment). Starting
        it again would connect to the pinned, missing sink: the pulse plugin's prepare fails and
        PortAudio's Pa_StartStream then never returns (seen here). The pin is dropped, so the fresh
        stream goes where the server sends new streams, as the running stream would have been moved."""
        moved_away = kind in self.home and self.placed.get(kind) != self.home[kind]
        if not moved_away or "PULSE_SINK" not in os.environ:
            return False
        os.environ.pop("PULSE_SINK", None)
        return True

    def resumed(self, kind: str) -> None:
        """The chat started ``kind``'s stream again: the sound server has a new stream for it (a new
        sink-input), whose events count only once it is known. Ask where it is; one that starts on
        another device than it was on before the pause (that device went away meanwhile) is reported
        as moved, once (:meth:`_check` compares with :attr:`placed`)."""
        self.home.pop(kind, None)        # where the new stream lands is its home from now on
        if self.watcher is not None:
            self._poke((kind,))          # only this kind's stream is new

    def close(self) -> None:
        """Stop watching (the streams are the chat's to close)."""
        self.closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        if self.inspector is not None:
            self.inspector.close()
