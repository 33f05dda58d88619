"""EspeakTTS (real libespeak-ng via espeakng-loader) and the ToneTTS test double."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from voicecli.server.engines import BYTES_PER_MS, RATE, Speech, TextToSpeech
from voicecli.server.tts import (
    _FEMALE_VARIANTS,
    _LOCK,
    _MALE_VARIANTS,
    ESPEAK_RATE,
    EspeakTTS,
    ToneTTS,
    _engine,
    espeak_voice_for,
)

SENTENCE = "Turn on the kitchen lights, then tell me what the weather is like tomorrow in Paris."


def samples(sp: Speech) -> np.ndarray:
    return np.frombuffer(sp.pcm, dtype="<i2").astype(np.float64) / 32768.0


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) + 1e-12)) if len(x) else -200.0


def seg(x: np.ndarray, start_ms: float, end_ms: float) -> np.ndarray:
    return x[int(start_ms * RATE / 1000) : int(end_ms * RATE / 1000)]


def f0_hz(x: np.ndarray) -> float:
    """Median autocorrelation pitch (60-400 Hz) over loud 40 ms frames."""
    n = RATE * 40 // 1000
    lo, hi = RATE // 400, RATE // 60
    est = []
    for i in range(0, len(x) - n, n):
        f = x[i : i + n]
        if rms_db(f) < -25:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[n - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            est.append(RATE / lag)
    assert est, "no voiced frames"
    return float(np.median(est))


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


def check_timings(sp: Speech, text: str) -> None:
    tokens = text.split()
    assert [w.word for w in sp.words] == tokens
    prev_start = 0
    for w in sp.words:
        assert 0 <= w.start_ms <= w.end_ms <= sp.duration_ms
        assert w.start_ms >= prev_start
        prev_start = w.start_ms
    for a, b in zip(sp.words, sp.words[1:], strict=False):
        assert a.end_ms <= b.start_ms


def test_protocol(tts: EspeakTTS) -> None:
    assert isinstance(tts, TextToSpeech)
    assert isinstance(ToneTTS(), TextToSpeech)


def test_sentence_audio_and_timings(tts: EspeakTTS) -> None:
    sp = tts.synthesize(SENTENCE)
    assert len(sp.pcm) % 2 == 0
    x = samples(sp)
    # plausible speech: 15 words at ~160 wpm with pauses -> 3-8 s, at a normal level
    assert 3000 < sp.duration_ms < 8000
    assert -30 < rms_db(x) < -6
    assert np.max(np.abs(x)) < 1.0
    check_timings(sp, SENTENCE)
    # each word's interval carries speech energy
    for w in sp.words:
        assert w.end_ms - w.start_ms >= 40, w
        assert rms_db(seg(x, w.start_ms, w.end_ms)) > -35, w
    # the last word ends at the end of the audio (no long trailing silence)
    assert sp.duration_ms - sp.words[-1].end_ms < 200
    # the comma is a real pause: "lights," ends before "then" starts, with silence in between
    lights, then = sp.words[4], sp.words[5]
    assert lights.word == "lights," and then.word == "then"
    assert then.start_ms - lights.end_ms >= 50
    assert rms_db(seg(x, lights.end_ms + 5, then.start_ms - 5)) < -45


def test_output_is_24khz(tts: EspeakTTS) -> None:
    """The 22050 Hz espeak output is resampled: 24 kHz length, same pitch in Hz."""
    sp = tts.synthesize("Hello there, how are you today?", "george")
    with _LOCK:
        raw, _ = _engine().synth("Hello there, how are you today?", espeak_voice_for("george"), tts.wpm)
    expected = len(raw) * RATE / ESPEAK_RATE
    assert abs(len(sp.pcm) / 2 - expected) < RATE * 0.08  # espeak lengths vary a little per call
    raw_f = raw.astype(np.float64) / 32768.0
    raw_f0 = f0_hz(np.interp(np.arange(0, len(raw_f), ESPEAK_RATE / RATE), np.arange(len(raw_f)), raw_f))
    assert f0_hz(samples(sp)) == pytest.approx(raw_f0, rel=0.08)


def test_edge_silence_is_short(tts: EspeakTTS) -> None:
    x = samples(tts.synthesize("...   Hello.   ...   "))
    loud = np.flatnonzero(np.abs(x) > 0.003)
    assert len(loud)
    assert loud[0] <= RATE * 0.16
    assert len(x) - loud[-1] <= RATE * 0.16


def test_voices_differ(tts: EspeakTTS) -> None:
    alba = tts.synthesize("This is a test of the voice.", "alba")
    george = tts.synthesize("This is a test of the voice.", "george")
    anna = tts.synthesize("This is a test of the voice.", "anna")
    assert alba.pcm != george.pcm and alba.pcm != anna.pcm
    assert f0_hz(samples(george)) < 0.8 * f0_hz(samples(alba))  # male variant is lower
    assert [w.word for w in anna.words] == [w.word for w in alba.words]


def test_voice_mapping_deterministic() -> None:
    assert espeak_voice_for("anna").language == "en"
    assert espeak_voice_for("charles").language == "en"
    assert espeak_voice_for("alba").language == "en-us"
    assert espeak_voice_for("george").variant in _MALE_VARIANTS
    assert espeak_voice_for("alba").variant in _FEMALE_VARIANTS
    assert espeak_voice_for(None) == espeak_voice_for("alba") == espeak_voice_for(" ALBA ")
    assert espeak_voice_for("no-such-voice") == espeak_voice_for("no-such-voice")
    for v in ["alba", "eve", "george", "anna", "lola", "ivy", "x"]:
        assert 40 <= espeak_voice_for(v).pitch <= 60


def test_unknown_voice_still_speaks(tts: EspeakTTS) -> None:
    assert tts.synthesize("Hello.", "zzz-unknown").duration_ms > 200


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00"])
def test_empty(tts: EspeakTTS, text: str) -> None:
    assert tts.synthesize(text) == Speech(b"", ())
    assert ToneTTS().synthesize(text) == Speech(b"", ())


def test_non_ascii(tts: EspeakTTS) -> None:
    text = "Un café, s'il vous plaît: naïve résumé über 42 things — done."
    sp = tts.synthesize(text)
    assert sp.duration_ms > 1500
    check_timings(sp, text)
    x = samples(sp)
    cafe = sp.words[1]
    assert cafe.word == "café," and rms_db(seg(x, cafe.start_ms, cafe.end_ms)) > -35
    # "42" is spoken as two words by espeak but stays one timing
    n42 = next(w for w in sp.words if w.word == "42")
    assert n42.end_ms - n42.start_ms > 300


def test_control_characters_and_emoji(tts: EspeakTTS) -> None:
    sp = tts.synthesize("Hello\x00 world\x1b[31m \U0001f600 again\r\nnow")
    assert sp.duration_ms > 500
    assert [w.word for w in sp.words][:2] == ["Hello", "world[31m"]
    assert sp.words[-1].word == "now"


def test_several_sentences(tts: EspeakTTS) -> None:
    text = "First sentence here. Second one is a little longer! Third? Yes."
    sp = tts.synthesize(text)
    check_timings(sp, text)
    # a sentence break is a longer pause than a word gap
    here, second = sp.words[2], sp.words[3]
    assert second.start_ms - here.end_ms > 150


def test_thread_safe(tts: EspeakTTS) -> None:
    ref = tts.synthesize(SENTENCE)
    results: list[Speech] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(5):
                results.append(tts.synthesize(SENTENCE))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20
    for r in results:
        # espeak is not bit-exact from call to call (waveform state, flutter): within ~2 %
        assert abs(r.duration_ms - ref.duration_ms) < 100
        assert -30 < rms_db(samples(r)) < -6
        assert [w.word for w in r.words] == [w.word for w in ref.words]


def test_tone_tts_timings() -> None:
    text = "Hi there, general Kenobi!"
    sp = ToneTTS().synthesize(text)
    assert [w.word for w in sp.words] == text.split()
    # 60 ms per letter (min 2 letters), 40 ms gaps
    assert [(w.start_ms, w.end_ms) for w in sp.words] == [(0, 120), (160, 460), (500, 920), (960, 1320)]
    assert sp.duration_ms == 1320
    assert len(sp.pcm) == 1320 * BYTES_PER_MS
    x = samples(sp)
    for w in sp.words:
        assert rms_db(seg(x, w.start_ms + 10, w.end_ms - 10)) > -15
    for a, b in zip(sp.words, sp.words[1:], strict=False):
        assert np.all(seg(x, a.end_ms, b.start_ms) == 0)
    # 220 Hz by default
    assert f0_hz(x) == pytest.approx(220, rel=0.03)
    assert ToneTTS().synthesize(text).pcm == sp.pcm  # deterministic
    assert ToneTTS().synthesize(text, "alba").pcm == sp.pcm
    george = ToneTTS().synthesize(text, "george")
    assert george.words == sp.words and f0_hz(samples(george)) > 1.05 * 220


def test_espeak_duration_matches_words(tts: EspeakTTS) -> None:
    short = tts.synthesize("Yes.")
    long = tts.synthesize(" ".join(["word"] * 20) + ".")
    assert short.duration_ms < 1000
    assert long.duration_ms > 4000
    assert len(long.words) == 20
    assert re.fullmatch(r"word\.?", long.words[-1].word)


def test_the_shared_tts_never_gets_a_clause_longer_than_the_cap() -> None:
    """One TTS serves every session; a long clause would hold it (and every other session) for
    seconds, so the server cuts clauses at spaces (a word longer than the cap: hard)."""
    from voicecli.server.app import MAX_CLAUSE_CHARS, cap_clauses
    words = " ".join(f"word{i}" for i in range(2000))          # ~16 KB, no punctuation: one clause
    parts = cap_clauses([words, "short one", "x" * 600])
    assert max(len(p) for p in parts) <= MAX_CLAUSE_CHARS
    assert " ".join(parts[:-4]) == words and parts[-4] == "short one" and "".join(parts[-3:]) == "x" * 600
