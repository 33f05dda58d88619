"""Issue 10, Cost: an idle chat pauses its output stream (no callbacks playing zeros: ~330 context
switches a second and ~2.8 % of a core here on a 10 ms stream), with the echo canceller too (its
far-end reference is silence meanwhile, and it realigns on the restarted stream), and starts it again
when a reply comes, without losing or delaying any of it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, Served, unit
from tests.e2e.conftest import ChatProc, require_audio
from tests.e2e.pulse import RATE, VirtualAudio
from tests.e2e.test_chat_audio import _active_spans, _best_correlation, _no_traceback, _read_raw
from tests.e2e.test_chat_hotswap import _tone

KEY = ("--api-key", "test-key")
HELLO = EXAMPLES / "hello.wav"
IDLE_WAIT_S = 1.5       # OutputIdle's 0.5 s, a tick, and slack for a loaded machine


def _corked(va: VirtualAudio, pid: int) -> list[bool]:
    """For each sink input of process ``pid``: is it corked (paused) on the sound server?"""
    return ["Corked: yes" in block for block in va.pactl("list", "sink-inputs").split("Sink Input #")[1:]
            if f'application.process.id = "{pid}"' in block]


def _wait_corked(va: VirtualAudio, pid: int, want: bool, within: float) -> list[bool]:
    deadline = time.monotonic() + unit(within)
    while True:
        now = _corked(va, pid)
        if now == [want] or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


@pytest.mark.parametrize("echo", ["off", "half", "aec"])
def test_an_idle_chat_pauses_its_speaker_and_the_next_reply_is_heard_whole_and_on_time(
        vaudio: VirtualAudio, scripted_server: Served, tmp_path: Path, echo: str) -> None:
    if echo == "aec":
        pytest.importorskip("livekit.rtc")
    spk = tmp_path / "speaker.raw"
    rec = vaudio.record_speaker(spk)
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="echo"), *KEY, "--no-ui", "--json",
                    "--echo", echo)
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        time.sleep(unit(IDLE_WAIT_S))
        idle = _wait_corked(vaudio, chat.proc.pid, True, 1.0)     # aec too: its reference is silence then
        vaudio.play(HELLO).wait(unit(10))
        heard = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="reply heard")
        after = _wait_corked(vaudio, chat.proc.pid, True, IDLE_WAIT_S + 1.0)
        code = chat.interrupt()
    finally:
        chat.kill()
        rec.terminate()
        rec.wait()
    assert code == 130, chat.stderr
    _no_traceback(chat)
    assert idle == [True], idle              # paused (corked) while idle
    assert after == [True], after            # and paused again after the reply
    summary = chat.session_summary()
    assert summary["output_pauses"] >= 2, summary
    assert summary["device_reopens"] == 0, summary      # a pause is no failure
    # the reply was heard whole, once, and its first audio on time (wire -> heard: the 60 ms
    # prebuffer and the device's latency, as with a running stream)
    assert heard["text"] == "Hello! This is the scripted agent." and heard["interrupted"] is False
    expected = _tone(heard["text"])
    recorded = _read_raw(spk)
    assert _best_correlation(recorded, expected) > 0.9, summary
    spans = _active_spans(recorded)
    assert len(spans) == 1 and abs((spans[0][1] - spans[0][0]) - len(expected) / RATE) < 0.15, spans
    turn = chat.of_type("voicecli.metrics")[0]
    assert turn["scope"] == "turn" and 0 < turn["local_ms"] < unit(150), turn


def test_a_sink_removed_while_the_speaker_is_paused_is_reported_once_and_the_reply_is_heard(
        scripted_server: Served, tmp_path: Path) -> None:
    """Paused, the chat's stream stays on the sound server (corked): when its sink goes away the
    server moves it, the chat says so once, and the reply after it (a new stream there, resumed) is
    heard on the sink it is on; no second move line, no reopen."""
    require_audio()
    va = VirtualAudio().start()     # a daemon of its own: this test removes its speaker
    va.pactl("load-module", "module-null-sink", "sink_name=backup", "rate=24000", "channels=1",
             "sink_properties='device.description=BackupSpeaker device.class=sound'")
    out = tmp_path / "backup.raw"
    chat = ChatProc(va.env, "--url", scripted_server.at(scenario="echo"), *KEY, "--no-ui", "--json",
                    "--echo", "off")
    rec = None
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        assert _wait_corked(va, chat.proc.pid, True, IDLE_WAIT_S + 1.0) == [True]
        [module] = [line.split("\t")[0] for line in va.pactl("list", "short", "modules").splitlines()
                    if "module-null-sink" in line and "sink_name=vspk" in line]
        va.pactl("unload-module", module)
        moved = chat.wait_for(lambda e: e["type"] == "voicecli.device.moved", timeout=5, what="the move")
        with open(out, "wb") as fh:
            rec = subprocess.Popen(["parec", "--latency-msec=20", "--device=backup.monitor", f"--rate={RATE}",
                                    "--channels=1", "--format=s16le", "--raw"], env=va.env, stdout=fh)
        time.sleep(0.3)
        va.play(HELLO).wait(unit(10))
        heard = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="the reply")
        time.sleep(1.0)                 # the resumed stream's own check has run (MOVE_CHECK_S)
        code = chat.interrupt()
    finally:
        chat.kill()
        if rec is not None:
            rec.terminate()
            rec.wait()
        va.stop()
    assert code == 130, chat.stderr
    _no_traceback(chat)
    assert (moved["stream"], moved["from"], moved["to"]) == ("output", "VirtualSpeaker", "BackupSpeaker")
    assert len(chat.of_type("voicecli.device.moved")) == 1, chat.of_type("voicecli.device.moved")
    lines = [line for line in chat.stderr.splitlines() if "the sound server moved it" in line]
    assert len(lines) == 1, chat.stderr
    summary = chat.session_summary()
    assert summary["device_reopens"] == 0 and summary["output_pauses"] >= 1, summary
    assert heard["interrupted"] is False
    assert _best_correlation(_read_raw(out), _tone(heard["text"])) > 0.9     # heard on the backup sink


RESUME_AFTER_SERVER_EXIT = """
import asyncio, subprocess, sys
from voicecli.audio import devices
from voicecli.audio.jitter import JitterBuffer

