"""voicecli.audio.soundserver against a real (private) PulseAudio daemon: the devices it lists, the
streams it finds, the events its watcher gets, and how it ends (issue 10, Devices + Cost). The
daemon is driven with pactl; voicecli itself asks it in-process through libpulse (pulsectl)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, Served, unit
from tests.e2e.conftest import ChatProc, require_audio
from tests.e2e.pulse import VirtualAudio
from voicecli.audio import soundserver


@pytest.fixture()
def on_vaudio(vaudio: VirtualAudio, monkeypatch: pytest.MonkeyPatch) -> VirtualAudio:
    """This process talks to the private daemon (libpulse reads these when it connects)."""
    for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR", "PULSE_SINK", "PULSE_SOURCE"):
        monkeypatch.setenv(key, vaudio.env[key])
    return vaudio


class Events:
    """What a Watcher's on_event() reported (from its thread)."""

    def __init__(self) -> None:
        self.count = 0
        self.threads: set[str] = set()
        self.cond = threading.Condition()

    def __call__(self) -> None:
        with self.cond:
            self.count += 1
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 3.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= count, unit(timeout))


@pytest.fixture()
def watcher(on_vaudio: VirtualAudio) -> Iterator[tuple[soundserver.Watcher, Events]]:
    events = Events()
    w = soundserver.Watcher(events)
    assert w.start() is True
    yield w, events
    w.close()


def _sink_inputs_of(va: VirtualAudio, pid: int) -> list[str]:
    return [block.split("\n", 1)[0].strip() for block in va.pactl("list", "sink-inputs").split("Sink Input #")[1:]
            if f'application.process.id = "{pid}"' in block]


def test_the_server_devices_are_listed_in_process_fast_and_without_a_subprocess(vaudio: VirtualAudio) -> None:
    """In a fresh interpreter (the first import of pulsectl included): the virtual mic and speaker
    with their rate, channels and default flags, the speaker's monitor marked, no child process
    started (pulsectl's own library lookup runs ldconfig, gcc and ld), and no second lost waiting
    for a connection that is ready (pulsectl 24.12 waits out connect()'s timeout)."""
    code = ("import json, sys, time\n"
            "spawned = []\n"
            "sys.addaudithook(lambda e, a: spawned.append(e) if e in ('subprocess.Popen', 'os.posix_spawn',"
            " 'os.fork', 'os.exec') else None)\n"
            "from voicecli.audio import soundserver\n"
            "t0 = time.monotonic()\n"
            "found = soundserver.list_server_devices()\n"
            "took = time.monotonic() - t0\n"
            "print(json.dumps({'devices': [d.to_dict() for d in found], 'took': took, 'spawned': spawned}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=vaudio.env, capture_output=True, text=True,
                         timeout=unit(30))
    assert out.returncode == 0 and out.stderr == "", out.stderr
    got = json.loads(out.stdout)
    by_name = {d["name"]: d for d in got["devices"]}
    assert by_name["vmic"] == {"name": "vmic", "description": "VirtualMic", "kind": "input", "rate": 24000,
                               "channels": 1, "default": True, "monitor": False}
    assert by_name["vspk"] == {"name": "vspk", "description": "VirtualSpeaker", "kind": "output", "rate": 24000,
                               "channels": 1, "default": True, "monitor": False}
    assert by_name["vspk.monitor"]["monitor"] is True and by_name["vspk.monitor"]["kind"] == "input"
    assert by_name["vmic_feed"]["default"] is False and by_name["vmic_feed"]["kind"] == "output"
    assert [d["default"] for d in got["devices"]].count(True) == 2        # one source, one sink
    assert got["spawned"] == [], got["spawned"]
    assert got["took"] < unit(0.5), got["took"]


