"""The chat view: captions revealed by playback position, interrupted replies showing what was
heard, the status line, and the plain-line form; rendered as golden strings."""

from __future__ import annotations

import math
from io import StringIO
from typing import Any

from rich.console import Console

from voicecli.protocol.events import server_event_from_dict
from voicecli.session.client import Received
from voicecli.ui.chatview import (
    ChatLine,
    ChatPlainOutput,
    ChatStatus,
    ChatView,
    heard_text,
    meter,
    render_chat,
    revealed_text,
    status_text,
)

WORDS = [("Once ", 0, 400), ("upon ", 450, 800), ("a ", 850, 950), ("time.", 1000, 1500)]


def ev(kind: str, **fields: Any) -> Received:
    return Received(server_event_from_dict({"type": kind, **fields}))


def show(view: ChatView, keys: str = "") -> str:
    console = Console(file=StringIO(), width=80, color_system=None)
    console.print(render_chat(view, keys=keys))
    out = console.file.getvalue()   # type: ignore[attr-defined]
    return out


def reply(view: ChatView, rid: str = "r1") -> None:
    view.apply(ev("reply.started", reply_id=rid, item_id="m1"))
    for text, start, end in WORDS:
        view.apply(ev("transcript.agent.delta", reply_id=rid, delta=text, start_ms=start, end_ms=end))


def test_reveal_and_heard_helpers() -> None:
    assert revealed_text(WORDS, 0) == "Once"
    assert revealed_text(WORDS, 849) == "Once upon"
    assert revealed_text([("no timing ", None, None)], 0) == "no timing"
    assert heard_text(WORDS, 820) == "Once upon"
    assert heard_text(WORDS, 900) == "Once upon…"
    assert heard_text(WORDS, 1500) == "Once upon a time."


def test_user_partials_replace_in_place_and_captions_follow_playback() -> None:
    view = ChatView()
    view.apply(ev("session.ready", session_id="s"))
    view.apply(ev("input.speech.started"))
    view.apply(ev("transcript.user.delta", item_id="u1", text="tell"))
    view.apply(ev("transcript.user.delta", item_id="u1", text="tell me a"))
    view.chat = ChatStatus(connection="connected", level_db=-21.0, buffer_ms=120)
    assert show(view) == (
        "user: tell me a\n"
        "connected, you are speaking | mic [#####...] -21 dB | buffer 120 ms\n")
    view.apply(ev("input.speech.stopped"))
    view.apply(ev("transcript.user", item_id="u1", text="tell me a story"))
    reply(view)
    assert show(view).splitlines()[1] == "agent: Once"           # deltas arrive early: only word 1
    view.set_played("r1", 900)
    assert show(view).splitlines()[1] == "agent: Once upon a"
    view.apply(ev("transcript.agent", reply_id="r1", text="Once upon a time.", interrupted=False))
    assert not view.lines[1].final                                 # text complete, audio still playing
    view.set_played("r1", math.inf)
    assert view.lines[1].final and view.lines[1].text == "Once upon a time."


def test_interrupted_reply_shows_what_was_heard_and_for_how_long() -> None:
    view = ChatView()
    reply(view)
    view.set_played("r1", 500)
    view.interrupted("r1", 900.0)
    view.apply(ev("transcript.agent", reply_id="r1", text="Once upon", interrupted=True))
    view.chat = ChatStatus(connection="connected", muted=True, buffer_ms=0, underruns=2,
                           last_total_ms=640, last_server_ms=580, last_local_ms=60)
    assert show(view, keys="keys: m mute/unmute | q quit") == (
        "agent (interrupted after 0.9 s): Once upon…\n"
        "connected | mic muted | buffer 0 ms, 2 underruns | turn 640 ms (server 580 + lo…\n"
        "keys: m mute/unmute | q quit\n")


def test_status_line_variants_and_meter() -> None:
    full = ChatStatus(connection="connected", level_db=-12.4, buffer_ms=40, last_total_ms=640,
                      last_server_ms=580, last_local_ms=60)
    assert status_text(full, False) == (
        "connected | mic [######..] -12 dB | buffer 40 ms | turn 640 ms (server 580 + local 60)")
    assert meter(0.0) == "########" and meter(-60.0) == "........" and meter(-30.0) == "####...."
    assert status_text(ChatStatus(connection="reconnecting", ptt=False), False) == (
        "reconnecting | mic off (space to talk) | buffer 0 ms")
    assert status_text(ChatStatus(gated=True, buffer_ms=80.4), False) == (
        "connecting | mic closed while the agent speaks | buffer 80 ms")


def test_server_text_cannot_drive_the_terminal() -> None:
    view = ChatView()
    view.apply(ev("transcript.user", item_id="u", text="hi\x1b[2J[bold]there[/bold]"))
    assert show(view).splitlines()[0] == "user: hi[2J[bold]there[/bold]"


def test_plain_output_prints_agent_lines_when_heard() -> None:
    out, err = StringIO(), StringIO()
    plain = ChatPlainOutput(stdout=out, stderr=err)
    plain.server_event(ev("transcript.user", item_id="u", text="tell me a story"))
    plain.server_event(ev("transcript.agent", reply_id="r1", text="Once upon a time.", interrupted=True))
    plain.client_event("reply.heard", reply_id="r1", text="Once upon…", interrupted=True, played_s=0.94)
    plain.client_event("reply.heard", reply_id="r2", text="Okay.", interrupted=False, played_s=None)
    plain.client_event("reply.heard", reply_id="r3", text="", interrupted=False, played_s=None)
    assert out.getvalue() == ("user: tell me a story\n"
                              "agent (interrupted after 0.9 s): Once upon…\n"
                              "agent: Okay.\n")
    assert err.getvalue() == ""


def test_cut_reply_keeps_what_was_heard_and_typed_turns_are_labelled() -> None:
    view = ChatView()
    view.typed("typed_1", "hello\x1b[2J there")
    reply(view)
    view.set_played("r1", 600)
    view.cut("r1", 900.0)
    view.cut("r1", 1400.0)                      # final: a second cut changes nothing
    assert show(view) == (
        "user (typed): hello[2J there\n"             # ESC removed: cannot drive the terminal
        "agent (cut after 0.9 s): Once upon…\n"
        "connecting | mic [........] -99 dB | buffer 0 ms\n")
    whole = ChatView()
    reply(whole, "r2")
    whole.cut("r2", math.inf)                   # it had all been played: whole, not cut
    line = whole.lines[-1]
    assert isinstance(line, ChatLine) and line.final and not line.cut and line.text == "Once upon a time."


def test_the_typing_row_replaces_the_key_help_and_shows_the_tail() -> None:
    view = ChatView()
    view.chat.typing = "hi"
    assert show(view, keys="keys: q quit").splitlines()[-1] == "type (Enter sends, Esc cancels): hi█"
    view.chat.typing = "x" * 300
    last = show(view, keys="keys: q quit").splitlines()[-1]
    assert last.startswith("type (Enter sends, Esc cancels): …x") and len(last) <= 80


def test_plain_output_prints_typed_and_cut_lines() -> None:
    out = StringIO()
    plain = ChatPlainOutput(stdout=out, stderr=StringIO())
    plain.client_event("user.typed", text="hi\x07")
    plain.client_event("reply.heard", reply_id="r", text="Once upon…", interrupted=False, played_s=0.9,
                       cut=True)
    assert out.getvalue() == "user (typed): hi\nagent (cut after 0.9 s): Once upon…\n"
