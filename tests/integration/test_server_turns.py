"""Local server: user turns from audio, barge-in, the real-time rate limit (protocol.md 3.2, 6.2, 6.3)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from srvutil import (
    UNIT,
    client,
    espeak_speech,
    module_server,
    run,
    start_server,
    tone_speech,
    types,
)

from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()

LONG_REPLY_START = "Once upon a time there was a small robot"


def assert_user_turn(got: list[dict], final_text: str | None = None) -> dict:
    """started -> cumulative deltas -> stopped -> transcript.user (same item_id); returns the final."""
    seq = types(got)
    assert seq[0] == "input.speech.started", seq
    i_stop = seq.index("input.speech.stopped")
    assert seq[i_stop + 1] == "transcript.user"
    assert set(seq[1:i_stop]) <= {"transcript.user.delta"}
    user = next(e for e in got if e["type"] == "transcript.user")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", user["item_id"])
    deltas = [e for e in got if e["type"] == "transcript.user.delta"]
    assert all(d["item_id"] == user["item_id"] for d in deltas)
    if final_text is not None:
        assert user["text"] == final_text
        texts = [d["text"] for d in deltas]  # cumulative: each one extends the previous
        assert all(final_text.startswith(t) for t in texts)
        assert texts == sorted(texts, key=len)
    return user


def test_espeak_speech_makes_a_scripted_user_turn_and_reply() -> None:
    thread = start_server(tts="espeak")
    session = {"input": {"turn_detection": {"min_silence": 300, "max_silence": 1000}}}

    async def main() -> None:
        async with client(thread.url, query="scenario=echo") as c:
            ready = await c.start(session)
            # at real-time pace: transcription runs beside the input, a partial arrives while speaking
            await c.send_pcm(espeak_speech("hello there how are you doing today"), realtime=True)
            got = await c.until("reply.done")
            user = assert_user_turn(got, "hello there")
            assert [e["text"] for e in got if e["type"] == "transcript.user.delta"] == ["hello"]
            seq = types(got)
            after = seq[seq.index("transcript.user") + 1:]
            assert after[0] == "reply.started" and after[-2:] == ["transcript.agent", "reply.done"]
            assert set(after[1:-2]) == {"transcript.agent.delta"}
            assert got[-2]["text"] == "Hello! This is the scripted agent."
            assert got[-1]["status"] == "completed"
            assert any(e["type"] == "reply.audio" for e in got)
            assert thread.session(ready["session_id"]).history[:2] == [
                ("user", user["text"]), ("assistant", got[-2]["text"])]
    try:
        run(main())
    finally:
        thread.stop()


def test_basic_engine_turn_reports_speech_duration(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:  # engine "basic": DurationSTT + DefaultBrain
            await c.start()
            await c.send_pcm(tone_speech("one two three four five six"))
            got = await c.until("reply.audio")  # the deltas' early burst comes before the audio
            user = assert_user_turn(got)
            assert re.fullmatch(r"\[speech \d+\.\d s\]", user["text"])
            said = "".join(e["delta"] for e in got if e["type"] == "transcript.agent.delta")
            assert "second" in said
    run(main())


def test_barge_in_interrupts_the_reply_and_continues_the_turn(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url, query="scenario=long") as c:
            await c.start()
            await c.send_pcm(tone_speech("tell me a story"))
            got = await c.until("reply.audio")
            reply_id = got[-1]["reply_id"]
            full = [e for e in got if e["type"] == "transcript.agent.delta"]
            full_text = "".join(d["delta"] for d in full)
            assert full_text.startswith(LONG_REPLY_START)
            await asyncio.sleep(1.0)  # let ~1 s of the reply play
            await c.send_pcm(tone_speech("stop"))
            got = await c.until("reply.done", reply_id=reply_id)
            seq = types(got)
            assert "input.speech.started" in seq
            assert seq.index("input.speech.started") < seq.index("transcript.agent")
            final, done = got[-2], got[-1]
            assert final["type"] == "transcript.agent" and final["interrupted"] is True
            assert done["status"] == "interrupted"
            spoken = final["text"]
            assert spoken and full_text.startswith(spoken) and len(spoken) < len(full_text) / 2
            # the user's turn continues, then a new reply; no more audio of the old reply
            got = await c.until("reply.done")
            assert not [e for e in got if e.get("reply_id") == reply_id]
            seq = types(got)
            assert seq.index("input.speech.stopped") < seq.index("transcript.user") < seq.index("reply.started")
            assert next(e for e in got if e["type"] == "transcript.user")["text"] == "stop"
            assert got[-2]["text"] == "Okay, I stopped." and got[-1]["status"] == "completed"
    run(main())




def test_audio_faster_than_real_time_is_dropped_with_rate_violation() -> None:
    thread = start_server(enforce_realtime=True)

    async def main() -> None:
        async with client(thread.url) as c:
            ready = await c.start()
            await c.send_pcm(bytes(48 * 3000))  # 3 s of audio at once: ~2 s over the allowance
            errors = [e for e in await c.quiet(0.5 * UNIT) if e["type"] == "session.error"]
            assert [e["code"] for e in errors] == ["audio_rate_violation"]  # at most once a second
            stats = thread.session(ready["session_id"]).stats
            assert 40 <= stats["rate_violations"] <= 52 and stats["audio_dropped_ms"] >= 1600
            # the session stays open and audio at real-time pace is accepted again
            await asyncio.sleep(1.0)
            before = stats["rate_violations"]
            await c.send_pcm(bytes(48 * 400), realtime=True)
            assert stats["rate_violations"] == before
            await c.send({"type": "session.end"})
            ended = await c.until("session.ended")
            assert 1.0 <= ended[-1]["audio_duration_seconds"] <= 1.8
    try:
        run(main())
    finally:
        thread.stop()
