"""The local server's rules on AgentSession, without sockets or an event loop (protocol.md 6.10).

The harness plays the pump: it feeds frames with a fake clock, runs Transcribe effects at once,
fires timers by hand and plays the reply pipeline's part (speech, audio, tool calls, completion).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicecli.protocol.events import ServerEvent
from voicecli.server.agent import READY_GAP_S, AgentSession
from voicecli.server.brain import DefaultBrain
from voicecli.server.effects import (
    ArmTimer,
    CancelReply,
    Close,
    Detach,
    Effect,
    EndSession,
    Register,
    ReplyJob,
    Send,
    StartReply,
    TakeOver,
    Transcribe,
)
from voicecli.server.engines import Speech, TextDelta, ToolCallRequest, TurnEvent, WordTiming, brain_stream
from voicecli.server.options import ServerOptions
from voicecli.server.scripted import ScriptedEngine, load_scenario
from voicecli.server.session import Engines, Session
from voicecli.session.rules import ConnState

MS = 48  # bytes per ms of PCM16 24 kHz
TD = {"min_silence": 200, "max_silence": 1000}


class FakeDetector:
    """Loud chunks (any non-zero byte) are speech; 200 ms of zeros ends it."""

    def __init__(self) -> None:
        self.t_ms = 0.0
        self.in_speech = False
        self.quiet_ms = 0.0

    def configure(self, td: dict[str, Any] | None) -> None:
        pass

    def reset(self) -> None:
        self.in_speech = False

    def feed(self, pcm: bytes) -> list[TurnEvent]:
        ms = len(pcm) / MS
        loud = any(pcm)
        out: list[TurnEvent] = []
        if loud and not self.in_speech:
            self.in_speech, self.quiet_ms = True, 0.0
            out.append(TurnEvent("started", self.t_ms))
        elif not loud and self.in_speech:
            self.quiet_ms += ms
            if self.quiet_ms >= 200:
                self.in_speech = False
                out.append(TurnEvent("stopped", self.t_ms + ms - self.quiet_ms))
        elif loud:
            self.quiet_ms = 0.0
        self.t_ms += ms
        return out


class FakeSTT:
    def __init__(self) -> None:
        self.keyterms: list[list[str]] = []

    def configure(self, keyterms: list[str]) -> None:
        self.keyterms.append(keyterms)

    def partial(self, pcm: bytes) -> str:
        return f"partial {len(pcm) // MS}"

    def final(self, pcm: bytes) -> str:
        return "hello there"


def engines(scenario: str | None = None) -> Engines:
    from voicecli.server.tts import ToneTTS

    if scenario is not None:   # the scripted engine is both the STT and the brain
        scripted = ScriptedEngine(load_scenario(scenario))
        return Engines(FakeDetector(), scripted, scripted, ToneTTS())
    return Engines(FakeDetector(), FakeSTT(), DefaultBrain(), ToneTTS())


class Harness:
    def __init__(self, owner: str = "me", lookup: dict[str, Session] | None = None,
                 scenario: str | None = None, **opts: Any) -> None:
        self.sessions: dict[str, Session] = {} if lookup is None else lookup
        options = ServerOptions(**{"enforce_realtime": False, **opts})
        self.agent = AgentSession(options, owner=owner, max_session_duration_s=None,
                                  make_engines=lambda: engines(scenario),
                                  lookup=self.sessions.get, mint_resume=lambda sid, who: f"tok-{sid}",
                                  connected=1000.0)
        self.now = 1000.0
        self.effects: list[Effect] = []
        self.timers: dict[str, float] = {}
        self.jobs: list[ReplyJob] = []
        self.cancelled: list[str] = []

    def run(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for e in effects:
            out.append(e)
            if isinstance(e, Register):
                self.sessions[e.session.id] = e.session
            elif isinstance(e, ArmTimer):
                self.timers[e.name] = e.at
            elif isinstance(e, StartReply):
                self.jobs.append(e.job)
            elif isinstance(e, CancelReply):
                self.cancelled.append(e.reply_id)
            elif isinstance(e, Transcribe):
                stt = self.agent.session.engines.stt
                text = stt.final(e.pcm) if e.final else stt.partial(e.pcm)
                out += self.run(self.agent.transcribed(e.item_id, text, e.final, self.now))
        self.effects += out
        return out

    def send(self, obj: dict[str, Any] | str | bytes) -> list[Effect]:
        frame = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        return self.run(self.agent.receive(frame, self.now))

    def fire(self, name: str) -> list[Effect]:
        at = self.timers.pop(name)
        self.now = max(self.now, at)
        return self.run(self.agent.timer(name, self.now))

    def start(self, session: dict[str, Any] | None = None) -> list[ServerEvent]:
        first = events(self.send({"type": "session.update", "session": session or {"input": {"turn_detection": TD}}}))
        assert self.timers["ready"] == pytest.approx(self.now + READY_GAP_S)
        return first + events(self.fire("ready"))

    def audio(self, ms: int, loud: bool) -> list[Effect]:
        import base64

        pcm = (b"\x10\x27" if loud else b"\x00\x00") * (ms * MS // 2)
        out: list[Effect] = []
        for i in range(0, len(pcm), 40 * MS):
            out += self.send({"type": "input.audio", "audio": base64.b64encode(pcm[i:i + 40 * MS]).decode()})
        return out

    def speak(self, ms: int = 600) -> list[Effect]:
        return self.audio(ms, True) + self.audio(400, False)

    def play(self, job: ReplyJob, text: str, audio_ms: int = 0, calls: tuple[ToolCallRequest, ...] = (),
             complete: bool = True) -> list[Effect]:
        """What the pipeline reports for one reply: speech + deltas, audio in 40 ms chunks, calls."""
        rid = job.reply_id
        words = tuple(WordTiming(w, i * 300, i * 300 + 250) for i, w in enumerate(text.split()))
        out = self.run(self.agent.reply_speech(rid, Speech(bytes(audio_ms * MS), words), 0.0, text, True))
        for _ in range(audio_ms // 40):
            out += self.run(self.agent.reply_audio(rid, bytes(40 * MS), 40.0, self.now))
        if calls:
            out += self.run(self.agent.reply_tool_calls(rid, list(calls)))
        if complete:
            out += self.run(self.agent.reply_complete(rid, text, self.now))
        return out


    def produce(self, job: ReplyJob, audio_ms: int = 200, complete: bool = True) -> tuple[str, list[Effect]]:
        """Play ``job`` as the pipeline would, with what the session's brain says for it."""
        if job.text is not None:
            return job.text, self.play(job, job.text, audio_ms, complete=complete)
        pieces = list(brain_stream(self.agent.session.engines.brain, job.ctx, job.outcomes))
        text = "".join(p.text for p in pieces if isinstance(p, TextDelta))
        calls = tuple(p for p in pieces if isinstance(p, ToolCallRequest))
        return text, self.play(job, text, audio_ms, calls, complete)