async def main():
    loop = asyncio.get_running_loop()
    sd = devices.backend()
    s = devices.resolve_stream(None, "output", sd, "int16")
    errors = []
    stream = devices.PlaybackStream(s, loop, JitterBuffer(s.rate, 60, 1000), errors.append, 240, sd)
    await asyncio.sleep(0.3)
    assert stream.pause() and stream.paused, "pause"
    await asyncio.sleep(0.3)
    stream.check_alive()                        # a paused stream is not a stopped one
    assert errors == [], errors
    subprocess.run(["pactl", "exit"], capture_output=True)
    await asyncio.sleep(1.0)
    ok = stream.resume()
    await asyncio.sleep(0.5)
    stream.check_alive()
    print("resume", ok, "errors", len(errors))
    for e in errors:
        print("error:", e)
    stream.close()

asyncio.run(main())
"""


def test_a_resume_that_fails_is_reported_once_as_a_device_failure(tmp_path: Path) -> None:
    """The sound server goes away while the speaker is paused: starting it again fails, and that is
    reported through the stream's ``on_error`` (the chat's recovery path), once, never raised."""
    require_audio()
    va = VirtualAudio().start()
    try:
        r = subprocess.run([sys.executable, "-c", RESUME_AFTER_SERVER_EXIT], cwd=ROOT, env=va.env,
                           capture_output=True, text=True, timeout=60)
    finally:
        va.stop()
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "resume False errors 1", r.stdout
    assert lines[1].startswith("error: the output device") and "stopped working" in lines[1], r.stdout
    assert "could not be started again" in lines[1], r.stdout


def test_losing_the_sound_server_while_the_speaker_is_paused_exits_6(scripted_server: Served) -> None:
    """The chat's failure path while paused: the recovery tries for its bounded time, then exit 6
    with one error line, no traceback."""
    require_audio()
    va = VirtualAudio().start()
    chat = ChatProc(va.env, "--url", scripted_server.url, *KEY, "--no-ui", "--json", "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        assert _wait_corked(va, chat.proc.pid, True, IDLE_WAIT_S + 1.0) == [True]
        va.pactl("exit", check=False)
        code = chat.wait(timeout=15)
    finally:
        chat.kill()
        va.stop()
    assert code == 6, chat.stderr[-3000:]
    _no_traceback(chat)
    errors = [line for line in chat.stderr.splitlines() if line.startswith("voicecli: error:")]
    assert len(errors) == 1 and "no audio device could be opened again" in errors[0], errors
