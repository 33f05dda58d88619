"""Issue 10, Cost (memory): on a running sound server voicecli gives libasound a configuration with
only the server's PCMs (``voicecli/audio/alsa-sound-server.conf``), so PortAudio's device scan does not
load every ALSA plugin's libraries (a52 -> libavcodec, jack, lavrate, ...). Real PortAudio, real
libasound, the private PulseAudio of tests/e2e/pulse.py; each case is a fresh process, since the
choice is made once, before PortAudio loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.pulse import VirtualAudio
from voicecli.audio import devices

PROBE = r"""
import json, os
from voicecli.audio import devices
sd = devices.backend()
names = [d.name for d in devices.list_devices(sd)]
maps = {l.split()[-1] for l in open("/proc/self/maps") if l.split()[-1].startswith("/")}
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
print(json.dumps({"lean": devices.lean_alsa(), "config": os.environ.get("ALSA_CONFIG_PATH"),
                  "names": names, "plugins": sorted(os.path.basename(p) for p in maps if "libasound_module_" in p),
                  "rss_mib": rss}))
"""
PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/alsa-lib")


def _probe(env: dict[str, str], **extra: str | None) -> dict[str, object]:
    env = dict(env)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ALSA lib" not in out.stderr, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_on_the_sound_server_only_its_pcms_are_scanned(vaudio: VirtualAudio) -> None:
    lean = _probe(vaudio.env, ALSA_CONFIG_PATH=None, VOICECLI_ALSA=None)
    assert lean["lean"] is True and lean["config"] == str(devices.SOUND_SERVER_ALSA_CONF)
    assert lean["names"] == ["pulse", "default"]          # what the chat opens is still there
    assert all("_pulse" in p for p in lean["plugins"]), lean["plugins"]     # type: ignore[union-attr]
    system = _probe(vaudio.env, ALSA_CONFIG_PATH=None, VOICECLI_ALSA="system")
    assert system["lean"] is False and system["config"] is None
    assert "pulse" in system["names"] and "default" in system["names"]    # type: ignore[operator]
    if not (PLUGIN_DIR / "libasound_module_pcm_a52.so").exists():
        pytest.skip("libasound2-plugins is not installed: the system configuration loads nothing more")
    # the system configuration's scan loads the other plugins (so the check above can fail) ...
    assert "libasound_module_pcm_a52.so" in system["plugins"], system["plugins"]     # type: ignore[operator]
    # ... and that is what the lean one saves
    assert float(system["rss_mib"]) - float(lean["rss_mib"]) > 5, (system["rss_mib"], lean["rss_mib"])  # type: ignore[arg-type]


def test_a_configuration_the_user_chose_is_left_alone(vaudio: VirtualAudio, tmp_path: Path) -> None:
    own = tmp_path / "asound.conf"
    own.write_text(devices.SOUND_SERVER_ALSA_CONF.read_text())
    result = _probe(vaudio.env, ALSA_CONFIG_PATH=str(own), VOICECLI_ALSA=None)
    assert result["lean"] is False and result["config"] == str(own) and "pulse" in result["names"]  # type: ignore[operator]


def test_without_a_server_that_answers_the_system_configuration_is_kept(vaudio: VirtualAudio,
                                                                         tmp_path: Path) -> None:
    # a socket file nobody listens on (a crashed daemon leaves one): the scan must see ALSA's own
    # devices, since nothing reaches the server
    dead = tmp_path / "native"
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(dead))
    result = _probe(vaudio.env, ALSA_CONFIG_PATH=None, VOICECLI_ALSA=None, PULSE_SERVER=f"unix:{dead}")
    assert result["lean"] is False and result["config"] is None
    assert os.path.exists(dead)
