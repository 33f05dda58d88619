"""The server's operations log: one line per connection and per session event that matters.

:func:`event` logs to the ``voicecli.server`` logger at INFO (WARNING for errors) with the event
name and its fields attached to the record, so ``voicecli serve`` can print them as text
(``connection.opened conn=3 peer=127.0.0.1:51234 path=/v1/ws``) or, with ``--log-json``, as one
JSON object per line (NDJSON: ``{"ts": ..., "level": "info", "event": "...", ...fields}``).

Callers pass only ids, counts, codes, names and durations: never a key, a token or a URL query
(``path`` is the request path without its query). :class:`LogFormatter` renders any record:
plain records (engine warnings, the start-up lines) become ``{"event": "log", "message": ...}``
in JSON mode and keep only the first line of their message (a traceback is printed with
``--debug`` only).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("voicecli.server")

_EVENT, _FIELDS = "vc_event", "vc_fields"


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one operations event (see module docstring); None fields are left out."""
    fields = {k: v for k, v in fields.items() if v is not None}
    text = " ".join([name, *(f"{k}={_text(v)}" for k, v in fields.items())])
    log.log(level, "%s", text, extra={_EVENT: name, _FIELDS: fields})


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text


class LogFormatter(logging.Formatter):
    """Text (``voicecli serve: 12:00:01 <message>``) or NDJSON records; ``debug`` keeps tracebacks."""

    def __init__(self, json_lines: bool = False, debug: bool = False) -> None:
        super().__init__()
        self.json_lines, self.debug = json_lines, debug

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not self.debug:
            message = message.splitlines()[0] if message else ""
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message += f": {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        elif record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.json_lines:
            out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                                   "event": getattr(record, _EVENT, "log")}
            fields = getattr(record, _FIELDS, None)
            if fields is not None:
                out.update(fields)
            else:
                out["message"] = message
            return json.dumps(out, ensure_ascii=False, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        return f"voicecli serve: {stamp} {message}"
