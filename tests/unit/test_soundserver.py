"""voicecli.audio.soundserver and devices.select_with_server: the sound server's sources/sinks by
description (plain device lists), and what happens where no sound server can be asked. What the real
server answers is in tests/e2e/test_sound_server_live.py."""

from __future__ import annotations

import os
import sys
import time

import pytest

from voicecli.audio import devices, soundserver
from voicecli.audio.soundserver import ServerDevice
from voicecli.errors import AudioDeviceError

SOURCES = [ServerDevice("vspk.monitor", "Monitor of VirtualSpeaker", "input", 24000, 1, False, True),
           ServerDevice("alsa_input.usb-Headset", "USB Audio Headset", "input", 48000, 2, True, False)]

PA = [devices.DeviceInfo(0, "pulse", "ALSA", 32, 32, 44100.0),
      devices.DeviceInfo(1, "default", "ALSA", 32, 32, 44100.0, True, True)]


def test_a_server_device_is_reached_through_pulse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_SOURCE", raising=False)
    listed = SOURCES
    dev = devices.select_with_server(PA, "usb audio", "input", lambda: listed)
    assert dev.index == 0 and dev.name == "USB Audio Headset" and dev.default_samplerate == 48000
    assert os.environ["PULSE_SOURCE"] == "alsa_input.usb-Headset"
    # PortAudio names still win, and the server is not asked for them
    assert devices.select_with_server(PA, "default", "input", lambda: pytest.fail("asked")).index == 1


def test_unknown_and_ambiguous_server_names() -> None:
    listed = SOURCES + [ServerDevice("x", "Second Headset", "input", 16000, 1)]
    with pytest.raises(AudioDeviceError, match="2 sound server inputs match 'headset'"):
        devices.select_with_server(PA, "headset", "input", lambda: listed)
    with pytest.raises(AudioDeviceError) as info:
        devices.select_with_server(PA, "nothing", "input", lambda: listed)
    assert "sound server: 'Monitor of VirtualSpeaker', 'USB Audio Headset'" in info.value.one_line()
    with pytest.raises(AudioDeviceError, match="no output device matches"):   # kinds stay apart
        devices.select_with_server(PA, "usb audio", "output", lambda: listed)


def _nothing_there(watcher: soundserver.Watcher) -> None:
    t0 = time.monotonic()
    assert soundserver.list_server_devices() == []
    assert soundserver.streams_of(os.getpid()) == {}
    assert watcher.start() is False and watcher.thread is None
    watcher.close()                                    # harmless after a start that failed
    assert time.monotonic() - t0 < 2.0                 # a refused connection is not waited for


def test_no_sound_server_means_no_server_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: object,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nobody-listens")
    _nothing_there(soundserver.Watcher(lambda: pytest.fail("an event")))
    assert capfd.readouterr().err == ""                # no traceback, no libpulse chatter


def test_no_pulsectl_or_libpulse_means_no_server_devices(monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    """pulsectl raises at import where libpulse is missing (OSError from ctypes) or it is not
    installed (ImportError: a None entry in sys.modules makes `import pulsectl` raise it)."""
    for name in [m for m in sys.modules if m == "pulsectl" or m.startswith("pulsectl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pulsectl", None)
    _nothing_there(soundserver.Watcher(lambda: pytest.fail("an event")))
    assert capfd.readouterr().err == ""


def test_help_ask_serve_and_the_chat_modules_do_not_import_pulsectl() -> None:
    """pulsectl (and libpulse with it) loads when a sound server is asked, not with `voicecli --help`,
    nor with the modules of ask, serve and chat (voicecli.audio.devices imports soundserver)."""
    import subprocess
    code = ("import runpy, sys\n"
            "sys.argv = ['voicecli', '--help']\n"
            "try:\n    runpy.run_module('voicecli.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import voicecli.app.ask, voicecli.server.app, voicecli.app.chat_devices, voicecli.audio.devices\n"
            "print('loaded:', sorted(m for m in sys.modules if m.startswith('pulsectl')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rsplit("loaded:", 1)[1].strip() == "[]"


def test_only_device_changes_and_our_own_streams_wake_the_watcher() -> None:
    w = soundserver.Watcher(lambda: None)
    w.streams = {"sink-input #3"}
    assert w.relevant("remove", "sink", 0) and w.relevant("new", "source", 5)
    assert w.relevant("change", "sink_input", 3)                        # ours moved
    assert not w.relevant("change", "sink", 2)                          # a state change
    assert not w.relevant("new", "sink_input", 9)                       # another program's stream
    assert not w.relevant("new", "source_output", 3)                    # not ours: a sink input is
