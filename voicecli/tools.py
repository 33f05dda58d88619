"""Client-side tools: run a ``tool.call`` and produce the ``tool.result`` payload.

The protocol side (when a result may be sent, dropping results of interrupted replies,
duplicate call ids) is the session's job (``voicecli.session``); this module only runs tools.
A call for a tool that is not configured gets an error result the model can read (protocol.md
3.3: the text is read verbatim, so say what failed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """``result`` is already a JSON-encoded string (protocol.md 3.3)."""

    result: str
    is_error: bool = False


class Tool(Protocol):
    name: str

    async def run(self, arguments: dict[str, Any]) -> ToolOutcome: ...


def error_result(message: str, **extra: Any) -> ToolOutcome:
    return ToolOutcome(json.dumps({"error": message, **extra}, ensure_ascii=False), is_error=True)


class ToolRunner:
    """Looks tools up by name and runs them. Never raises: failures become error results."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self.tools: dict[str, Tool] = {t.name: t for t in tools or []}

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return error_result(f"no tool named {name!r} is configured in this client "
                                f"(configured: {known}); tell the user it is unavailable")
        try:
            return await tool.run(arguments)
        except Exception as exc:  # a tool's bug must not end the conversation
            return error_result(f"tool {name!r} failed: {exc}")
