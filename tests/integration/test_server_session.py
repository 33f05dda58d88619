"""Local server: start-up, configuration, malformed input, greeting, replies, end (protocol.md 3, 4, 5, 6.1)."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator

import pytest
from srvutil import (
    FAST_TD,
    UNIT,
    audio_of,
    client,
    module_server,
    run,
    start_server,
    types,
)
from websockets.exceptions import ConnectionClosed

from voicecli.protocol.events import decode_server_event
from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()

HEX32 = r"[0-9a-f]{32}"


def test_updated_then_ready_with_resolved_config(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            t0 = time.time()
            await c.send({"type": "session.update", "session": {"system_prompt": "Be brief.",
                                                               "output": {"voice": "anna"}}})
            updated = await c.recv()
            ready = await c.recv()
            assert updated["type"] == "session.updated" and ready["type"] == "session.ready"
            assert ready["timestamp"] - updated["timestamp"] >= 0.015  # ~20 ms gap [L]
            assert re.fullmatch("sess_" + HEX32, ready["session_id"])
            cfg = ready["config"]
            assert cfg == updated["config"] and cfg["id"] == ready["session_id"]
            assert cfg["system_prompt"] == "Be brief." and cfg["output"]["voice"] == "anna"
            assert cfg["input"]["format"] == {"encoding": "audio/pcm", "sample_rate": 24000}
            assert cfg["input"]["turn_detection"] is None and cfg["tools"] == []
            assert isinstance(ready["expires_at"], int) and abs(ready["expires_at"] - t0 - 3600) < 5
            assert ready["resume_token"]
            for event in (updated, ready):
                assert isinstance(event["timestamp"], float)
                decode_server_event(__import__("json").dumps(event))  # our own decoder accepts it
            assert await c.quiet(0.2 * UNIT) == []  # no greeting configured: nothing more
    run(main())


@pytest.mark.parametrize("session, code, param", [
    ({"input": {"turn_detection": {"min_silence": 1000, "max_silence": 1000}}},
     "invalid_value", "input.turn_detection.min_silence"),
    ({"input": {"format": {"encoding": "audio/pcm", "sample_rate": 16000}}},
     "invalid_value", "input.format.sample_rate"),
    ({"output": {"voice": "claire"}}, "invalid_value", "output.voice"),
    ({"agent_id": "7ad24396", "system_prompt": "x"}, "agent_id_not_first", "agent_id"),
    ({"bogus": 1}, "invalid_config", "bogus"),
])
def test_first_update_validation_keeps_socket_open(srv: ServerThread, session, code, param) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            await c.send({"type": "session.update", "session": session})
            error = await c.recv()
            assert error["type"] == "session.error" and error["code"] == code and error["param"] == param
            assert error["session_id"] is None and error["message"]
            assert await c.quiet(0.1 * UNIT) == []  # no session.ready after a bad first update
            await c.start()  # a corrected update then works on the same socket
    run(main())


def test_agent_id_unknown_closes_1008_known_is_applied() -> None:
    thread = start_server(agents={"agent-1": {"system_prompt": "Stored agent.", "greeting": None}})

    async def main() -> None:
        async with client(thread.url) as c:
            await c.send({"type": "session.update", "session": {"agent_id": "nope"}})
            error = await c.recv()
            assert error["code"] == "agent_not_found"
            with pytest.raises(ConnectionClosed):
                await c.recv(2 * UNIT)
            assert c.ws.close_code == 1008
        async with client(thread.url) as c:
            ready = await c.start({"agent_id": "agent-1"})
            assert ready["config"]["system_prompt"] == "Stored agent."
            await c.send({"type": "session.update", "session": {"agent_id": "agent-1"}})
            error = await c.recv()
            assert error["code"] == "agent_id_not_first"
    try:
        run(main())
    finally:
        thread.stop()


def test_later_updates_immutable_field_and_tools_replace(srv: ServerThread) -> None:
    tool = {"type": "function", "name": "a", "description": "", "parameters": {"type": "object"}}

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start({"greeting": "", "tools": [tool], "output": {"voice": "alba"}})
            await c.send({"type": "session.update", "session": {
                "greeting": "changed", "output": {"voice": "eve", "volume": 50}, "system_prompt": "New."}})
            error = await c.recv()
            assert error["type"] == "session.error" and error["code"] == "immutable_field"
            assert error["param"] == "greeting" and error["session_id"].startswith("sess_")
            updated = await c.recv()
            assert updated["type"] == "session.updated"
            cfg = updated["config"]
            assert cfg["greeting"] == "" and cfg["output"]["voice"] == "alba"  # changes dropped
            assert cfg["system_prompt"] == "New." and cfg["output"]["volume"] == 50  # rest applied
            await c.send({"type": "session.update", "session": {"tools": [dict(tool, name="b")]}})
            updated = await c.recv()
            assert [t["name"] for t in updated["config"]["tools"]] == ["b"]  # replaced, not merged
            await c.send({"type": "session.update", "session": {
                "input": {"turn_detection": {"min_silence": 500, "max_silence": 400}}}})
            error = await c.recv()
            assert error["code"] == "invalid_value" and error["param"] == "input.turn_detection.min_silence"
    run(main())


def test_malformed_input_keeps_session_open(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            await c.send({"type": "input.audio", "audio": base64.b64encode(bytes(960)).decode()})
            error = await c.recv()
            assert error["code"] == "invalid_format"  # audio before ready (pre-launch doc)
            ready = await c.start()
            for frame, code in [
                ('{"type": "input.audio", "audio": "***not base64***"}', "invalid_audio"),
                ("this is not json", "invalid_format"),
                ('{"type": "no.such.event"}', "invalid_format"),
                ('{"no_type": true}', "invalid_format"),
                ('["a", "list"]', "invalid_format"),
                (b"\x00\x01binary", "invalid_format"),
            ]:
                await c.send(frame)
                error = await c.recv()
                assert error["type"] == "session.error" and error["code"] == code, frame
                assert error["session_id"] == ready["session_id"]
            await c.send({"type": "conversation.message", "role": "user", "content": "ORD-1"})
            assert await c.quiet(0.2 * UNIT) == []  # no acknowledgement (3.5)
            session = srv.session(ready["session_id"])
            assert session.stats["audio_before_ready"] == 1
            assert session.stats["invalid_messages"] == 5
            assert ("user", "ORD-1") in session.history
            await c.send({"type": "session.end"})
            ended = await c.until("session.ended")
            assert ended[-1]["audio_duration_seconds"] is None
    run(main())


def test_greeting_full_cycle_paced_ahead_of_real_time(srv: ServerThread) -> None:
    greeting = "Hello there, this is the local test server speaking."

    async def main() -> None:
        async with client(srv.url) as c:
            await c.start({"greeting": greeting})
            got = await c.until("reply.done")
            seq = types(got)
            assert seq[0] == "reply.started" and seq[-2:] == ["transcript.agent", "reply.done"]
            started = got[0]
            assert re.fullmatch("resp_" + HEX32, started["reply_id"])
            assert re.fullmatch("msg_" + HEX32, started["item_id"])
            deltas = [e for e in got if e["type"] == "transcript.agent.delta"]
            assert "".join(d["delta"] for d in deltas) == greeting
            assert all(d["reply_id"] == started["reply_id"] and d["item_id"] == started["item_id"]
                       for d in deltas)
            assert all(d["start_ms"] <= d["end_ms"] for d in deltas)
            assert [d["start_ms"] for d in deltas] == sorted(d["start_ms"] for d in deltas)
            # deltas come as an early burst, before most of the audio
            first_audio = next(i for i, e in enumerate(got) if e["type"] == "reply.audio")
            assert all(got.index(d) < first_audio + 10 for d in deltas)
            final = got[-2]
            assert final["text"] == greeting and final["interrupted"] is False
            assert got[-1]["status"] == "completed" and got[-1]["reply_id"] == started["reply_id"]
            audio = audio_of(got, started["reply_id"])
            duration = len(audio) / 48000
            assert abs(duration * 1000 - deltas[-1]["end_ms"]) < 50
            chunks = [e for e in got if e["type"] == "reply.audio"]
            assert all(len(base64.b64decode(e["data"])) <= 40 * 48 for e in chunks)
            span = chunks[-1]["timestamp"] - chunks[0]["timestamp"]
            opts = srv.options   # 2x real time, never more than reply_lead_ms ahead
            paced = max(duration / opts.reply_speedup, duration - opts.reply_lead_ms / 1000)
            assert span >= paced - 0.04 - 0.05
            assert span < duration - 0.1   # ahead of real time, as live services send
    run(main())




def test_session_end_then_not_resumable(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            ready = await c.start()
            await c.send({"type": "session.end"})
            ended = await c.recv()
            assert ended["type"] == "session.ended"
            assert isinstance(ended["session_duration_seconds"], float)
            assert ended["audio_duration_seconds"] is None
            with pytest.raises(ConnectionClosed):
                await c.recv(2 * UNIT)
            assert c.ws.close_code == 1000
        async with client(srv.url) as c:
            await c.send({"type": "session.resume", "session_id": ready["session_id"]})
            error = await c.recv()
            assert error["code"] == "session_not_found"
            with pytest.raises(ConnectionClosed):
                await c.recv(2 * UNIT)
            assert c.ws.close_code == 1008
    run(main())


def test_g711_formats_and_volume(srv: ServerThread) -> None:
    """audio/pcmu in and out at 8 kHz (protocol.md 5.9); output.volume 0 is silent (5.5)."""
    from srvutil import tone_speech

    from voicecli.server.codec import decode_input, encode_output

    async def main() -> None:
        fmt = {"encoding": "audio/pcmu"}
        async with client(srv.url, query="scenario=echo") as c:
            await c.start({"greeting": "Hi there.", "input": {"format": fmt, "turn_detection": FAST_TD},
                           "output": {"format": fmt}})
            got = await c.until("reply.done")
            audio = audio_of(got, got[0]["reply_id"])
            deltas = [e for e in got if e["type"] == "transcript.agent.delta"]
            assert abs(len(audio) / 8 - deltas[-1]["end_ms"]) < 50  # 8 bytes per ms
            assert max(abs(s) for s in memoryview(decode_input(audio, "audio/pcmu")).cast("h")) > 3000
            await c.send_pcm(b"")  # nothing
            ulaw = encode_output(tone_speech("hello there"), "audio/pcmu")
            for i in range(0, len(ulaw), 320):
                await c.send({"type": "input.audio", "audio": base64.b64encode(ulaw[i:i + 320]).decode()})
            got = await c.until("transcript.user")
            assert got[-1]["text"] == "hello there"
        async with client(srv.url) as c:
            await c.start({"greeting": "Quiet please.", "output": {"volume": 0}})
            got = await c.until("reply.done")
            assert set(audio_of(got, got[0]["reply_id"])) == {0}
    run(main())
