"""Energy-based turn detection for the local server (no model, numpy only).

Input is PCM16 LE mono 24 kHz, cut into 10 ms frames (240 samples); a partial frame and an odd
trailing byte are kept for the next ``feed``, so any chunking yields the same events. Time is audio
time: frame index x 10 ms since the first sample (or since ``reset``), never the wall clock.

Per frame:

* level = RMS in dBFS (full scale = 32768; digital silence = -120 dBFS).
* noise floor = a slowly tracking minimum: the minimum level over the last 1.5 s (15 blocks of
  100 ms); the floor follows that minimum *down* at once and *up* at most 8 dB/s, clamped to
  [-72, -20] dBFS. Speech has pauses and closures every few hundred ms, so the floor stays under it;
  steady noise (a fan, a hissy mic) becomes the floor within ~1.5 s plus 8 dB/s.
* threshold = max(floor + margin, absolute minimum), where ``vad_threshold`` t (0..1, default 0.5;
  lower = more sensitive, as in the API) maps linearly onto
  margin = 6 + 24 t dB (6 / 18 / 30 dB at t = 0 / 0.5 / 1) and
  absolute minimum = -58 + 16 t dBFS (-58 / -50 / -42 dBFS).
  So digital silence and -60 dBFS noise are silence at every t; espeak speech (-35..-11 dBFS) is
  speech at every t.
* a frame is speech if level > threshold.

Turn rules:

* ``started`` once 80 ms (8 frames) of consecutive speech frames are seen; ``at_ms`` = start of the
  first of them.
* ``stopped`` once ``min_silence`` ms of consecutive non-speech frames follow; ``at_ms`` = the time
  the silence began (end of the last speech frame). Unset ``min_silence`` defaults to 600 ms, shorter
  than the API's adaptive default (and its 1000 ms schema default) so scripted prompts finish quickly.
* ``max_silence`` is the hard cap on the silence that ends a turn: an energy detector has no "maybe
  still talking" signal, so the turn ends at ``min(min_silence, max_silence)``. Only ``max_silence``
  set -> the wait is ``min(600, max_silence)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from voicecli.server.engines import RATE, TurnEvent

FRAME_MS = 10
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 240
FRAME_BYTES = FRAME_SAMPLES * 2  # 480

DEFAULT_VAD_THRESHOLD = 0.5
DEFAULT_MIN_SILENCE_MS = 600
START_MS = 80  # consecutive speech needed for "started"

SILENCE_DB = -120.0
FLOOR_MIN_DB = -72.0
FLOOR_MAX_DB = -20.0
FLOOR_RISE_DB_PER_FRAME = 8.0 * FRAME_MS / 1000  # 8 dB/s
FLOOR_BLOCK_FRAMES = 10  # 100 ms blocks
FLOOR_WINDOW_BLOCKS = 15  # 1.5 s window


def margin_db(vad_threshold: float) -> float:
    """dB above the noise floor a frame must reach to count as speech."""
    return 6.0 + 24.0 * vad_threshold


def absolute_min_db(vad_threshold: float) -> float:
    """dBFS a frame must exceed to count as speech whatever the floor."""
    return -58.0 + 16.0 * vad_threshold


def frame_levels_db(pcm: bytes) -> np.ndarray[Any, np.dtype[np.float64]]:
    """RMS level in dBFS of each complete 10 ms frame of ``pcm`` (PCM16 LE 24 kHz)."""
    n = len(pcm) // FRAME_BYTES
    x = np.frombuffer(pcm, dtype="<i2", count=n * FRAME_SAMPLES).astype(np.float64).reshape(n, FRAME_SAMPLES)
    rms = np.sqrt(np.mean(x * x, axis=1)) / 32768.0
    with np.errstate(divide="ignore"):
        db: np.ndarray[Any, np.dtype[np.float64]] = np.maximum(20.0 * np.log10(rms), SILENCE_DB)
    return db


def _clamp(v: Any, lo: float, hi: float, default: float) -> float:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return default
    return float(min(max(v, lo), hi))


class EnergyTurnDetector:
    """:class:`~voicecli.server.engines.TurnDetector` on RMS energy with an adaptive noise floor.

    Not thread-safe (one per session; call from one task). ``feed`` costs ~1 µs per 10 ms frame
    plus numpy overhead per call.
    """

    def __init__(self, turn_detection: dict[str, Any] | None = None) -> None:
        self.vad_threshold = DEFAULT_VAD_THRESHOLD
        self.min_silence_ms = DEFAULT_MIN_SILENCE_MS  # effective: the silence that ends a turn
        self.max_silence_ms: int | None = None
        self.configure(turn_detection)
        self.reset()

    # -- configuration
    def configure(self, turn_detection: dict[str, Any] | None) -> None:
        """Apply ``input.turn_detection`` (None or missing fields -> defaults). Keeps the detector's
        state, so a mid-session update applies to the ongoing audio. Out-of-range values are clamped
        (validation is the session's job)."""
        td = turn_detection or {}
        self.vad_threshold = _clamp(td.get("vad_threshold"), 0.0, 1.0, DEFAULT_VAD_THRESHOLD)
        mn = td.get("min_silence")
        mx = td.get("max_silence")
        self.max_silence_ms = None if mx is None else int(_clamp(mx, 50, 10000, 3000))
        wait = int(_clamp(mn, 50, 10000, DEFAULT_MIN_SILENCE_MS))
        if self.max_silence_ms is not None:
            wait = min(wait, self.max_silence_ms)
        self.min_silence_ms = wait

    # -- state
    def reset(self) -> None:
        """Forget all audio: time restarts at 0, floor and turn state are cleared."""
        self._buf = bytearray()
        self._frame = 0  # frames consumed
        self._floor = FLOOR_MIN_DB
        self._block_min = float("inf")
        self._block_n = 0
        self._blocks: deque[float] = deque(maxlen=FLOOR_WINDOW_BLOCKS)
        self._in_speech = False
        self._run_start: int | None = None  # first frame of the current speech run (not yet started)
        self._run_len = 0
        self._speech_start = 0  # frame of the current/last utterance's start
        self._speech_end: int | None = None  # frame where the last utterance stopped
        self._silence_start: int | None = None  # first silent frame while in speech
        self._last_speech_frame_end = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def position_ms(self) -> float:
        """Audio time consumed so far (complete frames), ms."""
        return float(self._frame * FRAME_MS)

    @property
    def speech_ms(self) -> float:
        """Length of the current utterance so far (start to the end of its last speech frame), or
        of the last finished one (start to the stop's ``at_ms``); 0 before any."""
        if self._in_speech:
            return float((self._last_speech_frame_end - self._speech_start) * FRAME_MS)
        if self._speech_end is None:
            return 0.0
        return float((self._speech_end - self._speech_start) * FRAME_MS)

    @property
    def noise_floor_db(self) -> float:
        return self._floor

    @property
    def threshold_db(self) -> float:
        return max(self._floor + margin_db(self.vad_threshold), absolute_min_db(self.vad_threshold))

    # -- processing
    def feed(self, pcm: bytes) -> list[TurnEvent]:
        self._buf += pcm
        n = len(self._buf) // FRAME_BYTES
        if n == 0:
            return []
        levels = frame_levels_db(bytes(self._buf[: n * FRAME_BYTES]))
        del self._buf[: n * FRAME_BYTES]
        events: list[TurnEvent] = []
        for level in levels.tolist():
            ev = self._step(level)
            if ev is not None:
                events.append(ev)
        return events

    def _update_floor(self, level: float) -> None:
        self._block_min = min(self._block_min, level)
        self._block_n += 1
        if self._block_n >= FLOOR_BLOCK_FRAMES:
            self._blocks.append(self._block_min)
            self._block_min = float("inf")
            self._block_n = 0
        target = min(min(self._blocks, default=level), self._block_min, level)
        if target < self._floor:
            self._floor = target
        else:
            self._floor = min(target, self._floor + FLOOR_RISE_DB_PER_FRAME)
        self._floor = min(max(self._floor, FLOOR_MIN_DB), FLOOR_MAX_DB)

    def _step(self, level: float) -> TurnEvent | None:
        i = self._frame
        self._frame += 1
        is_speech = level > self.threshold_db  # classify against the floor before this frame
        self._update_floor(level)
        if not self._in_speech:
            if is_speech:
                if self._run_start is None:
                    self._run_start = i
                    self._run_len = 0
                self._run_len += 1
                if self._run_len * FRAME_MS >= START_MS:
                    self._in_speech = True
                    self._speech_start = self._run_start
                    self._last_speech_frame_end = i + 1
                    self._silence_start = None
                    self._run_start = None
                    return TurnEvent("started", float(self._speech_start * FRAME_MS))
            else:
                self._run_start = None
                self._run_len = 0
            return None
        if is_speech:
            self._silence_start = None
            self._last_speech_frame_end = i + 1
            return None
        if self._silence_start is None:
            self._silence_start = i
        if (i + 1 - self._silence_start) * FRAME_MS >= self.min_silence_ms:
            self._in_speech = False
            self._speech_end = self._silence_start
            self._silence_start = None
            return TurnEvent("stopped", float(self._speech_end * FRAME_MS))
        return None
