"""The process's terminal environment, detected once (httpie ``context.Environment``).

:func:`voicecli.core.raw_main` builds one :class:`Environment` and every command builds its output
from it, so "is this a terminal?" is answered in one place and tests can hand a command other
streams. Rules (design.md principle 8): stdout is data, stderr is people; a live display (drawn on
stderr) only when both stdout and stderr are terminals; key controls only when stdin is one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):   # closed or replaced streams
        return False


@dataclass(frozen=True)
class Environment:
    stdin: IO[str]
    stdout: IO[str]
    stderr: IO[str]
    stdin_isatty: bool
    stdout_isatty: bool
    stderr_isatty: bool
    no_color: bool = False      # NO_COLOR set (https://no-color.org), or stderr is not a terminal

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The current process's streams and whether each is a terminal."""
        environ = os.environ if environ is None else environ
        err_tty = _isatty(sys.stderr)
        return cls(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, stdin_isatty=_isatty(sys.stdin),
                   stdout_isatty=_isatty(sys.stdout), stderr_isatty=err_tty,
                   no_color=bool(environ.get("NO_COLOR")) or not err_tty)

    @property
    def live(self) -> bool:
        """A rich live view may be drawn (on stderr): stdout and stderr are both terminals."""
        return self.stdout_isatty and self.stderr_isatty

    @property
    def keys(self) -> bool:
        """Single-key controls may be read: stdin is a terminal."""
        return self.stdin_isatty
