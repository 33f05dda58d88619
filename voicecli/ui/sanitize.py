"""Server text is untrusted (design.md principle 9): strip what could drive a terminal."""

from __future__ import annotations

import re

# C0/C1 controls, DEL, and bidi embedding/override/isolate controls (trojan-source style).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_SPACES = re.compile(r"[\t\n]+")


def clean(text: object, limit: int = 4000) -> str:
    """One printable line: control characters removed, tabs/newlines folded to a space,
    at most ``limit`` characters (an ellipsis marks the cut)."""
    s = text if isinstance(text, str) else str(text)
    s = _SPACES.sub(" ", _CONTROL.sub("", s))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s