def events(effects: list[Effect]) -> list[ServerEvent]:
    return [e.event for e in effects if isinstance(e, Send)]


def types(effects: list[Effect]) -> list[str]:
    return [e.type for e in events(effects) if e.type != "reply.audio"]


def stats(h: Harness) -> Any:
    return h.agent.stats


# -- start-up, configuration -------------------------------------------------------------------

def test_update_then_ready_and_audio_before_ready_is_invalid_format() -> None:
    h = Harness()
    first = h.send({"type": "session.update", "session": {}})
    assert types(first) == ["session.updated"] and any(isinstance(e, Register) for e in first)
    assert h.agent.state is ConnState.AWAITING_READY
    early = events(h.audio(40, False))
    assert [(e.type, getattr(e, "code", "")) for e in early] == [("session.error", "invalid_format")]
    h.send({"type": "reply.create"})
    assert h.agent.state is ConnState.AWAITING_READY       # answers do not move the state
    ready = events(h.fire("ready"))
    assert [e.type for e in ready] == ["session.ready"]
    assert ready[0].session_id == h.agent.session.id and ready[0].resume_token.startswith("tok-")
    assert stats(h)["audio_before_ready"] == 1 and stats(h)["invalid_messages"] == 0


def test_bad_first_update_keeps_socket_open_and_a_corrected_one_works() -> None:
    h = Harness()
    got = events(h.send({"type": "session.update", "session": {"input": {"turn_detection": {
        "min_silence": 900, "max_silence": 500}}}}))
    assert [(e.code, e.param) for e in got] == [("invalid_value", "input.turn_detection.min_silence")]
    assert h.agent.state is ConnState.IDLE and h.agent.session is None
    assert [e.type for e in h.start()] == ["session.updated", "session.ready"]


