"""Issue 10, device hot-swap: a chat whose device goes away mid-session reopens it, says so in one
line, and the conversation goes on (the same session, the next reply heard on the speaker); only when
no device can be opened at all does it exit 6 (``test_losing_the_sound_server_mid_chat_exits_6...``
in test_chat_audio.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLES, Served, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _best_correlation, _no_traceback, _read_raw
from voicecli.server.tts import ToneTTS

KEY = ("--api-key", "test-key")
HELLO = EXAMPLES / "hello.wav"
THANKS = EXAMPLES / "thanks.wav"
SECOND = "I am fine, thank you for asking."


def _streams_of(va: VirtualAudio, pid: int, what: str = "sink-inputs") -> list[str]:
    """Indexes of the sink inputs (or source outputs) the process ``pid`` has open."""
    head = "Sink Input #" if what == "sink-inputs" else "Source Output #"
    return [block.split("\n", 1)[0].strip() for block in va.pactl("list", what).split(head)[1:]
            if f'application.process.id = "{pid}"' in block]


def _tone(text: str) -> np.ndarray:
    return np.frombuffer(ToneTTS().synthesize(text).pcm, dtype="<i2").astype(np.float32) / 32768


@pytest.mark.parametrize("what", ["sink-inputs", "source-outputs"])
def test_a_killed_stream_is_reopened_and_the_chat_goes_on(vaudio: VirtualAudio, scripted_server: Served,
                                                          tmp_path: Path, what: str) -> None:
    """The sound server drops the chat's playback (or capture) stream mid-reply (what PortAudio sees when
    the device under it goes away and nothing can take the stream over): the chat reopens within a
    second, says so once, the reply goes on, and the next turn (spoken into the reopened mic) gets its
    reply heard on the speaker."""
    module = vaudio.pactl("load-module", "module-cli-protocol-unix").strip()   # for pacmd
    spk = tmp_path / "speaker.raw"
    rec = vaudio.record_speaker(spk)
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="echo"), *KEY, "--no-ui", "--json",
                    "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "voicecli.metrics", timeout=20, what="the first reply heard")
        [stream] = _streams_of(vaudio, chat.proc.pid, what)
        killed_at = time.monotonic()
        subprocess.run(["pacmd", "kill-" + what[:-1], stream], env=vaudio.env, check=True, timeout=10,
                       capture_output=True)
        reopened = chat.wait_for(lambda e: e["type"] == "voicecli.device.reopened", timeout=5, what="the reopen")
        assert reopened["_received"] - killed_at < unit(1.5), reopened
        first = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="the first reply")
        assert _streams_of(vaudio, chat.proc.pid, what) not in ([], [stream])       # a new stream runs
        vaudio.play(THANKS).wait(unit(10))
        second = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard" and e["text"] == SECOND,
                               timeout=20, what="the reply after the reopen")
        time.sleep(0.3)
        code = chat.interrupt()
    finally:
        chat.kill()
        rec.terminate()
        rec.wait()
        vaudio.pactl("unload-module", module, check=False)
    assert code == 130, chat.stderr
    _no_traceback(chat)
    assert first["interrupted"] is False and second["interrupted"] is False
    assert len(chat.of_type("session.ready")) == 1                          # the same session throughout
    assert reopened["output"] and reopened["output_rate"] > 0 and reopened["took_ms"] < 1000, reopened
    lines = [line for line in chat.stderr.splitlines() if "reopened" in line]
    assert len(lines) == 1 and "audio device lost" in lines[0] and "the conversation goes on" in lines[0], \
        chat.stderr
    assert not [line for line in chat.stderr.splitlines() if line.startswith("voicecli: error:")]
    assert "pa_linux_alsa" not in chat.stderr, chat.stderr                # PortAudio's own C prints
    assert _best_correlation(_read_raw(spk), _tone(SECOND)) > 0.9          # the next reply was heard
    summary = chat.session_summary()
    assert summary["device_reopens"] == 1, summary
    # the sound server's events are few: a handful of `pactl list` rounds, not a poll
    print("device checks:", summary["device_checks"])
    assert summary["device_checks"] <= 5, summary


def test_a_removed_and_re_added_sink_is_followed_and_the_next_reply_is_heard(scripted_server: Served,
                                                                             tmp_path: Path) -> None:
    """Through a sound server the stream outlives its sink: unloading the sink the chat plays to makes
    the server move it to its default, re-adding it moves it back. The chat says so (one line each,
    ``voicecli.device.moved``), keeps the session, and the next reply is heard on the re-added sink."""
    from tests.e2e.conftest import require_audio
    require_audio()
    va = VirtualAudio().start()     # a daemon of its own: this test removes its speaker
    # a second speaker the server prefers over the mic feed as the fallback (a "sound" class device, like
    # laptop speakers); vspk stays the configured default, so it gets its streams back when it returns
    va.pactl("load-module", "module-null-sink", "sink_name=backup", "rate=24000", "channels=1",
             "sink_properties='device.description=BackupSpeaker device.class=sound'")
    spk = tmp_path / "speaker.raw"
    rec = None
    chat = ChatProc(va.env, "--url", scripted_server.at(scenario="echo"), *KEY, "--no-ui", "--json",
                    "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        time.sleep(1.0)
        [module] = [line.split("\t")[0] for line in va.pactl("list", "short", "modules").splitlines()
                    if "module-null-sink" in line and "sink_name=vspk" in line]
        va.pactl("unload-module", module)
        away = chat.wait_for(lambda e: e["type"] == "voicecli.device.moved", timeout=5, what="the move away")
        va.pactl("load-module", "module-null-sink", "sink_name=vspk", "rate=24000", "channels=1",
                 "sink_properties=device.description=VirtualSpeaker")
        back = chat.wait_for(lambda e: e["type"] == "voicecli.device.moved" and e is not away, timeout=5,
                             what="the move back")
        rec = va.record_speaker(spk)
        time.sleep(0.3)
        va.play(HELLO).wait(unit(10))
        heard = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="the reply")
        time.sleep(0.3)
        code = chat.interrupt()
    finally:
        chat.kill()
        if rec is not None:
            rec.terminate()
            rec.wait()
        va.stop()
    assert code == 130, chat.stderr
    _no_traceback(chat)
    assert (away["stream"], away["from"], away["to"]) == ("output", "VirtualSpeaker", "BackupSpeaker"), away
    assert (back["stream"], back["from"], back["to"]) == ("output", "BackupSpeaker", "VirtualSpeaker"), back
    lines = [line for line in chat.stderr.splitlines() if "the sound server moved it" in line]
    assert len(lines) == 2 and "speaker now on 'BackupSpeaker'" in lines[0], chat.stderr
    assert len(chat.of_type("session.ready")) == 1 and heard["interrupted"] is False
    assert _best_correlation(_read_raw(spk), _tone(heard["text"])) > 0.9     # heard on the re-added sink


def test_the_reopen_is_one_line_on_the_live_screen_and_the_reply_goes_on(vaudio: VirtualAudio,
                                                                         tmp_path: Path) -> None:
    """The live view (tmux): the speaker's stream is dropped while the agent speaks a 6 s greeting;
    one line says the device was reopened, the greeting keeps coming (later words still appear), and
    `q` ends the chat with exit 0."""
    from tests.e2e.test_chat_terminal import TmuxChat
    from tests.hostile_server import HostileServer, Hostility
    module = vaudio.pactl("load-module", "module-cli-protocol-unix").strip()
    try:
        with HostileServer(Hostility(greet_ms=6000)) as srv:
            chat = TmuxChat(vaudio.env, tmp_path, "--url", srv.url, "--api-key", "k", "--echo", "off")
            try:
                chat.wait_for("word2")
                [stream] = _streams_of(vaudio, chat.pid)
                subprocess.run(["pacmd", "kill-sink-input", stream], env=vaudio.env, check=True, timeout=10,
                               capture_output=True)
                chat.wait_for("reopened in", timeout=5)
                chat.wait_for("word12", timeout=15)               # the greeting went on
                chat.type("q")
                code = chat.wait(timeout=15)
                whole = chat.screen()
            finally:
                chat.close()
    finally:
        vaudio.pactl("unload-module", module, check=False)
    assert code == 0, whole
    assert whole.count("audio device lost") == 1 and whole.count("reopened in") == 1, whole
    assert "the conversation goes on" in " ".join(whole.split()), whole     # (rich wraps the line)
    assert "pa_linux_alsa" not in whole and "Expression" not in whole, whole  # PortAudio's own C prints
