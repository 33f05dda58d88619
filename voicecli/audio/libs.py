"""Native libraries by their Linux sonames, without ``ctypes.util.find_library``.

On Linux ``find_library`` runs ``ldconfig -p`` (and, when that finds nothing, ``gcc`` and ``ld``) as
child processes: ~10 ms and a ~30 MiB child each time. A chat asked it three times while starting
(sounddevice for PortAudio, voicecli for libasound and libc) and once more for libpulse (pulsectl),
issue 10, Cost. The sonames these libraries have had for decades are tried first (a ``dlopen`` of a
library that is loaded already costs microseconds); ``find_library`` is only the fallback."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SONAMES = {"portaudio": "libportaudio.so.2", "asound": "libasound.so.2", "c": "libc.so.6",
           "libpulse": "libpulse.so.0"}
_lock = threading.RLock()
_real_find = ctypes.util.find_library


def find(name: str) -> str | None:
    """What ``ctypes.util.find_library(name)`` would say, asking the soname first on Linux."""
    soname = SONAMES.get(name) if sys.platform.startswith("linux") else None
    if soname is not None:
        try:
            ctypes.CDLL(soname)
            return soname
        except OSError:
            pass
    return _real_find(name)


@contextmanager
def sonames_first() -> Iterator[None]:
    """While importing a module that calls ``ctypes.util.find_library`` at import time
    (sounddevice, pulsectl): it gets :func:`find` instead."""
    with _lock:
        ctypes.util.find_library = find
        try:
            yield
        finally:
            ctypes.util.find_library = _real_find