def test_unknown_agent_closes_1008_known_agent_applies() -> None:
    h = Harness(agents={"a1": {"greeting": "Agent here."}})
    out = h.send({"type": "session.update", "session": {"agent_id": "nope"}})
    assert [getattr(e.event, "code", None) for e in out if isinstance(e, Send)] == ["agent_not_found"]
    assert out[-1] == Close(1008, "Agent 'nope' not found")
    h = Harness(agents={"a1": {"greeting": "Agent here."}})
    h.send({"type": "session.update", "session": {"agent_id": "a1"}})
    h.fire("ready")
    assert h.jobs[0].kind == "greeting" and h.jobs[0].text == "Agent here."


def test_malformed_frames_are_answered_and_counted() -> None:
    h = Harness()
    h.start()
    for frame in ("not json", json.dumps({"type": "nope"}), b"\x00"):
        assert [e.code for e in events(h.send(frame))] == ["invalid_format"]
    assert [e.code for e in events(h.send({"type": "input.audio", "audio": "!!"}))] == ["invalid_audio"]
    resume = events(h.send({"type": "session.resume", "session_id": "sess_x"}))
    assert [(e.code, e.param) for e in resume] == [("invalid_format", "type")]
    assert stats(h)["invalid_messages"] == 3 and stats(h)["invalid_values"] == 1
    assert h.send({"type": "conversation.message", "role": "user", "content": "ORD-1"}) == []
    assert ("user", "ORD-1") in h.agent.session.history


def test_later_update_drops_immutable_change_and_replaces_tools() -> None:
    h = Harness()
    h.start({"greeting": "Hi.", "tools": [{"type": "function", "name": "a", "parameters": {}}]})
    got = events(h.send({"type": "session.update", "session": {
        "greeting": "Changed.", "system_prompt": "Be brief.",
        "tools": [{"type": "function", "name": "b", "parameters": {}}]}}))
    assert [e.type for e in got] == ["session.error", "session.updated"]
    assert got[0].code == "immutable_field" and got[0].param == "greeting"
    config = got[1].config
    assert config["greeting"] == "Hi." and config["system_prompt"] == "Be brief."
    assert [t["name"] for t in config["tools"]] == ["b"]
    assert events(h.send({"type": "session.update", "session": {"greeting": "Again."}}))[0].code == \
        "immutable_field"  # nothing else to apply: no session.updated


def test_keyterms_reach_an_stt_that_takes_them() -> None:
    h = Harness()
    h.start({"input": {"keyterms": ["AssemblyAI"], "turn_detection": TD}})
    stt = h.agent.session.engines.stt
    h.send({"type": "session.update", "session": {"system_prompt": "x"}})   # unchanged: not again
    h.send({"type": "session.update", "session": {"input": {"keyterms": ["voicecli"]}}})
    assert stt.keyterms == [["AssemblyAI"], ["voicecli"]]


# -- turns, barge-in ---------------------------------------------------------------------------

def test_user_turn_partials_final_then_reply() -> None:
    h = Harness()
    h.start()
    got = h.speak(700)
    seq = types(got)
    assert seq[0] == "input.speech.started" and seq[-2:] == ["input.speech.stopped", "transcript.user"]
    assert set(seq[1:-2]) == {"transcript.user.delta"}
    deltas = [e for e in events(got) if e.type == "transcript.user.delta"]
    final = events(got)[-1]
    assert all(d.item_id == final.item_id for d in deltas) and final.text == "hello there"
    assert [d.text for d in deltas] == sorted({d.text for d in deltas}, key=lambda t: int(t.split()[1]))
    assert h.jobs[-1].kind == "turn" and h.jobs[-1].ctx.user_text == "hello there"
    assert stats(h)["user_turns"] == 1 and h.agent.session.turn_index == 1


