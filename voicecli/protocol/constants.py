"""Protocol facts, defined once (protocol.md sections 1-6). Every module that needs one imports it
from here; no other module spells these numbers."""

from __future__ import annotations

from typing import Final

#: The service endpoint (protocol.md 1.1). A setting everywhere (``--url``, config ``url``).
DEFAULT_URL: Final = "wss://agents.assemblyai.com/v1/ws"

#: PCM16 mono at 24 kHz both ways (protocol.md 3.2, 4.10).
RATE: Final = 24000
SAMPLE_BYTES: Final = 2
BYTES_PER_SECOND: Final = RATE * SAMPLE_BYTES      # 48000
BYTES_PER_MS: Final = BYTES_PER_SECOND // 1000      # 48

#: A dropped session can be resumed for 30 s (protocol.md 6.7).
RESUME_WINDOW_S: Final = 30.0

#: A tool call's default ``timeout_seconds`` (protocol.md 5.7).
DEFAULT_TOOL_TIMEOUT_S: Final = 120.0


def pcm_ms(pcm_bytes: int) -> float:
    """Milliseconds of PCM16 24 kHz mono audio in ``pcm_bytes`` bytes."""
    return pcm_bytes / BYTES_PER_MS


def pcm_seconds(pcm_bytes: int) -> float:
    """Seconds of PCM16 24 kHz mono audio in ``pcm_bytes`` bytes."""
    return pcm_bytes / BYTES_PER_SECOND
