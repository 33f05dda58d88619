"""Which output a conversing command gets (design.md principle 8), decided from the
:class:`~voicecli.env.Environment` in one place for ``ask`` and ``chat``:

* ``--json``: :class:`~voicecli.ui.output.JsonOutput` (NDJSON on stdout);
* stdout or stderr not a terminal (or ``chat --no-ui``): plain lines
  (:class:`~voicecli.ui.output.PlainOutput`, :class:`~voicecli.ui.chatview.ChatPlainOutput`);
* both terminals: a rich live view on stderr.

Every output writes to the Environment's streams, never to ``sys.stdout``/``sys.stderr`` directly.
rich is imported only for the live view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicecli.env import Environment
from voicecli.ui.output import JsonOutput, Output, PlainOutput

if TYPE_CHECKING:
    from rich.console import Console

    from voicecli.ui.chatview import ChatView

CHAT_KEYS = "keys: m mute/unmute | r agent speaks | t type | q quit"


def _console(env: Environment) -> Console:
    from rich.console import Console
    return Console(file=env.stderr, highlight=False, markup=False, no_color=env.no_color)


def make_output(env: Environment, json_mode: bool, labels: bool, debug: bool) -> Output:
    """``ask``'s output. ``labels``: ``user:``/``agent:`` lines (``--transcript``)."""
    if json_mode:
        return JsonOutput(stdout=env.stdout, stderr=env.stderr)
    if not env.live:
        return PlainOutput(labels=labels, stdout=env.stdout, stderr=env.stderr, verbose=debug)
    from voicecli.ui.live import LiveOutput
    return LiveOutput(verbose=debug, console=_console(env))


def make_chat_output(env: Environment, json_mode: bool, no_ui: bool, debug: bool, view: ChatView,
                     ptt: bool) -> Output:
    """``chat``'s output; the live view renders ``view``, which the chat keeps up to date."""
    from voicecli.ui.chatview import ChatLiveOutput, ChatPlainOutput
    if json_mode:
        return JsonOutput(stdout=env.stdout, stderr=env.stderr)
    if no_ui or not env.live:
        return ChatPlainOutput(stdout=env.stdout, stderr=env.stderr, verbose=debug)
    keys = CHAT_KEYS + (" | space talk/stop" if ptt else "") + " | Ctrl-C end"
    return ChatLiveOutput(view, keys=keys, verbose=debug, console=_console(env))
