"""Single-key controls for ``voicecli chat`` (m = mute, r = agent speaks now, t = type a message,
q = quit, space = push-to-talk).

Only when stdin is a terminal: it is put in cbreak mode (keys arrive one by one, no echo; Ctrl-C
still raises SIGINT) and read by the event loop with ``add_reader``. The previous terminal settings
are always restored by :meth:`KeyReader.close`, which the chat calls in a ``finally``; an ``atexit``
hook restores them too if the process dies another way.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import sys
from collections.abc import Callable
from typing import Any

# Arrow, function and other keys arrive as one escape sequence in one read: they are dropped whole, so
# only a lone Esc reaches on_key (it cancels the typed-turn input).
_SEQUENCE = re.compile("\x1b(?:\\[[0-?]*[ -/]*[@-~]|O.)")


class KeyReader:
    """Calls ``on_key(ch)`` on the loop for each key typed. Use :meth:`start` / :meth:`close`."""

    def __init__(self, on_key: Callable[[str], None], stream: Any = None) -> None:
        self.on_key = on_key
        self.stream = stream or sys.stdin
        self._fd: int | None = None
        self._saved: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def available(stream: Any = None) -> bool:
        """True if keys can be read: stdin is a TTY on a system with termios."""
        stream = stream or sys.stdin
        try:
            import termios  # noqa: F401
            return bool(stream.isatty())
        except (ImportError, AttributeError, ValueError):
            return False

    def start(self) -> bool:
        """Enter cbreak mode and start reading; False (and nothing changed) if not possible."""
        if not self.available(self.stream):
            return False
        import termios
        import tty
        fd = self.stream.fileno()
        try:
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except termios.error:
            return False
        self._fd = fd
        atexit.register(self.close)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)
        return True

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 32)
        except OSError:
            data = b""
        if not data:          # EOF: the terminal went away; stop reading
            self._remove_reader()
            return
        for ch in _SEQUENCE.sub("", data.decode("utf-8", "ignore")):
            self.on_key(ch)

    def _remove_reader(self) -> None:
        if self._loop is not None and self._fd is not None:
            try:
                self._loop.remove_reader(self._fd)
            except (RuntimeError, ValueError):
                pass
        self._loop = None

    def close(self) -> None:
        """Stop reading and restore the terminal (idempotent)."""
        self._remove_reader()
        if self._fd is not None and self._saved is not None:
            import termios
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
        self._fd = None
        self._saved = None
        atexit.unregister(self.close)
