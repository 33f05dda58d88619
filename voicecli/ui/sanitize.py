"""Server text is untrusted (design.md principle 9): strip what could drive a terminal or hide text.

What goes is decided by Unicode general category, not a hand-kept list: ``Cc`` (C0/C1 controls,
DEL: escape sequences), ``Cf`` (format characters: bidi embeddings/overrides/isolates and marks
such as U+061C, zero-width U+200B/U+2060/U+FEFF, ...: trojan-source reordering, invisible text) and
``Cs`` (lone surrogates, which cannot even be written to a UTF-8 terminal). Line breaks (``\\n``,
``\\r``, ``\\t``, U+2028 ``Zl``, U+2029 ``Zp``, U+0085) fold to one space: a value is one line.
"""

from __future__ import annotations

import re
import unicodedata

_DROP = frozenset({"Cc", "Cf", "Cs"})
_BREAK = frozenset({"Zl", "Zp"})
_FOLD = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x85")   # controls that separate text: a space


def _char(c: str) -> str:
    if c in _FOLD:
        return "\0"                       # a marker: runs of breaks become one space below
    cat = unicodedata.category(c)
    if cat in _BREAK:
        return "\0"
    if cat in _DROP:
        return ""
    return c


def clean(text: object, limit: int = 4000) -> str:
    """One printable line: control and format characters removed, line breaks and tabs folded to
    a space, at most ``limit`` characters (an ellipsis marks the cut)."""
    s = text if isinstance(text, str) else str(text)
    if not s.isprintable():              # fast path: most text has nothing to strip
        s = "".join(map(_char, s))
        s = re.sub("\0+", " ", s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s
