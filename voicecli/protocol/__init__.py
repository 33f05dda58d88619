"""Sans-I/O wire layer of the Voice Agent API: events, encode/decode, session config.

Imports nothing from asyncio, websockets, sounddevice or rich (enforced by a test).

The package re-exports :mod:`voicecli.protocol.events` (``events.__all__``) lazily (PEP 562): a
module that needs only ``voicecli.protocol.constants`` (the CLI's option defaults, so ``voicecli
--help``) does not pay for building every event class (issue 10, Cost)."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__") and name != "__all__":
        raise AttributeError(name)
    events = importlib.import_module("voicecli.protocol.events")   # not `from . import`: that asks us
    if name == "__all__":
        return events.__all__
    if name in events.__all__:
        return getattr(events, name)
    raise AttributeError(f"module 'voicecli.protocol' has no attribute {name!r}")
