"""Speech the tests make themselves: espeak-ng (voicecli.server.tts.EspeakTTS) and piper Joe.

Prompts are short voice-agent sentences; :func:`voices` gives the (name, synthesizer) renderings the
WER tests and the bench run over. EspeakTTS always adds a variant to the espeak voice, so "espeak
default" here is British ``en+linda`` at espeak's default 175 wpm (protocol voice "anna"; the hardest
for Whisper, like audio-lab 7.1's espeak default), "espeak en-us 140" is ``en-us+m1`` at 140 wpm
("george"), then ``en-us+m4`` 140 wpm ("michael"), ``en-us+linda`` 175 wpm ("alba"), and piper Joe
(when the speech extra is installed)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from voicecli.server.engines import BYTES_PER_MS, RATE
from voicecli.server.tts import EspeakTTS

PROMPTS = [
    "turn on the kitchen lights",
    "what is the weather like tomorrow in paris",
    "please call my mother at seven o'clock",
    "set a timer for ten minutes",
    "play some relaxing music in the living room",
    "how long does it take to drive to the airport",
    "remind me to buy milk on the way home",
    "what time is it in tokyo right now",
    "send a message to john saying i am running late",
    "book a table for two at an italian restaurant",
]

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
            "7": "seven", "8": "eight", "9": "nine", "10": "ten"}

Synth = Callable[[str], bytes]


def silence(ms: float) -> bytes:
    return bytes(int(BYTES_PER_MS * ms) // 2 * 2)


def noise(ms: float, dbfs: float, seed: int = 7) -> bytes:
    x = np.random.default_rng(seed).normal(0.0, 10 ** (dbfs / 20), int(RATE * ms / 1000))
    return np.rint(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def espeak(voice: str, wpm: int = 175) -> Synth:
    tts = EspeakTTS(wpm=wpm)
    return lambda text: tts.synthesize(text, voice).pcm


def espeak_plain(language: str, wpm: int = 175) -> Synth:
    """espeak-ng's own voice ``language`` with no variant and its default pitch (``en`` is espeak-ng's
    default voice), as ``espeak-ng -v en`` speaks it."""
    from voicecli.server.tts import EspeakVoice

    tts = EspeakTTS(wpm=wpm, espeak_voice=EspeakVoice(language, "", 50))
    return lambda text: tts.synthesize(text).pcm


def piper() -> Synth:
    from voicecli.speech.piper import PiperTTS

    tts = PiperTTS()
    return lambda text: tts.synthesize(text).pcm


VOICES: dict[str, Callable[[], Synth]] = {
    "espeak default": lambda: espeak("anna"),
    "espeak en-us 140": lambda: espeak("george", 140),
    "espeak en-us 140 m4": lambda: espeak("michael", 140),
    "espeak en-us 175 f": lambda: espeak("alba"),
    "espeak en (plain default)": lambda: espeak_plain("en"),
    "espeak en-us (plain)": lambda: espeak_plain("en-us"),
    "espeak en-us 140 (plain)": lambda: espeak_plain("en-us", 140),
    "piper joe": piper,
}


def voice(name: str) -> Synth:
    """The synthesizer of :data:`VOICES` ``name`` (piper needs the speech extra)."""
    return VOICES[name]()


def normalise(text: str) -> list[str]:
    """Lower case, punctuation dropped, digits as words ("7" = "seven"), o'clock kept as one word."""
    words = re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(w, w) for w in (w.strip("'") for w in words) if w]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    r, h = normalise(ref), normalise(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)], len(r)
