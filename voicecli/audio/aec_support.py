"""Whether the echo canceller can run, asked without importing it (or numpy): the chat's default
``--echo`` depends on it, and ``--echo off``/``half`` chats, ``--help``, ``ask`` and ``serve`` must
not pay for :mod:`voicecli.audio.aec` (issue 10: numpy alone is ~13 MiB of a chat's memory)."""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "install the echo canceller: pip install 'voicecli[aec]'"


def available() -> bool:
    """Whether the AEC binding (the ``aec`` extra: livekit) is installed."""
    try:
        return importlib.util.find_spec("livekit.rtc") is not None
    except (ImportError, ValueError):
        return False
