"""What ``voicecli chat`` shows: the conversation with captions revealed as they are spoken, and a
status line (design.md principles 8-10).

:class:`ChatView` is state fed from server events and playback positions; :func:`render_chat` is a
pure function of it (tested as golden strings); :class:`ChatLiveOutput` shows it with ``rich.live``
on stderr; :class:`ChatPlainOutput` is the piped/``--no-ui`` form (labelled lines on stdout).

Captions (protocol.md 4.11): ``transcript.agent.delta`` arrive in a burst well ahead of the audio,
each with ``start_ms``/``end_ms`` from the start of the reply's audio. A word is revealed once the
reply's playback position (frames the device has played, minus its output latency) reaches its
``start_ms``. An interrupted reply shows what was actually heard: the words whose ``end_ms`` was
played, ``…`` if a word was cut, and how long it played.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from voicecli.protocol.events import ReplyStarted, TranscriptAgent, TranscriptAgentDelta
from voicecli.session.client import Received
from voicecli.ui.live import ConversationView, Line, LiveOutput, shown
from voicecli.ui.output import PlainOutput
from voicecli.ui.sanitize import clean

if TYPE_CHECKING:   # rich only for the live view (ChatLiveOutput): --no-ui and --json never import it
    from rich.console import Console, RenderableType
    from rich.text import Text

METER_CELLS = 8
METER_FLOOR_DB = -60.0

# (text, start_ms, end_ms) of one spoken word
Word = tuple[str, "int | None", "int | None"]


def heard_text(words: list[Word], played_ms: float) -> str:
    """The words fully played by ``played_ms``, plus ``…`` when the next word had started."""
    out: list[str] = []
    cut = False
    for text, start, end in words:
        if start is None or end is None or end <= played_ms:
            out.append(text)
        else:
            cut = start < played_ms
            break
    joined = "".join(out).rstrip()
    return joined + "…" if cut else joined


def revealed_text(words: list[Word], played_ms: float) -> str:
    """The words whose ``start_ms`` has been reached (words without timing show at once)."""
    return "".join(t for t, start, _ in words if start is None or start <= played_ms).rstrip()


@dataclass
class ChatLine(Line):
    heard_s: float | None = None      # interrupted or cut: seconds of the reply that were played
    cut: bool = False                 # the chat ended (q, Ctrl-C) while this reply played
    typed: bool = False               # a user turn typed with `t`, not spoken
    reported: bool = False            # the chat has emitted its voicecli.reply.heard


@dataclass
class ChatStatus:
    connection: str = "connecting"     # connecting | connected | reconnecting | ended
    level_db: float = -100.0
    muted: bool = False
    ptt: bool | None = None            # None: no push-to-talk; True/False: talking or not
    gated: bool = False                # half duplex: mic closed while the agent is audible
    buffer_ms: float = 0.0
    underruns: int = 0
    device_xruns: int = 0              # the device's own under/overflow flags (PortAudio status)
    last_total_ms: float | None = None
    last_server_ms: float | None = None
    last_local_ms: float | None = None
    typing: str | None = None          # the one-line input (`t`) while it is open


MAX_REPLY_CHARS = 20_000   # caption text kept per reply; a storm's words past it are counted, not kept
MAX_REPLIES = 64           # replies whose words are kept (the view shows the last few lines anyway)


@dataclass
class ReplyWords:
    """One reply's caption words, revealed as a prefix: each delta and each playback step costs
    O(new words), not O(words so far), so a delta storm cannot make the view CPU-bound."""

    words: list[Word] = field(default_factory=list)
    chars: int = 0
    dropped: int = 0            # words past MAX_REPLY_CHARS
    shown: int = 0              # words revealed so far (a prefix of ``words``)
    text: str = ""              # those words, joined
    max_end: int | None = None
    played_ms: float = 0.0
    completed: bool = False     # transcript.agent (not interrupted) arrived

    def add(self, text: str, start: int | None, end: int | None) -> None:
        if self.chars + len(text) > MAX_REPLY_CHARS:
            self.dropped += 1
            return
        self.words.append((text, start, end))
        self.chars += len(text)
        if end is not None and (self.max_end is None or end > self.max_end):
            self.max_end = end

    def reveal(self, played_ms: float) -> str:
        self.played_ms = max(self.played_ms, played_ms)
        parts = []
        while self.shown < len(self.words):
            text, start, _ = self.words[self.shown]
            if start is not None and start > self.played_ms:
                break
            parts.append(text)
            self.shown += 1
        if parts:
            self.text += "".join(parts)
        return self.text.rstrip()

    def whole(self) -> str:
        return "".join(t for t, _, _ in self.words).rstrip() + ("…" if self.dropped else "")

    def played_through(self) -> bool:
        return self.completed and (self.max_end is None or self.played_ms >= self.max_end)


@dataclass
class ChatView(ConversationView):
    """The conversation; agent lines are revealed by playback position. Per-reply state is kept for
    the last :data:`MAX_REPLIES` replies only, each capped at :data:`MAX_REPLY_CHARS`."""

    replies: dict[str, ReplyWords] = field(default_factory=dict)
    chat: ChatStatus = field(default_factory=ChatStatus)

    def _reply(self, reply_id: str) -> ReplyWords:
        state = self.replies.get(reply_id)
        if state is None:
            state = self.replies[reply_id] = ReplyWords()
            while len(self.replies) > MAX_REPLIES:
                self.replies.pop(next(iter(self.replies)))
        return state

    def apply(self, rec: Received) -> None:
        ev = rec.event
        if rec.stale:
            return
        if isinstance(ev, ReplyStarted):
            self._agent_line(ev.reply_id)
            self._reply(ev.reply_id)
        elif isinstance(ev, TranscriptAgentDelta):
            line = self._agent_line(ev.reply_id)
            if not line.final:
                self._reply(ev.reply_id).add(clean(ev.delta), ev.start_ms, ev.end_ms)
                self._reveal(ev.reply_id)
        elif isinstance(ev, TranscriptAgent):
            line = self._agent_line(ev.reply_id)
            state = self._reply(ev.reply_id)
            if not state.words:
                state.add(clean(ev.text, MAX_REPLY_CHARS), None, None)
            if ev.interrupted:
                line.interrupted = True
            else:
                state.completed = True
            self._reveal(ev.reply_id)
        else:
            super().apply(rec)

    def typed(self, key: str, text: str) -> None:
        """A user turn typed with `t` (sent as conversation.message)."""
        self._add(ChatLine("user", clean(text), final=True, key=key, typed=True))

    def _words(self, reply_id: str) -> list[Word]:
        state = self.replies.get(reply_id)
        return state.words if state is not None else []

    def cut(self, reply_id: str, played_ms: float) -> None:
        """The chat ended while ``reply_id`` was playing: keep what was heard by ``played_ms``, marked cut."""
        line = self._agent_line(reply_id)
        if line.final:
            return
        if math.isinf(played_ms):      # it had all been played: whole, not cut
            state = self.replies.get(reply_id)
            line.text = (state.whole() if state is not None else "") or line.text
            line.final = True
            return
        line.text = heard_text(self._words(reply_id), played_ms)
        if isinstance(line, ChatLine):
            line.cut, line.heard_s = True, played_ms / 1000.0
        line.final = True

    def interrupted(self, reply_id: str, played_ms: float) -> None:
        """The reply was cut at ``played_ms`` (local barge-in or ``reply.done`` interrupted)."""
        line = self._agent_line(reply_id)
        line.interrupted = True
        self._reply(reply_id).played_ms = played_ms
        line.text = heard_text(self._words(reply_id), played_ms)
        if isinstance(line, ChatLine):
            line.heard_s = played_ms / 1000.0
        line.final = True

    def set_played(self, reply_id: str, played_ms: float) -> None:
        """Playback reached ``played_ms`` of ``reply_id`` (call as playback advances)."""
        line = self._find("agent", reply_id)
        if line is None or line.final:
            return
        self._reply(reply_id).played_ms = played_ms
        self._reveal(reply_id)

    def _agent_line(self, reply_id: str) -> Line:
        return self._find("agent", reply_id) or self._add(ChatLine("agent", "", key=reply_id))

    def _reveal(self, reply_id: str) -> None:
        line = self._agent_line(reply_id)
        if line.final:
            return
        state = self._reply(reply_id)
        if line.interrupted:
            self.interrupted(reply_id, state.played_ms)
            return
        line.text = state.reveal(state.played_ms)
        if state.played_through():
            line.text = state.whole()
            line.final = True

    def finish_all(self) -> None:
        """At exit: show every agent line whole (what was received) and mark everything final."""
        for line in self.lines:
            if line.role == "agent" and not line.final and not line.interrupted:
                state = self.replies.get(line.key)
                line.text = (state.whole() if state is not None else "") or line.text
            line.final = True


_STYLE = {"user": "bold cyan", "agent": "bold green", "tool": "bold magenta", "notice": "yellow"}


def render_chat_line(line: Line) -> Text:
    from rich.text import Text
    label = line.role
    heard = getattr(line, "heard_s", None)
    if line.interrupted:
        label = f"agent (interrupted after {heard:.1f} s)" if heard is not None else "agent (interrupted)"
    elif getattr(line, "cut", False):
        label = cut_label(heard)
    elif getattr(line, "typed", False):
        label = "user (typed)"
    text = Text()
    text.append(f"{label}: ", style=_STYLE.get(line.role, ""))
    text.append(shown(line.text, line.final), style="" if line.final else "dim")
    return text


def cut_label(heard_s: float | None) -> str:
    """The label of an agent line the chat's end cut short."""
    return f"agent (cut after {heard_s:.1f} s)" if heard_s is not None else "agent (cut)"


