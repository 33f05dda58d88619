"""voicecli.audio.soundserver and devices.select_with_server: the sound server's sources/sinks by
description (pure: pactl text and plain device lists)."""

from __future__ import annotations

import os

import pytest

from voicecli.audio import devices, soundserver
from voicecli.audio.soundserver import ServerDevice, parse_pactl
from voicecli.errors import AudioDeviceError

SOURCES = """Source #0
\tState: IDLE
\tName: vspk.monitor
\tDescription: Monitor of VirtualSpeaker
\tSample Specification: s16le 1ch 24000Hz
\tMonitor of Sink: vspk
Source #2
\tName: alsa_input.usb-Headset
\tDescription: USB Audio Headset
\tSample Specification: s16le 2ch 48000Hz
\tMonitor of Sink: n/a
"""

PA = [devices.DeviceInfo(0, "pulse", "ALSA", 32, 32, 44100.0),
      devices.DeviceInfo(1, "default", "ALSA", 32, 32, 44100.0, True, True)]


def test_pactl_text_is_parsed() -> None:
    found = parse_pactl(SOURCES, "input", "alsa_input.usb-Headset")
    assert found == [ServerDevice("vspk.monitor", "Monitor of VirtualSpeaker", "input", 24000, 1, False, True),
                     ServerDevice("alsa_input.usb-Headset", "USB Audio Headset", "input", 48000, 2, True, False)]


def test_a_server_device_is_reached_through_pulse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_SOURCE", raising=False)
    listed = parse_pactl(SOURCES, "input", None)
    dev = devices.select_with_server(PA, "usb audio", "input", lambda: listed)
    assert dev.index == 0 and dev.name == "USB Audio Headset" and dev.default_samplerate == 48000
    assert os.environ["PULSE_SOURCE"] == "alsa_input.usb-Headset"
    # PortAudio names still win, and the server is not asked for them
    assert devices.select_with_server(PA, "default", "input", lambda: pytest.fail("asked")).index == 1


def test_unknown_and_ambiguous_server_names() -> None:
    listed = parse_pactl(SOURCES, "input", None) + [ServerDevice("x", "Second Headset", "input", 16000, 1)]
    with pytest.raises(AudioDeviceError, match="2 sound server inputs match 'headset'"):
        devices.select_with_server(PA, "headset", "input", lambda: listed)
    with pytest.raises(AudioDeviceError) as info:
        devices.select_with_server(PA, "nothing", "input", lambda: listed)
    assert "sound server: 'Monitor of VirtualSpeaker', 'USB Audio Headset'" in info.value.one_line()
    with pytest.raises(AudioDeviceError, match="no output device matches"):   # kinds stay apart
        devices.select_with_server(PA, "usb audio", "output", lambda: listed)


def test_no_pactl_means_no_server_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soundserver.shutil, "which", lambda _: None)
    assert soundserver.list_server_devices() == []
