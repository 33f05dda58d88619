"""Offline speech engines for the local server (issue 8): Silero VAD, Whisper tiny.en STT, piper TTS,
and an OpenAI-compatible streaming LLM client. Each is a plain synchronous class, safe to call from a
worker thread; models load once per process from installed packages only (see models.py).

Nothing heavy is imported here: ``from voicecli.speech import detect`` costs only package look-ups.
"""

from voicecli.speech.available import Engines, Preload, detect, preload

__all__ = ["Engines", "Preload", "detect", "preload"]
