"""Output modes: plain lines, NDJSON, the live view's render (golden strings), untrusted text."""

from __future__ import annotations

import io
import json

from rich.console import Console

from voicecli.protocol.events import decode_server_event, encode_server
from voicecli.session.client import Received
from voicecli.ui.live import ConversationView, render
from voicecli.ui.output import JsonOutput, PlainOutput
from voicecli.ui.sanitize import clean


def rec(etype: str, stale: bool = False, **fields: object) -> Received:
    return Received(decode_server_event(encode_server(etype, 1.5, **fields)), stale)


CONVERSATION = [
    rec("session.ready", session_id="sess_1"),
    rec("reply.started", reply_id="r0"),
    rec("transcript.agent", reply_id="r0", text="Welcome!"),
    rec("input.speech.started"),
    rec("transcript.user.delta", item_id="u1", text="what is"),
    rec("transcript.user.delta", item_id="u1", text="what is the weather"),
    rec("input.speech.stopped"),
    rec("transcript.user", item_id="u1", text="what is the weather in Paris"),
    rec("reply.started", reply_id="r1"),
    rec("reply.audio", data=b"\x00\x00" * 10, reply_id="r1"),
    rec("tool.call", call_id="c1", name="get_weather", arguments={"city": "Paris"}),
    rec("transcript.agent", reply_id="r1", text="Let me check, it is sun\x1b[2Jny.", interrupted=True),
]


def test_sanitize_strips_terminal_control() -> None:
    assert clean("a\x1b]0;pwned\x07b\x9b31mc") == "a]0;pwnedb31mc"
    assert clean("line1\nline2\ttab") == "line1 line2 tab"
    assert clean("\u202eevil") == "evil"
    assert clean("x" * 50, limit=10) == "x" * 9 + "…"


def test_plain_output_without_labels_prints_only_replies_to_user_turns() -> None:
    out, err = io.StringIO(), io.StringIO()
    plain = PlainOutput(stdout=out, stderr=err)
    for r in CONVERSATION:
        plain.server_event(r)
    assert out.getvalue() == "Let me check, it is sun[2Jny. [interrupted]\n"


def test_plain_output_with_labels() -> None:
    out = io.StringIO()
    plain = PlainOutput(labels=True, stdout=out, stderr=io.StringIO())
    for r in CONVERSATION:
        plain.server_event(r)
    plain.client_event("tool.result", name="get_weather", arguments={"city": "Paris"}, result='{"t": 21}')
    assert out.getvalue().splitlines() == [
        "agent: Welcome!",
        "user: what is the weather in Paris",
        'tool: get_weather({"city": "Paris"})',
        "agent (interrupted): Let me check, it is sun[2Jny.",
        'tool: get_weather({"city": "Paris"}) -> {"t": 21}',
    ]


def test_plain_output_survives_a_closed_pipe() -> None:
    stream = io.StringIO()
    stream.close()
    plain = PlainOutput(labels=True, stdout=stream, stderr=io.StringIO())
    plain.server_event(CONVERSATION[2])   # must not raise
    assert plain.out.broken


def test_json_output_replaces_audio_and_types_client_events() -> None:
    out = io.StringIO()
    js = JsonOutput(stdout=out, stderr=io.StringIO(), clock=lambda: 12.0)
    js.server_event(CONVERSATION[9])
    js.server_event(rec("reply.audio", stale=True, data=b"\x01\x02", reply_id="r9"))
    js.client_event("metrics", turn=1, speech_stopped_to_first_audio_ms=250.0)
    js.server_event(CONVERSATION[-1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"reply_id": "r1", "type": "reply.audio", "timestamp": 1.5, "bytes": 20}
    assert lines[1]["voicecli_stale"] is True and lines[1]["bytes"] == 2
    assert lines[2] == {"type": "voicecli.metrics", "turn": 1, "speech_stopped_to_first_audio_ms": 250.0,
                        "timestamp": 12.0}
    assert "\\u001b" in out.getvalue().splitlines()[3]        # escape stays escaped on a terminal


def test_live_view_render_golden() -> None:
    view = ConversationView()
    for r in CONVERSATION[:6]:
        view.apply(r)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render(view))
    assert console.file.getvalue() == (  # type: ignore[attr-defined]
        "agent: Welcome!\n"
        "user: what is the weather\n"
        "[connected] listening…\n"
    )
    for r in CONVERSATION[6:]:
        view.apply(r)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render(view))
    assert console.file.getvalue() == (  # type: ignore[attr-defined]
        "agent: Welcome!\n"
        "user: what is the weather in Paris\n"
        "agent (interrupted): Let me check, it is sun[2Jny.\n"
        'tool: get_weather({"city": "Paris"})\n'
        "[connected]\n"
    )