def test_reply_cycle_on_the_wire() -> None:
    h = Harness()
    h.start()
    h.speak()
    got = h.play(h.jobs[-1], "Hello you there.", audio_ms=400)
    assert types(got) == ["reply.started"] + ["transcript.agent.delta"] * 3 + ["transcript.agent", "reply.done"]
    deltas = [e.delta for e in events(got) if e.type == "transcript.agent.delta"]
    assert "".join(deltas) == "Hello you there."
    assert len([e for e in events(got) if e.type == "reply.audio"]) == 10
    assert ("assistant", "Hello you there.") in h.agent.session.history


def test_barge_in_trims_to_the_played_words_and_drops_later_audio() -> None:
    h = Harness()
    h.start()
    h.speak()
    job = h.jobs[-1]
    h.play(job, "one two three four five six", audio_ms=1800, complete=False)
    h.now += 0.7   # 700 ms played: words ending at 250 and 550 ms
    got = h.speak(300)
    seq = types(got)
    i = seq.index("input.speech.started")
    assert seq[i + 1:i + 3] == ["transcript.agent", "reply.done"]
    final, done = events(got)[i + 1], events(got)[i + 2]
    assert final.interrupted and final.text == "one two" and done.status == "interrupted"
    assert job.reply_id in h.cancelled
    assert events(h.run(h.agent.reply_audio(job.reply_id, bytes(960), 20.0, h.now))) == []  # stale
    assert h.jobs[-1] is not job and h.jobs[-1].kind == "turn"   # the turn continues
    assert stats(h)["replies_interrupted"] == 1


def test_interruption_delay_and_interrupt_response_false() -> None:
    h = Harness()
    h.start({"input": {"turn_detection": dict(TD, interruption_delay=300)}})
    h.speak()
    h.play(h.jobs[-1], "a long reply here", audio_ms=2000, complete=False)
    assert "reply.done" not in types(h.audio(200, True))      # 200 ms of speech: not yet
    assert "reply.done" in types(h.audio(200, True))          # past 300 ms: interrupted

    h = Harness()
    h.start({"input": {"turn_detection": dict(TD, interrupt_response=False)}})
    h.speak()
    first = h.jobs[-1]
    h.play(first, "a long reply here", audio_ms=400, complete=False)
    got = h.speak()
    assert "input.speech.started" in types(got) and "reply.done" not in types(got)
    assert h.jobs == [first]                                  # the next reply queues
    h.run(h.agent.reply_complete(first.reply_id, "a long reply here", h.now))
    assert len(h.jobs) == 2 and h.jobs[1].kind == "turn"


def test_greeting_full_cycle_and_uninterruptible_greeting() -> None:
    h = Harness()
    h.start({"greeting": "Welcome to the show.",
             "input": {"turn_detection": dict(TD, uninterruptible_turns=["greeting"])}})
    greeting = h.jobs[-1]
    assert greeting.kind == "greeting" and greeting.text == "Welcome to the show."
    h.play(greeting, greeting.text, audio_ms=800, complete=False)
    assert "reply.done" not in types(h.speak())               # not interrupted
    done = h.run(h.agent.reply_complete(greeting.reply_id, greeting.text, h.now))
    assert types(done)[-2:] == ["transcript.agent", "reply.done"] and events(done)[-1].status == "completed"


def test_reply_create_interrupts_and_reply_cancel() -> None:
    h = Harness()
    h.start()
    h.send({"type": "reply.create", "instructions": "Say hi."})
    first = h.jobs[-1]
    assert first.kind == "create" and first.ctx.instructions == "Say hi."
    h.play(first, "hi hi hi", audio_ms=400, complete=False)
    got = h.send({"type": "reply.create", "instructions": "Second."})
    assert types(got) == ["transcript.agent", "reply.done"] and events(got)[1].status == "interrupted"
    second = h.jobs[-1]
    h.play(second, "second reply", audio_ms=400, complete=False)
    assert h.send({"type": "reply.cancel", "reply_id": "resp_other"}) == []
    got = h.send({"type": "reply.cancel", "reply_id": second.reply_id})
    assert types(got) == ["transcript.agent", "reply.done"] and second.reply_id in h.cancelled


