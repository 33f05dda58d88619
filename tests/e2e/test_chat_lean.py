"""Issue 10, Cost: at the wire rate (a sound server's PCM, mono, 24 kHz) with ``--echo off`` the
chat's live path is byte copies — a running chat that has heard the mic and played a reply has no
numpy in its process (it is ~13 MiB of the chat's memory); ``--echo aec`` does load it (numpy
does the canceller's work), which shows the check sees numpy when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Served, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from voicecli.audio import aec_support

KEY = ("--api-key", "test-key")


def _mapped(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.split()[-1].startswith("/")}


def _run_and_inspect(vaudio: VirtualAudio, server: Served, echo: str) -> set[str]:
    chat = ChatProc(vaudio.env, "--url", server.url, *KEY, "--no-ui", "--json", "--echo", echo)
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(EXAMPLES / "hello.wav").wait(unit(10))       # the mic path runs on real speech
        chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="the reply heard")
        mapped = _mapped(chat.proc.pid)
        assert chat.interrupt() == 130
    finally:
        chat.kill()
    return mapped


def _numpy(mapped: set[str]) -> bool:
    return any("numpy" in path for path in mapped)


def test_an_echo_off_chat_at_the_wire_rate_runs_without_numpy(vaudio: VirtualAudio, scripted_server: Served) -> None:
    mapped = _run_and_inspect(vaudio, scripted_server, "off")
    assert not _numpy(mapped)
    # on the sound server libasound has the lean configuration: of ALSA's plugins only pulse is
    # loaded (tests/e2e/test_alsa_lean.py: the system configuration loads a52 and the rest)
    plugins = {Path(p).name for p in mapped if "libasound_module_pcm_" in p}
    assert plugins == {"libasound_module_pcm_pulse.so"}, plugins


@pytest.mark.skipif(not aec_support.available(), reason="the aec extra (livekit) is not installed")
def test_an_aec_chat_loads_numpy_for_the_canceller(vaudio: VirtualAudio, scripted_server: Served) -> None:
    assert _numpy(_run_and_inspect(vaudio, scripted_server, "aec"))
