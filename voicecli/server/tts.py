"""Text-to-speech engines of the local server.

:class:`EspeakTTS` drives libespeak-ng from the ``espeakng_loader`` wheel through ctypes
(audio-lab.md section 5): ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS)`` once per process, a synth
callback that collects the 22050 Hz int16 samples and the WORD events, then ``soxr`` HQ to 24 kHz.
The WORD events give real per-word timings: one :class:`WordTiming` per whitespace-separated token
of the input text (punctuation stays attached, so ``" ".join(words)`` is the normalised text);
``start_ms`` is where espeak starts the word, ``end_ms`` the next word's start (or the end of the
audio), pulled back over any silence before it. Tokens espeak gives no event of their own (a lone
"-") share the interval of their neighbours; several events inside one token ("42" -> "forty two")
merge into one.

Thread-safety: libespeak-ng is a process-wide singleton and not reentrant. It is loaded lazily on
the first ``synthesize`` (a few ms) and every synthesis runs under one module lock, so any number of
:class:`EspeakTTS` instances may be used from any threads; calls are serialised (~2-5 ms a sentence).

Voices are cosmetic: a protocol voice name maps deterministically (see :func:`espeak_voice_for`) to
an espeak language (``en`` = British for the UK voices, ``en-us`` for all others), a gendered variant
(f1/linda for female names, m1/m3/m4/m6 for male ones, chosen by CRC32 of the name) and a pitch 40-60.
Every voice speaks English; the native-accent voices (lola, giovanni, ...) get no accent.

:class:`ToneTTS` is a deterministic test double that needs no espeak: a tone burst per word.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import re
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.server.engines import RATE, Speech, WordTiming

ESPEAK_RATE = 22050
DEFAULT_VOICE = "alba"
DEFAULT_WPM = 175  # espeak's default rate
MAX_EDGE_SILENCE_MS = 150  # leading/trailing silence beyond this is trimmed
_SILENCE_AMPLITUDE = 0.003  # ~ -50 dBFS peak: below this a sample counts as silence for trimming

# libespeak-ng constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3

UK_VOICES = frozenset({"anna", "charles", "paul", "vera", "sophie", "oliver"})
MALE_VOICES = frozenset(
    {
        "george",
        "michael",
        "charles",
        "paul",
        "giovanni",
        "juergen",
        "rafael",
        "james",
        "tyler",
        "david",
        "jack",
        "kyle",
        "victor",
        "sam",
        "oliver",
        "arjun",
        "ethan",
        "dmitri",
        "lukas",
        "pierre",
        "joon",
        "ren",
        "luca",
        "mateo",
        "diego",
    }
)
_FEMALE_VARIANTS = ("f1", "linda")  # no echo or breath noise: clean pauses and endings
_MALE_VARIANTS = ("m1", "m3", "m4", "m6")

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class EspeakVoice:
    language: str  # espeak voice name: "en-us" or "en" (British)
    variant: str  # espeak variant, e.g. "f1"
    pitch: int  # espeakPITCH, 0-100 (50 = espeak's default)

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


def espeak_voice_for(voice: str | None) -> EspeakVoice:
    """Deterministic, purely cosmetic mapping of a protocol voice name onto espeak settings.

    UK voices (anna, charles, paul, vera, sophie, oliver) -> ``en`` (British), all others ``en-us``;
    male names -> a male variant, anything else (including unknown names) -> a female one; variant
    and pitch (40-60) picked by CRC32 of the lower-cased name. ``None``/empty means ``alba``.
    """
    name = (voice or DEFAULT_VOICE).strip().lower() or DEFAULT_VOICE
    h = zlib.crc32(name.encode("utf-8"))
    pool = _MALE_VARIANTS if name in MALE_VOICES else _FEMALE_VARIANTS
    return EspeakVoice(
        language="en" if name in UK_VOICES else "en-us",
        variant=pool[h % len(pool)],
        pitch=40 + (h >> 8) % 21,
    )


def clean_text(text: str) -> str:
    """Control characters removed (NUL would cut the C string), newlines/tabs folded to spaces."""
    return _CONTROL.sub("", text).replace("\r", " ").replace("\n", " ").replace("\t", " ")


# --------------------------------------------------------------------------- libespeak-ng binding


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character (code point) position
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent)
)


class _Espeak:
    """The process-wide libespeak-ng instance. Use only under ``_LOCK``."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RuntimeError(
                "EspeakTTS needs the 'espeakng-loader' package (libespeak-ng + its data): "
                "pip install espeakng-loader"
            ) from e
        try:
            lib_path = espeakng_loader.get_library_path()
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"EspeakTTS cannot load libespeak-ng from espeakng-loader: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
            self._seed.restype = None
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode("utf-8"), _ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate != ESPEAK_RATE:
            raise RuntimeError(
                f"libespeak-ng failed to initialise with data at {data_path} (returned {rate})"
            )
        self._lib = lib
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int]] = []  # (0-based char index, sample)
        self._callback = _SynthCallback(self._on_synth)  # keep a reference: espeak holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: Any, n: int, events: Any) -> int:
        try:
            if n > 0 and wav:
                self._chunks.append(ctypes.string_at(wav, n * 2))
            i = 0
            while events:
                ev = events[i]
                if ev.type == _EVENT_LIST_TERMINATED:
                    break
                if ev.type == _EVENT_WORD:
                    self._events.append((ev.text_position - 1, ev.sample))
                i += 1
        except Exception:  # noqa: BLE001 - an exception must never propagate into C
            return 1
        return 0

    def synth(
        self, text: str, voice: EspeakVoice, wpm: int
    ) -> tuple[npt.NDArray[np.int16], list[tuple[int, int]]]:
        # Set the voice on every call (~0.1 ms): it also clears the echo buffer of the variants that
        # have one, so the previous utterance's tail never leaks into this one.
        if self._lib.espeak_SetVoiceByName(voice.name.encode("ascii")) != 0:
            raise RuntimeError(f"libespeak-ng has no voice {voice.name!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
        if self._seed is not None:
            self._seed(1)  # (not bit-exact anyway: espeak keeps waveform state; lengths vary by ~1-60 ms)
        self._chunks = []
        self._events = []
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        err = self._lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed (espeak error {err})")
        samples = np.frombuffer(b"".join(self._chunks), dtype="<i2").astype(np.int16)
        return samples, self._events


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None
_ENGINE_ERROR: RuntimeError | None = None


def _engine() -> _Espeak:
    """The lazily initialised process-wide engine. Call with ``_LOCK`` held."""
    global _ENGINE, _ENGINE_ERROR
    if _ENGINE is None:
        if _ENGINE_ERROR is not None:
            raise _ENGINE_ERROR
        try:
            _ENGINE = _Espeak()
        except RuntimeError as e:
            _ENGINE_ERROR = e
            raise
    return _ENGINE


# --------------------------------------------------------------------------- timing helpers


def _token_starts(tokens: list[tuple[int, int]], events: list[tuple[int, int]]) -> list[int | None]:
    """First event sample of each token (None: no event), events matched by character position."""
    starts: list[int | None] = [None] * len(tokens)
    for pos, sample in events:
        idx = None
        for i, (_start, e) in enumerate(tokens):
            if pos < e:
                idx = i  # inside token i, or in the whitespace before it
                break
        if idx is None:
            idx = len(tokens) - 1
        cur = starts[idx]
        starts[idx] = sample if cur is None else min(cur, sample)
    return starts


def _fill_starts(starts: list[int | None], total: int) -> list[float]:
    """Tokens without an event split the interval between their anchored neighbours evenly."""
    n = len(starts)
    out: list[float] = [0.0] * n
    anchors = [(i, float(s)) for i, s in enumerate(starts) if s is not None]
    if not anchors:
        return [total * i / n for i in range(n)]
    first_i, first_s = anchors[0]
    for i in range(first_i):  # leading tokens without events: squeeze before the first anchor
        out[i] = first_s * i / max(first_i, 1)
    anchors.append((n, float(total)))
    for (ia, sa), (ib, sb) in itertools.pairwise(anchors):
        sb = max(sb, sa)
        for k in range(ia, ib):
            out[k] = sa + (sb - sa) * (k - ia) / (ib - ia)
    # monotonic
    for i in range(1, n):
        out[i] = max(out[i], out[i - 1])
    return out


def _speech_end(x: npt.NDArray[np.float32], start: int, end: int, hop: int) -> int:
    """Pull ``end`` back over silence (blocks of ``hop`` samples below the silence level)."""
    e = end
    while e - hop > start and float(np.max(np.abs(x[e - hop : e]), initial=0.0)) < _SILENCE_AMPLITUDE:
        e -= hop
    return e


def _timings(tokens: list[str], starts: list[float], x: npt.NDArray[np.float32]) -> tuple[WordTiming, ...]:
    """WordTimings (ms) from start sample positions at ``RATE`` into the final audio ``x``."""
    n_samples = len(x)
    dur_ms = n_samples * 1000 // RATE
    hop = RATE // 200  # 5 ms
    words: list[WordTiming] = []
    for i, tok in enumerate(tokens):
        s = int(min(max(starts[i], 0.0), n_samples))
        nxt = int(min(max(starts[i + 1], 0.0), n_samples)) if i + 1 < len(tokens) else n_samples
        e = _speech_end(x, s, max(nxt, s), hop)
        start_ms = min(round(s * 1000 / RATE), dur_ms)
        end_ms = min(max(round(e * 1000 / RATE), start_ms), dur_ms)
        if words and start_ms < words[-1].start_ms:
            start_ms = words[-1].start_ms
        words.append(WordTiming(tok, start_ms, max(end_ms, start_ms)))
    return tuple(words)


def _to_pcm16(x: npt.NDArray[np.float32]) -> bytes:
    out: npt.NDArray[np.int16] = np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    return out.tobytes()


# --------------------------------------------------------------------------- engines


class EspeakTTS:
    """libespeak-ng speech with real word timings; PCM16 LE mono 24 kHz.

    ``synthesize`` raises RuntimeError (saying what is missing) if libespeak-ng cannot be loaded.
    """

    def __init__(self, wpm: int = DEFAULT_WPM, espeak_voice: EspeakVoice | None = None) -> None:
        self.wpm = int(wpm)
        self.espeak_voice = espeak_voice   # set: this espeak voice for every protocol voice (tests, bench)

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        text = clean_text(text)
        matches = list(_TOKEN.finditer(text))
        if not matches:
            return Speech(b"", ())
        ev = self.espeak_voice or espeak_voice_for(voice)
        with _LOCK:
            samples, events = _engine().synth(text, ev, self.wpm)
        tokens = [m.group() for m in matches]
        spans = [(m.start(), m.end()) for m in matches]
        starts22 = _fill_starts(_token_starts(spans, events), len(samples))

        x = samples.astype(np.float32) / np.float32(32768.0)
        if len(x):
            x = np.asarray(soxr.resample(x, ESPEAK_RATE, RATE, quality="HQ"), dtype=np.float32)
        scale = RATE / ESPEAK_RATE
        starts = [s * scale for s in starts22]

        # trim leading/trailing silence beyond MAX_EDGE_SILENCE_MS
        keep = RATE * MAX_EDGE_SILENCE_MS // 1000
        loud = np.flatnonzero(np.abs(x) >= _SILENCE_AMPLITUDE)
        if len(loud):
            lead = max(0, int(loud[0]) - keep)
            tail = min(len(x), int(loud[-1]) + 1 + keep)
        else:
            lead, tail = 0, min(len(x), 2 * keep)
        x = x[lead:tail]
        starts = [s - lead for s in starts]
        return Speech(_to_pcm16(x), _timings(tokens, starts, x))


class ToneTTS:
    """Deterministic synthetic "speech" for tests and for when espeak is unavailable.

    Each whitespace token becomes a sine burst (``freq`` Hz, -10 dBFS peak, 5 ms fades) lasting
    ``ms_per_char`` per letter/digit (at least 2, at most 15 counted), followed by a ``gap_ms`` silence
    between words (none after the last). Word timings are exact: ``start_ms`` = burst start,
    ``end_ms`` = burst end. The default voice (None/"alba") uses ``freq``; any other name shifts it
    deterministically by 1.1-1.4x.
    """

    def __init__(self, freq: float = 220.0, ms_per_char: int = 60, gap_ms: int = 40) -> None:
        self.freq = float(freq)
        self.ms_per_char = int(ms_per_char)
        self.gap_ms = int(gap_ms)
        self.clause_gap_ms = self.gap_ms   # clauses synthesized one by one join like words (pipeline.py)

    def _word_ms(self, word: str) -> int:
        n = sum(1 for c in word if c.isalnum())
        return self.ms_per_char * min(max(n, 2), 15)

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        tokens = _TOKEN.findall(clean_text(text))
        if not tokens:
            return Speech(b"", ())
        name = (voice or DEFAULT_VOICE).strip().lower() or DEFAULT_VOICE
        freq = self.freq
        if name != DEFAULT_VOICE:
            freq *= 1.0 + (1 + zlib.crc32(name.encode("utf-8")) % 4) / 10
        fade = RATE * 5 // 1000
        parts: list[npt.NDArray[np.float32]] = []
        words: list[WordTiming] = []
        t_ms = 0
        for i, tok in enumerate(tokens):
            dur = self._word_ms(tok)
            n = RATE * dur // 1000
            t = np.arange(n, dtype=np.float64) / RATE
            burst = 0.316 * np.sin(2 * math.pi * freq * t)
            ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, fade))
            burst[:fade] *= ramp
            burst[n - fade :] *= ramp[::-1]
            parts.append(burst.astype(np.float32))
            words.append(WordTiming(tok, t_ms, t_ms + dur))
            t_ms += dur
            if i + 1 < len(tokens):
                parts.append(np.zeros(RATE * self.gap_ms // 1000, dtype=np.float32))
                t_ms += self.gap_ms
        return Speech(_to_pcm16(np.concatenate(parts)), tuple(words))