# -- tools -------------------------------------------------------------------------------------

WEATHER = {"type": "function", "name": "get_weather", "parameters": {}}


def tool_turn(h: Harness, tool: dict[str, Any] = WEATHER, n_calls: int = 1) -> tuple[ReplyJob, str]:
    h.start({"input": {"turn_detection": TD}, "tools": [tool]})
    h.speak()
    job = h.jobs[-1]
    calls = tuple(ToolCallRequest("get_weather", {"city": "Paris"}, "call_1") for _ in range(n_calls))
    got = h.play(job, "Let me check.", audio_ms=200, calls=calls)
    assert types(got)[-3:] == ["tool.call", "transcript.agent", "reply.done"]
    return job, "call_1"


def test_tool_result_starts_the_follow_up_and_duplicates_are_ignored() -> None:
    h = Harness()
    _, cid = tool_turn(h, n_calls=2)    # the same call_id twice (seen live)
    assert stats(h)["tool_calls"] == 2
    h.send({"type": "tool.result", "call_id": cid, "result": '"sunny"'})
    follow = h.jobs[-1]
    assert follow.kind == "tools" and [(o.call_id, o.result) for o in follow.outcomes] == [(cid, '"sunny"')]
    assert h.send({"type": "tool.result", "call_id": cid, "result": '"sunny"'}) == []
    assert stats(h)["tool_results_duplicate"] == 1 and h.jobs[-1] is follow
    assert ("tool", 'get_weather: "sunny"') in h.agent.session.history


def test_unknown_call_id_is_invalid_value_and_result_before_done_is_counted() -> None:
    h = Harness()
    h.start()
    got = events(h.send({"type": "tool.result", "call_id": "call_nope", "result": "{}"}))
    assert [(e.code, e.param, e.session_id) for e in got] == [("invalid_value", "call_id", h.agent.session.id)]
    assert stats(h)["tool_results_unknown"] == 1

    h = Harness()
    h.start({"input": {"turn_detection": TD}, "tools": [WEATHER]})
    h.speak()
    job = h.jobs[-1]
    h.play(job, "Checking.", audio_ms=80, calls=(ToolCallRequest("get_weather", {}, "c9"),), complete=False)
    h.send({"type": "tool.result", "call_id": "c9", "result": "1"})
    assert stats(h)["tool_results_before_done"] == 1 and h.jobs[-1] is job
    h.run(h.agent.reply_complete(job.reply_id, "Checking.", h.now))
    assert h.jobs[-1].kind == "tools"


def test_interrupted_reply_voids_its_calls() -> None:
    h = Harness()
    h.start({"input": {"turn_detection": TD}, "tools": [WEATHER]})
    h.speak()
    job = h.jobs[-1]
    h.play(job, "Let me check.", audio_ms=200, calls=(ToolCallRequest("get_weather", {}, "c1"),),
           complete=False)
    h.speak()   # barge-in before reply.done
    assert h.send({"type": "tool.result", "call_id": "c1", "result": "1"}) == []
    assert stats(h)["tool_results_stale"] == 1


def test_tool_timeout_then_late_result_is_stale() -> None:
    h = Harness()
    tool_turn(h, dict(WEATHER, timeout_seconds=1))
    assert h.timers["tools"] == pytest.approx(h.now + 1.0)
    h.fire("tools")
    follow = h.jobs[-1]
    assert follow.kind == "tools" and follow.outcomes[0].timed_out
    assert h.send({"type": "tool.result", "call_id": "call_1", "result": '"late"'}) == []
    assert stats(h)["tool_timeouts"] == 1 and stats(h)["tool_results_stale"] == 1


def test_newer_reply_supersedes_unanswered_interactive_calls() -> None:
    h = Harness()
    tool_turn(h)
    h.send({"type": "reply.create", "instructions": "Something else."})
    h.play(h.jobs[-1], "Something else.", audio_ms=80)
    assert h.send({"type": "tool.result", "call_id": "call_1", "result": "1"}) == []
    assert stats(h)["tool_results_stale"] == 1


