"""The client session's memory is bounded by its limits, not by how many replies a long chat has
(issue 12 item 9, client half): replies (some never finished), tool calls (held, sent, dropped) and interruptions,
10,000 of them, leave every map at or under its limit and the heap where it was."""

from __future__ import annotations

import json
import tracemalloc

from voicecli.session.client import ClientSession


def _feed(s: ClientSession, i: int) -> None:
    rid = f"resp_{i:032x}"
    frames: list[dict[str, object]] = [{"type": "reply.started", "reply_id": rid, "item_id": f"msg_{i}"},
                                       {"type": "reply.audio", "reply_id": rid, "data": ""}]
    if i % 3 == 0:
        frames.append({"type": "tool.call", "call_id": f"call_{i}", "name": "t", "arguments": {}})
    if i % 7 == 0:
        pass                                   # a reply the server never finished (no reply.done)
    elif i % 5 == 0:
        frames += [{"type": "transcript.agent", "reply_id": rid, "text": "cut", "interrupted": True},
                   {"type": "reply.done", "reply_id": rid, "status": "interrupted"}]
    else:
        frames += [{"type": "transcript.agent", "reply_id": rid, "text": "hi", "interrupted": False},
                   {"type": "reply.done", "reply_id": rid, "status": "completed"}]
    for frame in frames:
        s.receive(json.dumps(frame), 0.0)
    if i % 3 == 0 and i % 2 == 0:
        s.submit_tool_result(f"call_{i}", "{}")     # some results sent, some never (owed forever)
    s.data_to_send()


def test_ten_thousand_replies_keep_the_session_bounded() -> None:
    s = ClientSession({"system_prompt": "x", "tools": [{"type": "function", "name": "t"}]})
    s.start()
    s.receive(json.dumps({"type": "session.ready", "session_id": "sess_1", "config": {}}), 0.0)
    s.data_to_send()
    for i in range(1000):                  # warm up: every map at its limit
        _feed(s, i)
    tracemalloc.start()
    for i in range(1000, 3000):            # entries replaced after tracing started count once
        _feed(s, i)
    middle = tracemalloc.take_snapshot()
    for i in range(3000, 11000):
        _feed(s, i)
    end = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in end.compare_to(middle, "filename"))
    assert grown < 16 * 1024, grown        # unbounded: ~0.5 KB x 8,000 = 4 MB
    assert len(s._replies.states) <= s._replies.limit
    assert len(s._calls.states) <= s._calls.limit
    assert len(s._call_info) <= 256 and len(s._results) <= 256
