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


# --------------------------------------------------------------------------------------------
# Input limits (issue 12 item 3). The service documents few; each number says where it comes
# from. The local server answers a value over a limit with ``session.error invalid_value`` +
# ``param`` and keeps the session; the client's config check applies the same numbers.
# --------------------------------------------------------------------------------------------

#: Largest frame either side accepts: protocol.md 1.1 infers the service runs websockets with its
#: default ``max_size`` (1 MiB), which closes the connection with 1009 "message too big". The
#: local server does exactly that (protocol.md documents nothing else for an oversized frame).
MAX_FRAME_BYTES: Final = 2**20

#: JSON nesting of any frame. Undocumented; the deepest legitimate frame (a session.update whose
#: tool parameters nest MAX_TOOL_PARAMETERS_DEPTH levels) needs ~25. Deeper -> invalid_format.
MAX_JSON_DEPTH: Final = 64
#: Integers on the wire fit a signed 64-bit value (timestamps, ms, epoch seconds all do); larger
#: ones are refused at decode (invalid_value) so ``float()`` of any decoded number cannot overflow.
MAX_JSON_INT: Final = 2**63 - 1

#: ``greeting`` (5.2): spoken verbatim by TTS before the user says anything. Undocumented; 1,000
#: characters is about a minute of speech (~15 chars/s), far past any greeting, and bounds the
#: synthesis one connection can demand before anyone else is served (issue 12 item 3).
MAX_GREETING_CHARS: Final = 1_000
#: ``system_prompt`` (5.2: "no documented length cap"). 100,000 characters (~25k tokens) fits the
#: context windows of the models the service fronts with room for the conversation.
MAX_SYSTEM_PROMPT_CHARS: Final = 100_000
#: ``input.keyterms`` (5.3): at most 100 terms (documented); each at most 50 characters, the
#: limit AssemblyAI documents for keyterms prompting in Universal-Streaming.
MAX_KEYTERMS: Final = 100
MAX_KEYTERM_CHARS: Final = 50
#: ``input.transcription_prompt`` (5.3): at most 1,750 characters (documented).
MAX_TRANSCRIPTION_PROMPT_CHARS: Final = 1_750
#: ``tools`` (5.7): protocol.md recommends <= 10 per phase; the hard caps are the OpenAI function-
#: calling limits the service's OpenAI-compatible models inherit: 128 tools, names of at most 64
#: characters, descriptions of at most 1,024.
MAX_TOOLS: Final = 128
MAX_TOOL_NAME_CHARS: Final = 64
MAX_TOOL_DESCRIPTION_CHARS: Final = 1_024
#: A tool's ``parameters`` schema: OpenAI structured outputs allow 10 levels of nested object
#: schemas (each level is two JSON containers: the schema and its ``properties``), and we cap its
#: JSON text at 32 KiB (OpenAI's 15,000-character budget for names/enums, with room for the rest).
MAX_TOOL_PARAMETERS_DEPTH: Final = 20
MAX_TOOL_PARAMETERS_CHARS: Final = 32_768
#: ``conversation.message`` ``content`` (3.5) and ``reply.create`` ``instructions`` (3.4): text for
#: the model's context. Undocumented; 10,000 characters (~2,500 tokens) per message.
MAX_MESSAGE_CHARS: Final = 10_000
