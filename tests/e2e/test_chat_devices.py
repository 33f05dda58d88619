"""Issue 10, devices: ALSA's own messages never reach the terminal, the device's own under/overflow
flags are counted, and the sound server's sources/sinks are listed and selectable by description."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.conftest import EXAMPLES, ROOT, Served, run_cli, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _no_traceback

KEY = ("--api-key", "test-key")
HELLO = EXAMPLES / "hello.wav"

BOGUS_PCM = """
import ctypes, sys
lib = ctypes.CDLL("libasound.so.2")
if sys.argv[1] == "silenced":
    from voicecli.audio.devices import silence_alsa
    assert silence_alsa()
lib.snd_pcm_open(ctypes.byref(ctypes.c_void_p()), b"no_such_pcm_voicecli", 0, 0)
"""


def test_alsa_messages_are_silenced(vaudio: VirtualAudio) -> None:
    def stderr(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", BOGUS_PCM, mode], cwd=ROOT, capture_output=True,
                              text=True, timeout=30).stderr
    assert "ALSA lib" in stderr("plain")         # the probe does make ALSA talk
    assert stderr("silenced") == ""


def test_device_underflows_are_counted_and_alsa_says_nothing(vaudio: VirtualAudio,
                                                            scripted_server: Served) -> None:
    """Freezing the process (SIGSTOP) while a reply plays starves the output stream: ALSA reports
    underruns (and would print "ALSA lib ... underrun occurred" on the terminal); the summary counts
    the device's flags. (While nothing plays, the output stream is paused: nothing to starve.)"""
    chat = ChatProc(vaudio.env, "--url", scripted_server.url, *KEY, "--no-ui", "--json", "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "reply.audio" or e["type"] == "reply.started", timeout=20,
                      what="the reply")
        time.sleep(0.2)
        for _ in range(3):
            chat.proc.send_signal(signal.SIGSTOP)
            time.sleep(0.3)
            chat.proc.send_signal(signal.SIGCONT)
            time.sleep(0.4)
        code = chat.interrupt()
    finally:
        chat.kill()
    assert code == 130
    _no_traceback(chat)
    assert "ALSA" not in chat.stderr, chat.stderr
    summary = chat.session_summary()
    assert summary["device_underflows"] >= 1, summary


def _source_of_client(va: VirtualAudio, pid: int) -> str | None:
    """The source (name) a process records from, per ``pactl list source-outputs``."""
    sources = {line.split("\t")[0]: line.split("\t")[1]
               for line in va.pactl("list", "short", "sources").splitlines() if line}
    for block in va.pactl("list", "source-outputs").split("Source Output #")[1:]:
        if f'application.process.id = "{pid}"' in block:
            for line in block.splitlines():
                if line.strip().startswith("Source: "):
                    return sources.get(line.split(":", 1)[1].strip())
    return None


def test_sound_server_devices_are_listed_and_picked_by_description(vaudio: VirtualAudio,
                                                                   scripted_server: Served) -> None:
    r = run_cli("devices", "--json", env=vaudio.env)
    assert r.code == 0
    server = {(d["kind"], d["description"]): d for d in json.loads(r.stdout)["sound_server"]}
    assert server[("input", "VirtualMic")]["name"] == "vmic" and server[("input", "VirtualMic")]["default"]
    assert server[("output", "VirtualSpeaker")]["rate"] == 24000
    r = run_cli("devices", env=vaudio.env)
    assert "VirtualMic\tsound server" in r.stdout

    # a second mic on the same feed; chat picks it by its description, whatever PULSE_SOURCE says
    module = vaudio.pactl("load-module", "module-remap-source", "master=vmic_feed.monitor",
                          "source_name=vmic2", "source_properties=device.description=SecondMic").strip()
    try:
        chat = ChatProc(vaudio.env, "--url", scripted_server.url, *KEY, "--no-ui", "--json", "--echo", "off",
                        "--input-device", "secondmic", "--output-device", "VirtualSpeaker")
        try:
            chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
            assert _source_of_client(vaudio, chat.proc.pid) == "vmic2"
            vaudio.play(HELLO).wait(10)
            chat.wait_for(lambda e: e["type"] == "transcript.user", timeout=20, what="the user's turn")
            chat.interrupt()
        finally:
            chat.kill()
        _no_traceback(chat)

        # ambiguous and unknown names: one line, exit 6, the candidates named
        r = run_cli("chat", "--url", scripted_server.url, *KEY, "--input-device", "mic", env=vaudio.env)
        assert r.code == 6 and "2 sound server inputs match 'mic': 'VirtualMic', 'SecondMic'" in r.stderr, r.stderr
        r = run_cli("chat", "--url", scripted_server.url, *KEY, "--input-device", "no-such-mic", env=vaudio.env)
        assert r.code == 6 and "sound server: " in r.stderr and "'SecondMic'" in r.stderr, r.stderr
    finally:
        vaudio.pactl("unload-module", module, check=False)