def test_hold_mode_buffers_transcripts_and_suppresses_turn_replies() -> None:
    h = Harness()
    tool_turn(h, dict(WEATHER, execution_mode="hold"))
    n_jobs = len(h.jobs)
    got = h.speak()
    assert "input.speech.stopped" in types(got) and "transcript.user" not in types(got)
    assert len(h.jobs) == n_jobs                               # no reply to the turn
    h.send({"type": "reply.create", "instructions": "Still working."})
    status = h.jobs[-1]
    assert status.kind == "create"
    h.play(status, "Still working.", audio_ms=80)
    got = h.send({"type": "tool.result", "call_id": "call_1", "result": '"cloudy"'})
    assert "transcript.user" in types(got) and h.jobs[-1].kind == "tools"


# -- resume, end -------------------------------------------------------------------------------

def test_resume_takes_the_session_over_through_the_registry() -> None:
    h = Harness()
    h.start({"greeting": "Hi."})
    session = h.agent.session
    assert Detach(session) in h.agent.closed(h.now)   # dropped: kept for resume

    again = Harness(lookup=h.sessions)
    out = again.send({"type": "session.resume", "session_id": session.id})
    assert TakeOver(session) in out and again.agent.state is ConnState.RESUMING
    ready = events(again.fire("ready"))
    assert [(e.type, e.session_id) for e in ready] == [("session.ready", session.id)]
    assert again.jobs == [] and session.stats["resumes"] == 1   # no second greeting


def test_resume_failures_close_1008() -> None:
    h = Harness()
    h.start()
    sid = h.agent.session.id
    other = Harness(owner="someone-else", lookup=h.sessions)
    out = other.send({"type": "session.resume", "session_id": sid})
    assert [e.code for e in events(out)] == ["session_forbidden"] and out[-1].code == 1008
    assert other.agent.state is ConnState.REFUSED
    nobody = Harness(lookup={})
    out = nobody.send({"type": "session.resume", "session_id": sid})
    assert [(e.code, e.message) for e in events(out)] == [
        ("session_not_found", "Session not found or grace window has expired")]


def test_session_end_ends_and_closes_1000() -> None:
    h = Harness()
    h.start()
    h.audio(1000, False)
    h.now += 2.5
    out = h.send({"type": "session.end"})
    ended = events(out)[0]
    assert ended.type == "session.ended" and ended.session_duration_seconds == pytest.approx(2.52, abs=0.01)
    assert ended.audio_duration_seconds == 1.0
    assert EndSession(h.agent.session) in out and out[-1] == Close(1000)
    assert not any(isinstance(e, Detach) for e in h.agent.closed(h.now))   # ended: nothing kept
    h = Harness()
    assert events(h.send({"type": "session.end"}))[0].audio_duration_seconds is None


def test_audio_faster_than_real_time_is_dropped_with_one_report_a_second() -> None:
    h = Harness(enforce_realtime=True, burst_allowance_ms=1000)
    h.start()
    got = events(h.audio(3000, False))
    assert [e.code for e in got] == ["audio_rate_violation"]
    assert 40 <= stats(h)["rate_violations"] <= 52 and stats(h)["audio_dropped_ms"] >= 1600
    h.now += 1.0
    before = stats(h)["rate_violations"]
    h.audio(400, False)
    assert stats(h)["rate_violations"] == before


# -- strict server-event encoding (protocol/events.py) -----------------------------------------

def test_server_events_are_encoded_strictly() -> None:
    from voicecli.protocol.events import (
        LocalProtocolError,
        ReplyAudio,
        ReplyDone,
        SessionError,
        ToolCall,
        decode_server_event,
        encode_server_event,
    )

    frame = encode_server_event(ReplyAudio(b"\x01\x02", "resp_1"), 12.5)
    assert json.loads(frame) == {"data": "AQI=", "reply_id": "resp_1", "type": "reply.audio", "timestamp": 12.5}
    assert decode_server_event(frame) == ReplyAudio(b"\x01\x02", "resp_1", 12.5)
    error = json.loads(encode_server_event(SessionError("invalid_value", "bad"), 1.0))
    assert error["param"] is None and error["session_id"] is None   # explicit nulls (protocol.md 2)
    for bad in (ReplyDone(""), ReplyDone("r", "finished"), ToolCall("c", "t", "{}"),  # type: ignore[arg-type]
                ReplyAudio("text", "r")):  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            encode_server_event(bad, 1.0)


