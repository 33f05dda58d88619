"""Device listing, selection and stream settings on plain device dicts (no PortAudio needed)."""

from __future__ import annotations

import math

import pytest

from voicecli.audio.devices import DeviceInfo, choose_settings, devices_from_dicts, select_device
from voicecli.errors import AudioDeviceError

HOSTAPIS = [{"name": "ALSA"}, {"name": "JACK Audio Connection Kit"}]
DICTS = [
    {"name": "HDA Intel PCH: ALC257 Analog (hw:0,0)", "hostapi": 0, "max_input_channels": 2,
     "max_output_channels": 2, "default_samplerate": 48000.0},
    {"name": "USB Audio Device: - (hw:1,0)", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
     "default_samplerate": 44100.0},
    {"name": "HDMI 0 (hw:0,3)", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 8,
     "default_samplerate": 48000.0},
    {"name": "pulse", "hostapi": 0, "max_input_channels": 32, "max_output_channels": 32,
     "default_samplerate": 44100.0},
    {"name": "default", "hostapi": 0, "max_input_channels": 32, "max_output_channels": 32,
     "default_samplerate": 44100.0},
    {"name": "system", "hostapi": 1, "max_input_channels": 2, "max_output_channels": 2,
     "default_samplerate": 48000.0},
]
DEVICES = devices_from_dicts(DICTS, HOSTAPIS, [4, 4])


def test_devices_from_dicts_fills_index_hostapi_and_defaults() -> None:
    assert [d.index for d in DEVICES] == [0, 1, 2, 3, 4, 5]
    assert DEVICES[5].hostapi == "JACK Audio Connection Kit"
    assert [d.index for d in DEVICES if d.default_input or d.default_output] == [4]
    assert DEVICES[1].has("input") and not DEVICES[1].has("output")


def test_select_default_index_and_substring() -> None:
    assert select_device(DEVICES, None, "input").index == 4
    assert select_device(DEVICES, "", "output").index == 4
    assert select_device(DEVICES, "1", "input").index == 1
    assert select_device(DEVICES, 2, "output").index == 2
    assert select_device(DEVICES, "usb", "input").index == 1           # case-insensitive substring
    assert select_device(DEVICES, "hdmi", "output").index == 2
    assert select_device(DEVICES, "PULSE", "output").index == 3        # exact name beats substrings


def test_select_without_a_default_takes_the_first_device_of_that_kind() -> None:
    devs = devices_from_dicts(DICTS, HOSTAPIS, [-1, -1])
    assert select_device(devs, None, "input").index == 0
    assert select_device(devs, None, "output").index == 0


def test_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(AudioDeviceError) as err:
        select_device(DEVICES, "hw:0", "output")
    assert err.value.message == ("2 output devices match 'hw:0': 0 'HDA Intel PCH: ALC257 Analog (hw:0,0)', "
                                 "2 'HDMI 0 (hw:0,3)'")
    assert err.value.hint == "use the index or a longer part of the name"


def test_no_match_wrong_kind_and_missing_index_say_what_exists() -> None:
    with pytest.raises(AudioDeviceError) as err:
        select_device(DEVICES, "yeti", "input")
    assert err.value.message == "no input device matches 'yeti'"
    assert err.value.hint is not None and "1 'USB Audio Device: - (hw:1,0)'" in err.value.hint
    assert "voicecli devices" in err.value.hint
    with pytest.raises(AudioDeviceError, match="device 2 .* has no input channels"):
        select_device(DEVICES, "2", "input")
    with pytest.raises(AudioDeviceError, match="there is no audio device 9"):
        select_device(DEVICES, "9", "output")
    with pytest.raises(AudioDeviceError, match="no output device found"):
        select_device([DEVICES[1]], None, "output")


def _probe(accepted: set[tuple[int, int]]):  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []

    def supports(rate: int, channels: int) -> bool:
        seen.append((rate, channels))
        return (rate, channels) in accepted

    return supports, seen