def test_streams_of_finds_the_stream_this_process_opened(on_vaudio: VirtualAudio) -> None:
    import sounddevice as sd

    from voicecli.audio import devices
    devices.reinitialize(sd)                    # PortAudio enumerates with this daemon's env
    assert soundserver.streams_of(os.getpid()) == {}
    pulse = next(d for d in devices.list_devices(sd) if d.name == "pulse" and d.has("output"))
    with sd.RawOutputStream(samplerate=24000, channels=1, dtype="int16", device=pulse.index):
        [index] = _sink_inputs_of(on_vaudio, os.getpid())
        assert soundserver.streams_of(os.getpid()) == {"output": ("VirtualSpeaker", f"sink-input #{index}")}
        on_vaudio.pactl("move-sink-input", index, "vmic_feed")
        assert soundserver.streams_of(os.getpid()) == {"output": ("Null Output", f"sink-input #{index}")}
    player = subprocess.Popen(["paplay", "--device=vspk", str(EXAMPLES / "hello.wav")], env=on_vaudio.env)
    try:
        deadline = time.monotonic() + unit(5)
        while not _sink_inputs_of(on_vaudio, player.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        [theirs] = _sink_inputs_of(on_vaudio, player.pid)
        assert soundserver.streams_of(player.pid) == {"output": ("VirtualSpeaker", f"sink-input #{theirs}")}
        assert soundserver.streams_of(os.getpid()) == {}       # ours closed; theirs is not ours
    finally:
        player.kill()
        player.wait()


def test_the_inspector_asks_on_one_kept_connection_and_by_kind(on_vaudio: VirtualAudio) -> None:
    """The chat asks after every reply (issue 10, Cost): one connection for all of its asks, the
    kinds it asks for only, the same answers as a fresh connection's."""
    import sounddevice as sd

    from voicecli.audio import devices
    devices.reinitialize(sd)
    inspector = soundserver.Inspector(os.getpid())
    try:
        assert inspector.streams() == {}
        pulse = next(d for d in devices.list_devices(sd) if d.name == "pulse" and d.has("output"))
        with sd.RawOutputStream(samplerate=24000, channels=1, dtype="int16", device=pulse.index):
            [index] = _sink_inputs_of(on_vaudio, os.getpid())
            want = {"output": ("VirtualSpeaker", f"sink-input #{index}")}
            assert inspector.streams(("output",)) == want == soundserver.streams_of(os.getpid())
            assert inspector.streams(("input",)) == {}
            on_vaudio.pactl("move-sink-input", index, "vmic_feed")
            assert inspector.streams() == {"output": ("Null Output", f"sink-input #{index}")}
        assert len(_clients_of(on_vaudio, os.getpid())) == 1     # all those asks: one client
    finally:
        inspector.close()
    assert _wait_no_clients(on_vaudio), "close() left its connection on the server"
    assert inspector.streams() == {}                              # closed: asks nothing


def _wait_no_clients(va: VirtualAudio) -> bool:
    deadline = time.monotonic() + unit(2)
    while _clients_of(va, os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _clients_of(va, os.getpid())


def test_the_inspector_outlives_a_server_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its kept connection breaks when the server goes; the next ask connects afresh (to the new
    server) instead of failing for the rest of the chat."""
    require_audio()
    first = VirtualAudio().start()
    for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(key, first.env[key])
    inspector = soundserver.Inspector(os.getpid())
    try:
        assert inspector.streams() == {}
        assert len(_clients_of(first, os.getpid())) == 1
        first.stop()
        assert inspector.streams() == {}            # no server: nothing, no exception
        second = VirtualAudio().start()
        try:
            for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR"):
                monkeypatch.setenv(key, second.env[key])
            assert inspector.streams() == {}
            assert len(_clients_of(second, os.getpid())) == 1, "it did not connect to the new server"
        finally:
            inspector.close()
            second.stop()
    finally:
        first.stop()


def test_the_watcher_reports_devices_added_and_removed_and_only_that(
        watcher: tuple[soundserver.Watcher, Events], on_vaudio: VirtualAudio) -> None:
    w, events = watcher
    clients = on_vaudio.pactl("list", "clients")
    assert 'application.name = "voicecli"' in clients and f'application.process.id = "{os.getpid()}"' in clients
    module = on_vaudio.pactl("load-module", "module-null-sink", "sink_name=plugged", "rate=24000",
                             "channels=1").strip()
    try:
        assert events.wait_for(2), "no events for a sink and its monitor source loaded"
        time.sleep(unit(0.3))
        assert events.count == 2, events.count
    finally:
        on_vaudio.pactl("unload-module", module)
    assert events.wait_for(4), "no events for a sink and its monitor source unloaded"
    assert events.threads == {"voicecli-sound-server-events"}
    time.sleep(unit(0.3))
    # another program's stream, and the state changes it causes on the sink, wake nobody
    quiet = events.count
    player = subprocess.Popen(["paplay", "--device=vspk", str(EXAMPLES / "hello.wav")], env=on_vaudio.env)
    try:
        time.sleep(unit(0.8))
        [theirs] = _sink_inputs_of(on_vaudio, player.pid)
        assert events.count == quiet
        w.streams = {f"sink-input #{theirs}"}        # ... unless it is one of ours: then a move counts
        on_vaudio.pactl("move-sink-input", theirs, "vmic_feed")
        assert events.wait_for(quiet + 1), "no event for a watched stream moved"
    finally:
        player.kill()
        player.wait()
    started = time.monotonic()
    w.close()                                        # from another thread than the watcher's
    assert time.monotonic() - started < unit(0.5)
    assert w.thread is not None and not w.thread.is_alive()
    assert f'application.process.id = "{os.getpid()}"' not in on_vaudio.pactl("list", "clients")


def test_closing_at_once_after_start_stops_the_thread_every_time(on_vaudio: VirtualAudio) -> None:
    """close() may come before the thread is in its poll (pulsectl then misses the stop): it asks
    again until the thread is gone."""
    for _ in range(20):
        w = soundserver.Watcher(lambda: None)
        assert w.start()
        started = time.monotonic()
        w.close()
        assert w.thread is not None and not w.thread.is_alive()
        assert time.monotonic() - started < unit(0.5)


def test_a_server_that_goes_away_ends_the_watcher_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    require_audio()
    va = VirtualAudio().start()          # a daemon of its own: this test stops it
    try:
        for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR"):
            monkeypatch.setenv(key, va.env[key])
        crashed: list[threading.ExceptHookArgs] = []
        monkeypatch.setattr(threading, "excepthook", crashed.append)
        w = soundserver.Watcher(lambda: None)
        assert w.start() and w.thread is not None
    finally:
        va.stop()
    w.thread.join(unit(3))
    assert not w.thread.is_alive(), "the watcher thread outlived its server"
    w.close()                            # harmless afterwards
    assert crashed == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert soundserver.list_server_devices() == [] and soundserver.Watcher(lambda: None).start() is False


def _clients_of(va: VirtualAudio, pid: int) -> list[str]:
    return [block.split("\n", 1)[0].strip() for block in va.pactl("list", "clients").split("Client #")[1:]
            if f'application.process.id = "{pid}"' in block and 'application.name = "voicecli"' in block]


def test_a_watching_chat_runs_no_child_and_a_killed_one_leaves_nothing_behind(vaudio: VirtualAudio,
                                                                               scripted_server: Served) -> None:
    """The chat watches the server's events on a libpulse connection of its own (the client the
    server sees as ``voicecli``), not a ``pactl subscribe`` child (5.6 MiB, and left running when
    the chat was SIGKILLed): no child process at all, and nothing of it stays on the server."""
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="echo"), "--api-key", "test-key",
                    "--no-ui", "--json", "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        deadline = time.monotonic() + unit(5)
        while not _clients_of(vaudio, chat.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _clients_of(vaudio, chat.proc.pid), vaudio.pactl("list", "clients")
        time.sleep(unit(0.5))
        pid = chat.proc.pid
        children = [c for task in os.listdir(f"/proc/{pid}/task")
                    for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        assert children == [], [Path(f"/proc/{c}/cmdline").read_bytes() for c in children]
    finally:
        chat.kill()                                   # SIGKILL
    deadline = time.monotonic() + unit(3)
    while _clients_of(vaudio, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _clients_of(vaudio, pid) == []


def test_an_on_event_that_raises_ends_the_watch_quietly(on_vaudio: VirtualAudio, monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    """(The chat's on_event is loop.call_soon_threadsafe, which raises once the loop is closed.) An
    exception in pulsectl's ctypes callback would be printed as "Exception ignored ..." with its
    traceback: the watch stops instead."""
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    calls: list[int] = []

    def closed_loop() -> None:
        calls.append(1)
        raise RuntimeError("Event loop is closed")

    w = soundserver.Watcher(closed_loop)
    assert w.start() and w.thread is not None
    module = on_vaudio.pactl("load-module", "module-null-sink", "sink_name=plugged2").strip()
    try:
        w.thread.join(unit(3))
        assert not w.thread.is_alive() and calls == [1]
    finally:
        on_vaudio.pactl("unload-module", module)
        w.close()
    assert crashed == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err