def meter(level_db: float, cells: int = METER_CELLS) -> str:
    """A text level meter: ``cells`` characters, full at 0 dBFS, empty at -60 dBFS."""
    frac = (max(METER_FLOOR_DB, min(0.0, level_db)) - METER_FLOOR_DB) / -METER_FLOOR_DB
    filled = round(frac * cells)
    return "#" * filled + "." * (cells - filled)


def status_text(s: ChatStatus, listening: bool) -> str:
    """The one-line status: connection, mic (meter / muted / gated / push-to-talk), buffer, latency."""
    parts = [s.connection + (", you are speaking" if listening else "")]
    if s.muted:
        mic = "mic muted"
    elif s.ptt is False:
        mic = "mic off (space to talk)"
    elif s.gated:
        mic = "mic closed while the agent speaks"
    else:
        mic = f"mic [{meter(s.level_db)}] {max(-99, round(s.level_db)):d} dB"
    parts.append(mic)
    parts.append(f"buffer {s.buffer_ms:.0f} ms" + (f", {s.underruns} underruns" if s.underruns else "")
                 + (f", {s.device_xruns} device xruns" if s.device_xruns else ""))
    if s.last_total_ms is not None:
        parts.append(f"turn {s.last_total_ms:.0f} ms (server {s.last_server_ms:.0f} + "
                     f"local {s.last_local_ms:.0f})")
    return " | ".join(parts)