def test_settings_use_the_default_rate_and_mono_when_accepted() -> None:
    supports, seen = _probe({(48000, 1), (24000, 1)})
    st = choose_settings(DEVICES[0], "input", supports)
    assert (st.rate, st.channels) == (48000, 1)
    assert seen == [(48000, 1)]                 # never tries 24 kHz first


def test_settings_fall_back_to_stereo_then_other_rates() -> None:
    supports, _ = _probe({(48000, 2)})
    assert (lambda s: (s.rate, s.channels))(choose_settings(DEVICES[0], "output", supports)) == (48000, 2)
    odd = DeviceInfo(7, "odd", "ALSA", 4, 0, 22050.0)
    supports, seen = _probe({(16000, 4)})
    st = choose_settings(odd, "input", supports)
    assert (st.rate, st.channels) == (16000, 4)
    assert seen[:3] == [(22050, 1), (22050, 2), (22050, 4)]


def test_settings_fail_with_a_hint_when_nothing_opens() -> None:
    supports, _ = _probe(set())
    with pytest.raises(AudioDeviceError, match="accepts none of the usual sample rates"):
        choose_settings(DEVICES[1], "input", supports)


def test_sound_server_pcms_are_asked_for_the_wire_rate_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # the server resamples every stream itself: opening `pulse` at its 44.1 kHz default would make
    # the live path resample in Python too (issue 10, Cost). A hardware device keeps its own rate.
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    devs = devices_from_dicts(DICTS, HOSTAPIS, [4, 4])
    assert [d.sound_server for d in devs] == [False, False, False, True, False, False]
    supports, seen = _probe({(44100, 1), (24000, 1)})
    assert choose_settings(devs[3], "input", supports).rate == 24000 and seen == [(24000, 1)]
    supports, seen = _probe({(48000, 1), (24000, 1)})
    assert choose_settings(devs[0], "input", supports).rate == 48000
    monkeypatch.setenv("PULSE_SERVER", "unix:/run/pulse/native")     # `default` goes to the server too
    assert devices_from_dicts(DICTS, HOSTAPIS, [4, 4])[4].sound_server


def test_a_reopened_device_keeps_its_rate_when_it_still_accepts_it() -> None:
    # hot-swap (issue 10): the pipelines behind a stream are built for its rate; a reopen asks for
    # that rate first and only falls back to the device's own rates when it is gone (A2DP -> HFP)
    supports, seen = _probe({(48000, 1), (16000, 1)})
    assert choose_settings(DEVICES[0], "input", supports, prefer_rate=16000).rate == 16000
    assert seen == [(16000, 1)]
    supports, seen = _probe({(48000, 1)})
    assert choose_settings(DEVICES[0], "input", supports, prefer_rate=16000).rate == 48000


def test_the_mic_callbacks_sound_test_is_a_level_threshold_on_every_8th_sample() -> None:
    from array import array

    from voicecli.audio.devices import QUIET_FLOOR, _has_sound

    def block(*pairs: tuple[int, int], n: int = 480) -> bytes:
        a = array("h", [0] * n)
        for i, v in pairs:
            a[i] = v
        return a.tobytes()

    assert not _has_sound(b"") and not _has_sound(block())
    noise = array("h", [(-1) ** i * (i * 37 % QUIET_FLOOR) for i in range(480)])   # all within +-255
    assert not _has_sound(noise.tobytes())
    for v in (QUIET_FLOOR, QUIET_FLOOR + 1, 32767, -QUIET_FLOOR - 1, -32768):
        assert _has_sound(block((8, v))), v
    for v in (QUIET_FLOOR - 1, -QUIET_FLOOR):
        assert not _has_sound(block((8, v))), v
    assert not _has_sound(block((3, 20000)))         # between the samples looked at
    speech = array("h", [int(1000 * math.sin(i * 0.13)) for i in range(480)])        # ~-33 dBFS peak
    assert _has_sound(speech.tobytes())
