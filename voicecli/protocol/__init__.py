"""Sans-I/O wire layer of the Voice Agent API: events, encode/decode, session config.

Imports nothing from asyncio, websockets, sounddevice or rich (enforced by a test)."""

from voicecli.protocol.events import *  # noqa: F403  (events.__all__ says what)
from voicecli.protocol.events import (  # noqa: F401
    ClientEvent,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ServerEvent,
    decode_client_event,
    decode_server_event,
    encode,
    encode_server,
    summarize_raw,
)
