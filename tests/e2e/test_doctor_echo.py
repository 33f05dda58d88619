"""`voicecli doctor` plays an audible test tone, and on the virtual acoustic echo path (the speaker's
monitor looped into the mic feed, 40 ms, -15 dB, as in test_chat_echo.py) measures that path and
recommends echo handling; without the path it says full duplex works (issue 10, Devices)."""

from __future__ import annotations

import json
import time

import numpy as np

from tests.conftest import run_cli
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _read_raw


def _doctor(va: VirtualAudio) -> dict[str, dict[str, str]]:
    r = run_cli("doctor", "--seconds", "0.3", "--json", env=va.env)
    return {c["name"]: c for c in json.loads(r.stdout)["checks"]}


def test_doctor_plays_a_tone_and_measures_the_echo_path(vaudio: VirtualAudio, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spk = tmp_path / "speaker.raw"
    rec = vaudio.record_speaker(spk)
    try:
        checks = _doctor(vaudio)
    finally:
        rec.terminate()
        rec.wait()
    assert checks["speaker"]["status"] == "ok" and "test tone" in checks["speaker"]["detail"]
    heard = _read_raw(spk)
    assert np.max(np.abs(heard)) > 0.2          # the tone, at -12 dBFS, not silence
    assert checks["echo"]["status"] == "ok" and "does not hear the speaker" in checks["echo"]["detail"]

    module = vaudio.add_echo(delay_ms=40, gain_db=-15.0)
    time.sleep(0.3)
    try:
        checks = _doctor(vaudio)
    finally:
        vaudio.remove_echo(module)
        time.sleep(0.2)
    echo = checks["echo"]
    assert echo["status"] == "warn" and "hears the speaker" in echo["detail"], echo
    delay = float(echo["detail"].split(" ms later")[0].rsplit(" ", 1)[1])
    level = float(echo["detail"].split(" dB")[0].rsplit(" ", 1)[1])
    assert 30 <= delay <= 150, echo           # the 40 ms loopback plus the server's buffering
    assert -19 <= level <= -11, echo          # -15 dB
    assert "--echo aec" in echo["hint"] and "--echo half" in echo["hint"]
