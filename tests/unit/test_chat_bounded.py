"""Issue 12 item 9: what a chat keeps per reply (its own bookkeeping, the speaker's, the view's) is
bounded by configuration, not by how many replies the server sends. A chat's parts are built without
devices (no streams are opened) and fed 3,000 replies through the same handler the session calls."""

from __future__ import annotations

import base64
from io import StringIO
from typing import Any

from voicecli.app.chat import ChatOptions, ChatRunner, _Chat
from voicecli.app.conversation import ConnectionSettings
from voicecli.audio.devices import DeviceInfo, StreamSettings
from voicecli.protocol.constants import RATE
from voicecli.protocol.events import server_event_from_dict
from voicecli.session.client import Received
from voicecli.ui.chatview import ChatView
from voicecli.ui.output import PlainOutput

REPLIES = 3000
BOUND = 256


def _rec(kind: str, rid: str, **fields: Any) -> Received:
    return Received(server_event_from_dict({"type": kind, **fields}), reply_id=rid)


def _chat() -> _Chat:
    dev = DeviceInfo(0, "none", "none", 1, 1, float(RATE))
    runner = ChatRunner(ConnectionSettings("ws://127.0.0.1:9/v1/ws", {}), ChatOptions(prebuffer_ms=0),
                        PlainOutput(stdout=StringIO(), stderr=StringIO()), view=ChatView())
    return _Chat(runner, StreamSettings(dev, "input", RATE, 1), StreamSettings(dev, "output", RATE, 1), None)


def test_per_reply_state_of_a_chat_is_bounded() -> None:
    chat = _chat()
    audio = base64.b64encode(bytes(RATE // 50 * 2)).decode()          # 20 ms
    for i in range(REPLIES):
        rid = f"resp_{i}"
        chat.on_event(_rec("reply.started", rid, reply_id=rid, item_id=f"m{i}"))
        if i % 2:                                                      # every other reply has no audio
            chat.on_event(_rec("reply.audio", rid, reply_id=rid, data=audio))
        chat.on_event(_rec("transcript.agent.delta", rid, reply_id=rid, delta="hi ", start_ms=0, end_ms=10))
        chat.on_event(_rec("transcript.agent", rid, reply_id=rid, text="hi", interrupted=False))
        chat.on_event(_rec("reply.done", rid, reply_id=rid, status="completed"))
        chat.buffer.pull(RATE // 50)
        chat.speaker.poll()
        chat.view.set_played(rid, chat.speaker.heard_ms(rid))
        chat._report_replies(final=False)
    sizes = {
        "view.lines": len(chat.view.lines), "view.replies": len(chat.view.replies),
        "speaker.finished": len(chat.speaker.finished), "speaker.unplayed": len(chat.speaker.unplayed),
        "playback.received_frames": len(chat.speaker.playback.received_frames),
        "reported": len(getattr(chat, "reported", ())),
    }
    assert all(n <= BOUND for n in sizes.values()), sizes
    assert chat.view.lines[-1].final and chat.view.lines[-1].text == "hi"     # still working
