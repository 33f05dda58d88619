"""`voicecli ask --play` on the virtual speaker: the agent's reply is heard as it arrives (through the
chat's Speaker and jitter buffer), all of it before ask exits, alongside --save-reply; a missing speaker
is one line and exit 6 before anything is sent."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np

from tests.conftest import EXAMPLES, Served, run_cli
from tests.e2e.pulse import VirtualAudio
from tests.e2e.test_chat_audio import _active_spans, _best_correlation, _read_raw

KEY = ("--api-key", "test-key")


def test_ask_play_is_heard_on_the_speaker_and_saved(vaudio: VirtualAudio, scripted_server: Served,
                                                    tmp_path: Path) -> None:
    spk, out = tmp_path / "speaker.raw", tmp_path / "reply.wav"
    rec = vaudio.record_speaker(spk)
    try:
        time.sleep(0.3)
        r = run_cli("ask", str(EXAMPLES / "hello.wav"), "--url", scripted_server.url, *KEY, "--pace", "fast",
                    "--play", "--save-reply", str(out), env=vaudio.env)
        time.sleep(0.3)
    finally:
        rec.terminate()
        rec.wait()
    assert r.code == 0, r.stderr
    assert "Hello! This is the scripted agent." in r.stdout
    with wave.open(str(out)) as wf:
        saved = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32) / 32768
    assert len(saved) > 24000 * 0.5
    recorded = _read_raw(spk)
    assert _best_correlation(recorded, saved) > 0.9            # what was saved was heard
    spans = _active_spans(recorded)                            # all of it, before ask exited
    assert len(spans) == 1 and abs((spans[0][1] - spans[0][0]) - len(saved) / 24000) < 0.15, spans


def test_ask_play_with_a_missing_speaker_is_one_line_and_exit_6(vaudio: VirtualAudio,
                                                               scripted_server: Served) -> None:
    r = run_cli("ask", str(EXAMPLES / "hello.wav"), "--url", scripted_server.url, *KEY, "--play", "--output-device",
                "no-such-speaker", env=vaudio.env)
    assert r.code == 6, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voicecli: error: no output device matches 'no-such-speaker'")