# -- the scripted engine's side of these rules (moved here from the socket tests) ----------------

def scripted_tools(scenario: str = "tools", **tool: Any) -> tuple[Harness, list[Effect]]:
    h = Harness(scenario=scenario)
    h.start({"input": {"turn_detection": TD}, "tools": [dict(WEATHER, **tool)]})
    h.speak()
    text, got = h.produce(h.jobs[-1])
    assert text == "Let me check."
    return h, got


def call_ids(effects: list[Effect]) -> list[str]:
    return [e.call_id for e in events(effects) if e.type == "tool.call"]


def test_scripted_tool_timeout_makes_the_agent_apologise() -> None:
    h, got = scripted_tools(timeout_seconds=1)
    assert h.timers["tools"] - h.now >= 0.8
    h.fire("tools")
    text, _ = h.produce(h.jobs[-1])
    assert text == "Sorry, the get_weather tool did not answer in time."
    assert h.send({"type": "tool.result", "call_id": call_ids(got)[0], "result": '"late"'}) == []
    assert stats(h)["tool_timeouts"] == 1 and stats(h)["tool_results_stale"] == 1


def test_scripted_result_before_reply_done_is_accepted_but_counted() -> None:
    h = Harness(scenario="tools")
    h.start({"input": {"turn_detection": TD}, "tools": [WEATHER]})
    h.speak()
    job = h.jobs[-1]
    _, got = h.produce(job, complete=False)
    h.send({"type": "tool.result", "call_id": call_ids(got)[0], "result": '{"temp_c": 22}'})
    h.run(h.agent.reply_complete(job.reply_id, "Let me check.", h.now))
    text, _ = h.produce(h.jobs[-1])
    assert text == 'The weather in Paris is {"temp_c": 22}.'
    assert stats(h)["tool_results_before_done"] == 1


def test_scripted_duplicate_tool_call_same_call_id() -> None:
    h, got = scripted_tools("duplicate_tool")
    ids = call_ids(got)
    assert len(ids) == 2 and ids[0] == ids[1]
    h.send({"type": "tool.result", "call_id": ids[0], "result": '"rainy"'})
    follow = h.jobs[-1]
    text, _ = h.produce(follow)
    assert text == "The weather in Paris is rainy."
    assert h.send({"type": "tool.result", "call_id": ids[0], "result": '"rainy"'}) == []
    assert h.jobs[-1] is follow and stats(h)["tool_results_duplicate"] == 1   # one follow-up only


def test_scripted_hold_mode_suppresses_user_replies_until_the_result() -> None:
    h, got = scripted_tools(execution_mode="hold")
    n_jobs = len(h.jobs)
    held = h.speak()   # the user speaks during the hold: "thanks"
    assert "input.speech.stopped" in types(held) and "transcript.user" not in types(held)
    assert len(h.jobs) == n_jobs and "reply.started" not in types(held)
    h.send({"type": "reply.create", "instructions": "Still working on it."})
    text, status = h.produce(h.jobs[-1])
    assert text == "Still working on it." and events(status)[-1].status == "completed"
    after = h.send({"type": "tool.result", "call_id": call_ids(got)[0], "result": '"cloudy"'})
    assert [e.text for e in events(after) if e.type == "transcript.user"] == ["thanks"]
    assert isinstance(after[-1], StartReply)   # flushed before the follow-up starts
    text, follow = h.produce(h.jobs[-1])
    assert types(follow)[0] == "reply.started" and text == "The weather in Paris is cloudy."


def test_scripted_no_barge_in_when_interrupt_response_is_false() -> None:
    h = Harness(scenario="echo")
    h.start({"input": {"turn_detection": dict(TD, interrupt_response=False)}})
    h.speak()
    first = h.jobs[-1]
    _, got = h.produce(first, audio_ms=400, complete=False)
    got = h.speak()
    assert "input.speech.started" in types(got) and "reply.done" not in types(got)   # still reported
    done = h.run(h.agent.reply_complete(first.reply_id, "Hello! This is the scripted agent.", h.now))
    assert events(done)[-1].status == "completed" and events(done)[-2].interrupted is False
    text, _ = h.produce(h.jobs[-1])   # then the queued reply to the second turn
    assert text == "I am fine, thank you for asking."