def typing_row(text: str, width: int = 80) -> Text:
    """The one-line input: its tail when longer than the line, a block as the cursor."""
    from rich.text import Text
    prompt = "type (Enter sends, Esc cancels): "
    shown = clean(text)
    room = max(10, width - len(prompt) - 2)
    if len(shown) > room:
        shown = "…" + shown[-(room - 1):]
    row = Text(prompt, style="bold cyan", no_wrap=True, overflow="crop")
    row.append(shown + "█")
    return row


def render_chat(view: ChatView, height: int = 12, keys: str = "", width: int = 80) -> RenderableType:
    """The live region: the last ``height`` conversation lines, the status line, the key help."""
    from rich.console import Group
    from rich.text import Text
    rows: list[RenderableType] = [render_chat_line(line) for line in view.lines[-height:]]
    rows.append(Text(status_text(view.chat, view.listening), style="dim", no_wrap=True, overflow="ellipsis"))
    if view.chat.typing is not None:
        rows.append(typing_row(view.chat.typing, width))
    elif keys:
        rows.append(Text(keys, style="dim"))
    return Group(*rows)


class ChatLiveOutput(LiveOutput):
    """Rich live view on stderr of a :class:`ChatView` the chat keeps up to date (it applies the
    server events itself; :meth:`server_event` is a no-op). Finished lines scroll above the live
    region; :meth:`refresh` redraws (the chat's ticker calls it)."""

    def __init__(self, view: ChatView, keys: str = "", verbose: bool = False,
                 console: Console | None = None, stream: IO[str] | None = None) -> None:
        self.keys = keys
        self.chat_view = view
        super().__init__(view, verbose, console, stream, auto_refresh=False)

    def _line(self, line: Line) -> RenderableType:
        return render_chat_line(line)

    def _region(self, lines: list[Line]) -> RenderableType:
        v = self.chat_view
        return render_chat(ChatView(lines=lines, status=v.status, listening=v.listening, chat=v.chat),
                           keys=self.keys, width=self.console.width)

    def server_event(self, rec: Received) -> None:
        pass

    def close(self) -> None:
        self.chat_view.finish_all()
        super().close()


class ChatPlainOutput(PlainOutput):
    """Labelled plain lines on stdout (``user:``, ``agent:``, ``tool:``). Agent lines are printed
    when the reply has been played (the chat's ``reply.heard`` event), not when its text arrives,
    so an interrupted reply reads ``agent (interrupted after 1.2 s): <what was heard>``."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 verbose: bool = False) -> None:
        super().__init__(labels=True, stdout=stdout, stderr=stderr, verbose=verbose)

    def server_event(self, rec: Received) -> None:
        if not isinstance(rec.event, TranscriptAgent):
            super().server_event(rec)

    def client_event(self, kind: str, **fields: Any) -> None:
        if kind == "user.typed":
            self.out.line(f"user (typed): {clean(str(fields.get('text', '')))}")
            return
        if kind == "reply.heard":
            text = clean(str(fields.get("text", "")))
            played = fields.get("played_s")
            if fields.get("interrupted"):
                label = f"agent (interrupted after {played:.1f} s)" if isinstance(played, (int, float)) \
                    else "agent (interrupted)"
                self.out.line(f"{label}: {text}")
            elif fields.get("cut"):
                self.out.line(f"{cut_label(played if isinstance(played, (int, float)) else None)}: {text}")
            elif text:
                self.out.line(f"agent: {text}")
            return
        super().client_event(kind, **fields)
