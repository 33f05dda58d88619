"""Sans-I/O client session state machine (imports no asyncio/websockets/sounddevice/rich)."""

from voicecli.session.client import ClientSession, Received, State  # noqa: F401
