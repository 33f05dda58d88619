"""Local server: abrupt drops, resume, and the fault switches (protocol.md 1.4, 6.7; options.Faults)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest
from srvutil import (
    FAST_SESSION,
    UNIT,
    client,
    eventually,
    module_server,
    run,
    start_server,
    types,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from voicecli.server.app import ServerThread
from voicecli.server.options import Faults


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()

GREETING = {"greeting": "Hi.", "input": FAST_SESSION["input"]}


async def closed_code(c) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed):
        while True:
            await c.recv(3 * UNIT)
    return c.ws.close_code


def test_faults_parse() -> None:
    f = Faults.parse("drop-after-replies=1,refuse-resume,unknown-events,ready-delay=500")
    assert f == Faults(drop_after_replies=1, refuse_resume=True, unknown_events=True, ready_delay_ms=500)
    assert Faults.parse("") == Faults() and not Faults().any
    assert Faults.parse("garbage, drop_mid_reply").drop_mid_reply is True
    assert Faults.parse("refuse-resume=0", base=Faults(refuse_resume=True)).refuse_resume is False
    for bad, words in [("explode", "unknown fault 'explode'"), ("ready-delay", "whole number"),
                       ("garbage=maybe", "switch")]:
        with pytest.raises(ValueError, match=words):
            Faults.parse(bad)


def test_bad_fault_or_scenario_in_query_is_refused(srv: ServerThread) -> None:
    async def main() -> None:
        for query, param in [("fault=explode", "fault"), ("scenario=no_such_scenario", "scenario"),
                             ("tts=flite", "tts")]:
            async with client(srv.url, query=query) as c:
                error = await c.recv()
                assert error["code"] == "invalid_value" and error["param"] == param
                assert await closed_code(c) == 1008
    run(main())


def test_drop_after_reply_then_resume_with_resume_token(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="fault=drop-after-replies=1&scenario=echo") as c:
            ready = await c.start(GREETING)
            got = await c.until("reply.done")
            assert got[-1]["status"] == "completed"
            with pytest.raises(ConnectionClosedError):  # no close frame: 1006
                await c.recv(3 * UNIT)
            assert c.ws.close_code == 1006
        sid = ready["session_id"]
        session = srv.session(sid)
        assert session is not None
        await eventually(lambda: session.connection is None)  # the server noticed the drop
        assert not session.ended  # kept for the resume window
        # resume on a new connection authenticated by the resume_token
        async with client(srv.url, key=ready["resume_token"], query="scenario=echo") as c:
            await c.send({"type": "session.resume", "session_id": sid})
            again = await c.recv()
            assert again["type"] == "session.ready" and again["session_id"] == sid
            assert again["config"]["greeting"] == "Hi."
            assert await c.quiet(0.2 * UNIT) == []  # no second greeting
            assert ("assistant", "Hi.") in session.history  # history kept
            await c.send_pcm(b"\x00\x00" * 2400)  # audio flows again
            await c.send({"type": "session.end"})
            assert (await c.until("session.ended"))[-1]["type"] == "session.ended"
            assert await closed_code(c) == 1000
        assert session.stats["resumes"] == 1 and session.ended
    run(main())


def test_resume_by_another_owner_is_forbidden_and_window_expires() -> None:
    thread = start_server(resume_window_s=0.5)

    async def main() -> None:
        async with client(thread.url, key="owner-a", query="fault=drop-after-replies=1") as c:
            ready = await c.start(GREETING)
            await closed_code(c)
        async with client(thread.url, key="owner-b") as c:
            await c.send({"type": "session.resume", "session_id": ready["session_id"]})
            error = await c.recv()
            assert error["code"] == "session_forbidden"
            assert await closed_code(c) == 1008
        await asyncio.sleep(0.7)  # resume window over: the session has ended
        async with client(thread.url, key="owner-a") as c:
            await c.send({"type": "session.resume", "session_id": ready["session_id"]})
            error = await c.recv()
            assert error["code"] == "session_not_found"
            assert error["message"] == "Session not found or grace window has expired"
            assert await closed_code(c) == 1008
        assert thread.session(ready["session_id"]).ended
    try:
        run(main())
    finally:
        thread.stop()


def test_refuse_resume_fault(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="fault=drop-after-replies=1") as c:
            ready = await c.start(GREETING)
            await closed_code(c)
        async with client(srv.url, query="fault=refuse-resume") as c:
            await c.send({"type": "session.resume", "session_id": ready["session_id"]})
            error = await c.recv()
            assert error["code"] == "session_not_found" and error["param"] is None
            assert await closed_code(c) == 1008
    run(main())


def test_drop_mid_reply(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="fault=drop-mid-reply") as c:
            await c.start({"greeting": "This greeting is cut off halfway through its audio."})
            with pytest.raises(ConnectionClosedError):
                while True:
                    await c.recv(3 * UNIT)
            seen = types(c.events, skip_audio=False)
            assert "reply.audio" in seen and "reply.done" not in seen
            assert c.ws.close_code == 1006
    run(main())


def test_unknown_events_and_garbage_faults(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="fault=unknown-events,garbage") as c:
            await c.start(GREETING)
            await c.until("reply.done")
            known = {"session.updated", "session.ready", "reply.started", "transcript.agent.delta",
                     "reply.audio", "transcript.agent", "reply.done"}
            unknown = [e["type"] for e in c.events if e["type"] not in known]
            assert len(unknown) >= 2  # after session.ready and after reply.started
            assert all("x_local_debug" in e for e in c.events)
            assert c.raw == ["this is not JSON {"]  # one non-JSON text frame after ready
    run(main())


def test_ready_delay_fault_catches_audio_before_ready(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="fault=ready-delay=400") as c:
            await c.send({"type": "session.update", "session": {}})
            updated = await c.recv()
            assert updated["type"] == "session.updated"
            await c.send({"type": "input.audio", "audio": base64.b64encode(bytes(960)).decode()})
            error = await c.recv()
            assert error["code"] == "invalid_format"  # still before session.ready
            ready = await c.recv(2 * UNIT)
            assert ready["type"] == "session.ready"
            assert ready["timestamp"] - updated["timestamp"] >= 0.4
            assert srv.session(ready["session_id"]).stats["audio_before_ready"] == 1
    run(main())