def test_scripted_reply_create_and_cancel() -> None:
    h = Harness(scenario="echo")
    h.start()
    h.send({"type": "reply.create", "instructions": "Say this exact sentence now."})
    text, got = h.produce(h.jobs[-1])
    assert text == "Say this exact sentence now." and events(got)[-1].status == "completed"
    h.send({"type": "reply.create", "instructions": " ".join(["word"] * 30)})
    first = h.jobs[-1]
    h.produce(first, audio_ms=400, complete=False)
    got = h.send({"type": "reply.create", "instructions": "Second."})
    assert events(got)[-1].status == "interrupted" and events(got)[-2].interrupted is True
    text, got = h.produce(h.jobs[-1])
    assert types(got)[0] == "reply.started" and text == "Second."
    h.send({"type": "reply.create", "instructions": " ".join(["word"] * 30)})
    third = h.jobs[-1]
    h.produce(third, audio_ms=400, complete=False)
    got = h.send({"type": "reply.cancel", "reply_id": third.reply_id})
    assert events(got)[-1].status == "interrupted"


# -- speculative final transcript (silero's silence_since_ms contract) ------------------------------

class SpecDetector(FakeDetector):
    """FakeDetector that also says where the current in-turn silence began (silero.py's contract)."""

    @property
    def silence_since_ms(self) -> float | None:
        return self.t_ms - self.quiet_ms if self.in_speech and self.quiet_ms > 0 else None

    @property
    def silence_ms(self) -> float:
        return self.quiet_ms if self.in_speech else 0.0


class SpecHarness(Harness):
    """Transcribe effects are held (as if the worker were busy) until :meth:`finish` runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.agent.make_engines = lambda: Engines(SpecDetector(), FakeSTT(), DefaultBrain(), __import__(
            "voicecli.server.tts", fromlist=["ToneTTS"]).ToneTTS())
        self.held: list[Transcribe] = []

    def run(self, effects: list[Effect]) -> list[Effect]:
        self.held += [e for e in effects if isinstance(e, Transcribe) and e.final]
        return super().run([e for e in effects if not (isinstance(e, Transcribe) and e.final)])

    def finish(self, text: str = "hello there") -> list[Effect]:
        out: list[Effect] = []
        held, self.held = self.held, []
        for e in held:
            out += self.run(self.agent.transcribed(e.item_id, text, True, self.now, at_ms=e.at_ms))
        return out


def test_the_final_starts_when_silence_begins_and_is_used_when_the_turn_ends_there() -> None:
    h = SpecHarness()
    h.start()
    h.audio(600, True)
    h.audio(120, False)                       # 100 ms of silence: the speculative final starts
    assert [e.at_ms for e in h.held] == [600.0]
    early = h.finish()                        # back before the turn ended: kept, not sent
    assert "transcript.user" not in types(early)
    out = h.audio(200, False)                 # the turn ends where that silence began
    assert types(out)[:2] == ["input.speech.stopped", "transcript.user"]
    assert h.held == [] and stats(h)["speculative_finals_used"] == 1


def test_a_speculative_final_is_dropped_when_speech_resumes() -> None:
    h = SpecHarness()
    h.start()
    h.audio(600, True)
    h.audio(120, False)
    first = h.held[0]
    h.audio(300, True)                        # speech resumed: that transcript is stale
    h.audio(120, False)                       # a new silence: a new speculative final
    assert [e.at_ms for e in h.held] == [600.0, 1020.0]
    stale = h.run(h.agent.transcribed(first.item_id, "hello", True, h.now, at_ms=first.at_ms))
    assert "transcript.user" not in types(stale)
    h.held = h.held[1:]
    out = h.audio(200, False)                 # stopped before the result: it becomes the final
    assert types(out) == ["input.speech.stopped"]
    done = h.finish("hello there again")
    assert types(done)[0] == "transcript.user"
    assert events(done)[0].text == "hello there again"
