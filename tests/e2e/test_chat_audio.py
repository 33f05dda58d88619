"""`voicecli chat` on real PortAudio devices: a PulseAudio virtual mic (fed with `paplay`) and a
virtual speaker (recorded with `parec`), against `voicecli serve` (scripted engine, tone TTS)."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import numpy as np

from tests.conftest import EXAMPLES, Served, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import RATE, VirtualAudio
from voicecli.server.tts import ToneTTS

KEY = ("--api-key", "test-key")
HELLO = EXAMPLES / "hello.wav"
THANKS = EXAMPLES / "thanks.wav"


def _read_raw(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0


def _best_correlation(recorded: np.ndarray, expected: np.ndarray) -> float:
    """Max normalised cross-correlation of ``expected`` against every lag in ``recorded``."""
    n = len(recorded) + len(expected)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(expected, size)), size)
    lag = int(np.argmax(corr[: len(recorded)]))
    window = recorded[lag: lag + len(expected)]
    if len(window) < len(expected):
        return 0.0
    return float(np.dot(window, expected) / (np.linalg.norm(window) * np.linalg.norm(expected) + 1e-12))


def _active_spans(x: np.ndarray, gap_s: float = 0.25, level: float = 0.01) -> list[tuple[float, float]]:
    """(start_s, end_s) of stretches with audio, joining pauses shorter than ``gap_s``."""
    hop = RATE // 100
    frames = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1) > level
    spans: list[list[float]] = []
    for i in np.flatnonzero(frames):
        t = i * hop / RATE
        if spans and t - spans[-1][1] <= gap_s:
            spans[-1][1] = t + hop / RATE
        else:
            spans.append([t, t + hop / RATE])
    return [(a, b) for a, b in spans]


def _no_traceback(chat: ChatProc) -> None:
    assert "Traceback" not in chat.stderr, chat.stderr


def test_chat_plays_the_reply_records_and_exits_on_ctrl_c(vaudio: VirtualAudio, scripted_server: Served,
                                                          tmp_path: Path) -> None:
    spk = tmp_path / "speaker.raw"
    rec = vaudio.record_speaker(spk)
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="echo"), *KEY, "--no-ui", "--json",
                    "--record", str(tmp_path / "rec"))
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        heard = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=20, what="reply heard")
        time.sleep(0.3)
        code = chat.interrupt()
    finally:
        chat.kill()
        rec.terminate()
        rec.wait()
    assert code == 130, chat.stderr
    _no_traceback(chat)
    assert "interrupted" in chat.stderr
    types = [e["type"] for e in chat.events]
    assert "session.ended" in types[types.index("voicecli.reply.heard"):]   # session.end was sent
    assert [e["text"] for e in chat.of_type("transcript.user")] == ["hello there"]
    assert heard["text"] == "Hello! This is the scripted agent." and heard["interrupted"] is False
    turn = chat.of_type("voicecli.metrics")[0]
    assert turn["scope"] == "turn" and 0 < turn["local_ms"] < 500 and turn["total_ms"] >= turn["server_ms"]

    # the speaker played what the server synthesised
    expected = np.frombuffer(ToneTTS().synthesize(heard["text"]).pcm, dtype="<i2").astype(np.float32) / 32768
    recorded = _read_raw(spk)
    session = chat.of_type("voicecli.metrics")[-1]
    glitches = {k: session.get(k) for k in ("underruns", "device_underflows")}
    if session.get("device_underflows"):
        # the device itself ran dry (CPU contention on a loaded machine) and the chat counted it: the
        # gaps shift the rest of the reply, so the match is checked piece by piece
        pieces = [_best_correlation(recorded, part) for part in np.array_split(expected, 10)]
        assert sum(c > 0.9 for c in pieces) >= 8, (glitches, pieces)
    else:
        assert _best_correlation(recorded, expected) > 0.9, glitches
    # ...and nothing else: one burst of agent audio about as long as the reply
    spans = _active_spans(recorded)
    assert len(spans) == 1 and abs((spans[0][1] - spans[0][0]) - len(expected) / RATE) < 0.15, spans

    # --record: stereo WAV (user left, agent right) and a transcript
    wav_path = next((tmp_path / "rec").glob("chat-*.wav"))
    with wave.open(str(wav_path)) as wf:
        assert wf.getnchannels() == 2 and wf.getframerate() == RATE
        stereo = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").reshape(-1, 2) / 32768.0
    user_spans, agent_spans = _active_spans(stereo[:, 0]), _active_spans(stereo[:, 1])
    assert user_spans and agent_spans and agent_spans[0][0] > user_spans[0][1]   # agent answers after
    assert _best_correlation(stereo[:, 1].astype(np.float32), expected) > 0.99
    doc = json.loads(wav_path.with_suffix(".json").read_text())
    assert [(t["role"], t["text"]) for t in doc["transcript"]] == [
        ("user", "hello there"), ("agent", "Hello! This is the scripted agent.")]


def test_barge_in_silences_the_speaker_and_drops_the_rest(vaudio: VirtualAudio, scripted_server: Served,
                                                          tmp_path: Path) -> None:
    spk = tmp_path / "speaker.raw"
    rec = vaudio.record_speaker(spk)
    # the flush mechanics on a path without echo (--echo off); with AEC: tests/e2e/test_chat_echo.py
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="long"), *KEY, "--no-ui", "--json",
                    "--echo", "off")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "voicecli.metrics", timeout=20, what="first reply audio heard")
        time.sleep(1.5)
        vaudio.play(THANKS).wait(unit(10))
        barge = chat.wait_for(lambda e: e["type"] == "voicecli.barge_in", what="barge-in")
        chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard" and not e["interrupted"], timeout=20,
                      what="the reply to the second turn")
        time.sleep(0.3)
        code = chat.interrupt()
    finally:
        chat.kill()
        rec.terminate()
        rec.wait()
    assert code == 130
    _no_traceback(chat)
    assert barge["trigger"] == "input.speech.started" and barge["played_ms"] > 1000
    assert barge["device_dropped"] is True    # what the device and the server held went too (restart)
    cut = [e for e in chat.of_type("voicecli.reply.heard") if e["interrupted"]]
    assert len(cut) == 1 and cut[0]["text"].startswith("Once upon a time") \
        and abs(cut[0]["played_s"] * 1000 - barge["played_ms"]) < 1
    # the caption is the words played whole, with "…" only when the cut fell inside a word (it may
    # fall in the gap between two words: then no ellipsis)
    deltas = [e for e in chat.of_type("transcript.agent.delta") if e["reply_id"] == cut[0]["reply_id"]]
    played_ms = barge["played_ms"]
    whole = "".join(d["delta"] for d in deltas if d["end_ms"] <= played_ms).rstrip()
    inside = any(d["start_ms"] < played_ms < d["end_ms"] for d in deltas)
    assert cut[0]["text"] == whole + ("…" if inside else ""), (cut[0]["text"], played_ms)

    # On the server's clock: the long reply's first audio was sent at a0, the user's speech was
    # detected at s1. The speaker played the long reply for `played` seconds. Without a local
    # flush it would keep playing the audio already received (the server sends 200 ms ahead,
    # plus the jitter buffer); with it, playback stops one device block after speech.started.
    long_id = chat.of_type("reply.started")[0]["reply_id"]
    a0 = next(e["timestamp"] for e in chat.events if e["type"] == "reply.audio" and e["reply_id"] == long_id)
    s1 = chat.of_type("input.speech.started")[1]["timestamp"]
    spans = _active_spans(_read_raw(spk))
    assert len(spans) == 2, spans                      # the cut long reply, then "Okay, I stopped."
    played = spans[0][1] - spans[0][0]
    overrun = played - (s1 - a0)
    assert overrun < 0.15, f"the speaker kept playing {overrun * 1000:.0f} ms after input.speech.started"
    assert played < 10.0                               # the reply is 18 s long


def test_a_dropped_connection_is_resumed_and_the_conversation_goes_on(vaudio: VirtualAudio,
                                                                     scripted_server: Served) -> None:
    """Issue 4 in chat: the server drops the TCP connection (no close frame) after the first reply;
    chat resumes the same session and the next spoken turn gets its reply through the speaker."""
    chat = ChatProc(vaudio.env, "--url", scripted_server.at(scenario="echo", fault="drop-after-replies=1"),
                    *KEY, "--no-ui", "--json")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "voicecli.resumed", timeout=20, what="the resume")
        vaudio.play(THANKS).wait(unit(10))
        second = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard"
                               and e["text"] == "I am fine, thank you for asking.", timeout=20,
                               what="the reply after the resume")
        time.sleep(0.3)
        code = chat.interrupt()
    finally:
        chat.kill()
    assert code == 130
    _no_traceback(chat)
    assert second["interrupted"] is False
    assert len({e["session_id"] for e in chat.of_type("session.ready")}) == 1     # the same session
    assert "reconnecting" in chat.stderr


def test_device_errors_are_one_line_with_exit_6(vaudio: VirtualAudio, scripted_server: Served) -> None:
    from tests.conftest import run_cli
    r = run_cli("chat", "--url", scripted_server.url, *KEY, "--input-device", "no-such-mic", env=vaudio.env)
    assert r.code == 6
    assert r.stderr.strip().splitlines() == [
        "voicecli: error: no input device matches 'no-such-mic' (input devices: 0 'pulse', 1 'default'; "
        "sound server: 'Monitor of VirtualSpeaker', 'Monitor of Null Output', 'VirtualMic', 'Null Input'; "
        "run `voicecli devices` to see them; only the sound server's devices are listed "
        "(VOICECLI_ALSA=system lists ALSA's own too))"]
    r = run_cli("chat", "--url", scripted_server.url, *KEY, "--output-device", "7", env=vaudio.env)
    assert r.code == 6 and "there is no audio device 7" in r.stderr
    r = run_cli("devices", "--json", env=vaudio.env)
    assert r.code == 0
    devs = json.loads(r.stdout)["devices"]
    default = [d for d in devs if d["default_input"] and d["default_output"]]
    assert default and default[0]["max_input_channels"] > 0 and default[0]["default_samplerate"] > 0


def test_doctor_judges_the_mic_and_checks_the_server(vaudio: VirtualAudio, scripted_server: Served) -> None:
    from tests.conftest import run_cli
    r = run_cli("doctor", "--seconds", "0.6", "--json", env=vaudio.env)
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.code == 6 and checks["microphone"]["status"] == "fail"
    assert "digital silence" in checks["microphone"]["detail"] and "muted" in checks["microphone"]["hint"]
    assert checks["speaker"]["status"] == "ok" and checks["server"]["status"] == "skip"

    feeder = vaudio.play(HELLO)
    time.sleep(0.3)
    r = run_cli("doctor", "--seconds", "1.0", "--url", scripted_server.url, *KEY, "--json", env=vaudio.env)
    feeder.wait(unit(10))
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.code == 0, r.stdout
    assert checks["microphone"]["status"] == "ok" and checks["server"]["status"] == "ok"
    assert "24 kHz" in checks["input device"]["detail"]

    feeder = vaudio.play(THANKS)
    time.sleep(0.3)
    r = run_cli("doctor", "--seconds", "0.5", "--url", scripted_server.url, "--api-key", "wrong", env=vaudio.env)
    feeder.wait(unit(10))
    assert r.code == 3 and "FAIL  server: the server refused the credentials" in r.stdout, r.stdout


def test_losing_the_sound_server_mid_chat_exits_6_without_hanging(scripted_server: Served) -> None:
    from tests.e2e.conftest import require_audio
    require_audio()
    va = VirtualAudio().start()     # a daemon of its own: this test kills it
    chat = ChatProc(va.env, "--url", scripted_server.url, *KEY, "--no-ui", "--json")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        gone = time.monotonic()         # before: the chat may notice while pactl is still returning
        va.pactl("exit", check=False)
        code = chat.wait(timeout=10)
        took = time.monotonic() - gone
    finally:
        chat.kill()
        va.stop()
    assert code == 6, chat.stderr[-3000:]
    _no_traceback(chat)
    errors = [line for line in chat.stderr.splitlines() if line.startswith("voicecli: error:")]
    assert len(errors) == 1 and "stopped working" in errors[0] and "voicecli devices" in errors[0], errors
    # it tried to reopen the devices for its bounded time (REOPEN_S), then gave up
    assert "no audio device could be opened again for 5 s" in errors[0], errors
    assert 4.5 <= took < unit(9.0), took      # it retries for REOPEN_S (5 s) from when it noticed
    assert chat.of_type("session.ended")      # the session was still ended politely
