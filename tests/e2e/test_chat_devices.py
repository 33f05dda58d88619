"""Issue 10, devices: ALSA's own messages never reach the terminal, the device's own under/overflow
flags are counted, and the sound server's sources/sinks are listed and selectable by description."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, Served
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _no_traceback

KEY = ("--api-key", "test-key")

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
    """Freezing the process (SIGSTOP) starves the output stream: ALSA reports underruns (and would
    print "ALSA lib ... underrun occurred" on the terminal); the summary counts the device's flags."""
    chat = ChatProc(vaudio.env, "--url", scripted_server.url, *KEY, "--no-ui", "--json", "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        time.sleep(0.5)
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
    summary = [e for e in chat.of_type("voicecli.metrics") if e["scope"] == "session"][-1]
    assert summary["device_underflows"] >= 1, summary
