"""The server's side of one connection, sans-I/O: :class:`AgentSession` (protocol.md 6.10).

Usage (the pump, ``pump.py``, does exactly this)::

    agent = AgentSession(options, owner=..., make_engines=..., lookup=registry.resumable, ...)
    effects = agent.receive(frame, now)      # each client frame, with the wall clock
    effects = agent.timer(name, now)         # when an ArmTimer fires
    effects = agent.transcribed(item_id, text, final, now)   # when a Transcribe finishes
    effects = agent.reply_*(reply_id, ..., now)              # what the reply pipeline produced
    effects = agent.closed(now)              # the socket closed

and runs the returned effects in order (``effects.py``). Client events are stepped through the
rule table (``voicecli.session.rules``) with sender CLIENT: a missing entry is a
RemoteProtocolError, answered with ``session.error`` (its code; the session stays open). Our own
events are stepped with sender SERVER (a missing entry is our bug). Nothing here does I/O or reads
a clock.

Connection rules (6.1, 6.6-6.8): the first ``session.update`` is validated (errors keep the socket
open; an unknown ``agent_id`` closes 1008), then ``session.updated`` and, ``READY_GAP_S`` later,
``session.ready`` and the greeting. ``session.resume`` takes a kept session over (``session.ready``,
same id, no greeting) or fails with ``session_not_found``/``session_forbidden`` + 1008. Later
updates apply mutable fields and drop immutable changes with ``immutable_field``. ``session.end``
-> ``session.ended`` -> close 1000.

Input rules (3.2, 6.2, 6.3): audio only after ``session.ready``, at real-time pace; turn detection
gives ``input.speech.started`` -> cumulative ``transcript.user.delta`` every ``PARTIAL_EVERY_MS``
of audio -> ``input.speech.stopped`` -> ``transcript.user`` -> a reply. Barge-in while a reply
streams (unless ``interrupt_response`` is false, or the greeting is in ``uninterruptible_turns``;
after ``interruption_delay`` ms of speech when set) interrupts it; without barge-in the next reply
queues behind the one playing. Replies and tools: ``replies.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from voicecli.protocol.config import immutable_changes, resolve_config, validate_session
from voicecli.protocol.constants import BYTES_PER_MS
from voicecli.protocol.events import (
    ClientEvent,
    ConversationMessage,
    InputAudio,
    InputSpeechStarted,
    InputSpeechStopped,
    RemoteProtocolError,
    ReplyCancel,
    ReplyCreate,
    SessionEnd,
    SessionEnded,
    SessionError,
    SessionReady,
    SessionResume,
    SessionUpdate,
    SessionUpdated,
    ToolResult,
    TranscriptUser,
    TranscriptUserDelta,
    decode_client_event,
)
from voicecli.session.rules import CLOSED, ConnState, Role

from .codec import bytes_per_ms, decode_input
from .effects import (
    ArmTimer,
    Close,
    Detach,
    Effect,
    EndSession,
    Register,
    TakeOver,
    Transcribe,
    Wire,
)
from .engines import Brain, BrainError, Speech, StreamingBrain, WordTiming
from .options import ServerOptions
from .replies import TOOLS_TIMER, Replies
from .session import Engines, Session, new_id
from .turns import PARTIAL_EVERY_MS, PREROLL_MS, AudioBuffer, RateLimiter, UserTurn

SPECULATE_AFTER_MS = 100  # silence before a speculative final starts (not every pause between words)
READY_GAP_S = 0.02  # session.updated arrives ~20 ms before session.ready [L] (protocol.md 4.2)
READY_TIMER, GREETING_TIMER, EXPIRE_TIMER = "ready", "greeting", "expire"


def _drop_paths(update: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """``update`` without the given dotted paths (immutable changes are dropped, 5.11)."""
    out: dict[str, Any] = json.loads(json.dumps(update))
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    for section in ("input", "output"):
        if out.get(section) == {}:
            del out[section]
    return out


class AgentSession:
    """One connection's conversation, as rules over events (see module docstring)."""

    def __init__(self, options: ServerOptions, *, owner: str, max_session_duration_s: int | None,
                 make_engines: Callable[[], Engines], lookup: Callable[[str], Session | None],
                 mint_resume: Callable[[str, str], str], connected: float,
                 make_brain: Callable[[Any], Brain | StreamingBrain] | None = None,
                 find_agent: Callable[[str], dict[str, Any] | None] | None = None,
                 resume_only: str | None = None, session_cap_s: float | None = None) -> None:
        self.options = options
        # agent_id -> the session config it stands for (5.1): ServerOptions.agents, then the store
        self.find_agent = find_agent or options.agents.get
        # authenticated with a resume token: this connection may only resume that session (1.2)
        self.resume_only = resume_only
        self.session_cap_s = session_cap_s   # enforce max_session_duration (session_expired), if set
        self.make_brain = make_brain   # a session's own ``llm`` entry (5.2) -> its brain
        self.owner = owner
        self.max_session_duration_s = max_session_duration_s
        self.make_engines = make_engines
        self.lookup = lookup
        self.mint_resume = mint_resume
        self.connected = connected
        self.wire = Wire()
        self.session: Session | None = None
        self.replies = Replies(self.wire, self._require_session)
        self._pre_stats: Counter[str] = Counter()
        self._greet = False
        self.limiter: RateLimiter | None = None
        self.buffer = AudioBuffer()
        self.turn: UserTurn | None = None
        self.interrupt_at_ms: float | None = None
        self._finals: dict[str, tuple[float, float]] = {}   # item_id -> (start_ms, end_ms)
        # speculative final (silero's silence_since_ms contract): (item_id, silence start) asked,
        # its text once back, and whether the turn ended there (then that text is the final)
        self._spec: tuple[str, float] | None = None
        self._spec_text: str | None = None
        self._spec_final = False

    # -- plumbing -------------------------------------------------------------------------
    def _require_session(self) -> Session:
        assert self.session is not None, "no session yet"
        return self.session

    @property
    def state(self) -> ConnState:
        state: ConnState = self.wire.conn.get(0) or ConnState.IDLE
        return state

    @property
    def stats(self) -> Counter[str]:
        """The session's counters (the connection's own until a session exists)."""
        return self.session.stats if self.session is not None else self._pre_stats

    def _error(self, code: str, message: str, param: str | None = None, *, answer: bool = True) -> None:
        """``session.error`` with explicit nulls (4.3). ``answer``: the session stays as it was."""
        sid = self.session.id if self.session is not None else None
        self.wire.send(SessionError(code, message, param, sid), answer=answer)

    def _close_policy(self, code: str, message: str) -> None:
        """``session.error`` then close 1008 (1.4)."""
        self._error(code, message, answer=False)
        self.wire.do(Close(1008, message[:120]))

    # -- input ----------------------------------------------------------------------------
    def receive(self, frame: str | bytes, now: float) -> list[Effect]:
        """Handle one client frame; returns the effects to run, in order. A malformed frame or
        an event the rules do not allow now is answered with ``session.error`` (session open)."""
        if isinstance(frame, bytes):
            self.stats["invalid_messages"] += 1
            self._error("invalid_format", "Invalid message format: binary frames are not supported; "
                        "send JSON text frames")
            return self.wire.drain()
        try:
            event = decode_client_event(frame)
        except RemoteProtocolError as exc:
            invalid = exc.code == "invalid_format"
            self.stats["invalid_messages" if invalid else "invalid_values"] += 1
            self._error(exc.code, f"Invalid message format: {exc}" if invalid else str(exc), exc.param)
            return self.wire.drain()
        try:
            self.wire.conn.step(0, Role.CLIENT, event.type)
        except RemoteProtocolError:
            self._refuse(event)
            return self.wire.drain()
        self._dispatch(event, now)
        return self.wire.drain()

    def _refuse(self, event: ClientEvent) -> None:
        """The table has no entry for this client event in this state (3.1, 3.2)."""
        if isinstance(event, InputAudio):
            self.stats["audio_before_ready"] += 1
            self._error("invalid_format", "input.audio before session.ready: send session.update and "
                        "wait for session.ready")
        elif isinstance(event, SessionResume):
            self._error("invalid_format", "session.resume must be the first message", "type")
        else:
            self._error("invalid_format", f"{event.type} before session.ready: send session.update "
                        "first and wait for session.ready")

    def _dispatch(self, event: ClientEvent, now: float) -> None:
        if isinstance(event, SessionUpdate):
            if self.session is None:
                self._first_update(event.session, now)
            else:
                self._later_update(event.session)
        elif isinstance(event, SessionResume):
            self._resume(event.session_id, now)
        elif isinstance(event, SessionEnd):
            self._end(now)
        elif isinstance(event, InputAudio):
            self._audio(event.audio, now)
        elif isinstance(event, ToolResult):
            try:
                self.replies.tool_result(event.call_id, event.result, event.is_error, now)
            except RemoteProtocolError as exc:
                self._error(exc.code, str(exc), exc.param)
        elif isinstance(event, ReplyCreate):
            self.replies.enqueue("create", ctx=self.replies.context(instructions=event.instructions or ""),
                                 now=now, interrupt=True)
        elif isinstance(event, ConversationMessage):
            self._require_session().history.append((event.role, event.content))  # no event (3.5)
        elif isinstance(event, ReplyCancel):
            live = self.replies.live
            if live is not None and event.reply_id in ("", live.job.reply_id):
                self.replies.interrupt(now)   # status "interrupted", the documented enum (3.8)

    # -- configuration --------------------------------------------------------------------
    def _first_update(self, update: dict[str, Any], now: float) -> None:
        """3.1 / 5.1: a bad first update gets ``session.error`` and no ``session.ready`` (the
        client may send a corrected one); an unknown agent -> 1008. A resume token never starts
        a session (``unauthorized`` + 1008)."""
        if self.resume_only is not None:
            self._close_policy("unauthorized", "A resume token can only resume its own session "
                               "(session.resume); start a new session with an API key or a fresh token")
            return
        if "agent_id" in update and len(update) == 1 and isinstance(update["agent_id"], str):
            agent = self.find_agent(update["agent_id"])
            if agent is None:
                self._close_policy("agent_not_found", f"Agent {update['agent_id']!r} not found")
                return
            update = agent
        problems = validate_session(update, first=True)
        if problems:
            self._error(problems[0].code, problems[0].message, problems[0].param, answer=False)
            return
        brain = None
        llm = update.get("llm")
        if isinstance(llm, list) and llm and self.make_brain is not None:
            try:
                brain = self.make_brain(llm[0])   # one entry (6.9); [] = the server's own brain
            except ValueError as exc:
                self._error("invalid_value", str(exc), "llm", answer=False)
                return
        session_id = new_id("sess_")
        config = resolve_config(session_id, update)
        engines = self.make_engines()
        if brain is not None:
            engines.brain = brain
        engines.detector.configure(config["input"].get("turn_detection"))
        _configure_stt(engines, config)
        session = Session(session_id, self.owner, config, engines,
                          expires_at=int(now) + self.options.session_lifetime_s,
                          max_session_duration_s=self.max_session_duration_s, created=now)
        session.resume_token = self.mint_resume(session_id, session.owner)
        if self.session_cap_s is not None:
            session.cap_at = now + self.session_cap_s
            self.wire.do(ArmTimer(EXPIRE_TIMER, session.cap_at))
        self._attach(session)
        self.wire.do(Register(session))
        self.wire.send(SessionUpdated(config))
        self._greet = True
        self.wire.do(ArmTimer(READY_TIMER, now + READY_GAP_S))

    def _later_update(self, update: dict[str, Any]) -> None:
        """6.6 / 5.11: mutable fields apply, immutable changes are dropped with
        ``immutable_field`` (session open), ``tools`` replaces the array."""
        session = self._require_session()
        problems = validate_session(update, first=False)
        if problems:
            self._error(problems[0].code, problems[0].message, problems[0].param)
            return
        paths = immutable_changes(session.config, update)
        if paths:
            self._error("immutable_field", f"'{paths[0]}' cannot be changed after the first "
                        "session.update; the change was dropped", paths[0])
            update = _drop_paths(update, paths)
            if not update:
                return
        old_input = session.config["input"]
        session.config = resolve_config(session.id, update, base=session.config)
        new_input = session.config["input"]
        if new_input.get("turn_detection") != old_input.get("turn_detection"):
            session.engines.detector.configure(new_input.get("turn_detection"))
        if new_input.get("keyterms") != old_input.get("keyterms"):
            _configure_stt(session.engines, session.config)   # applies from the next utterance (6.6)
        self.wire.send(SessionUpdated(session.config))

    # -- resume and end -------------------------------------------------------------------
    def _resume(self, session_id: str, now: float) -> None:
        """3.6 / 6.7: ``session.ready`` with the same id and history, or ``session_not_found`` /
        ``session_forbidden`` + 1008."""
        if self.resume_only is not None and session_id != self.resume_only:
            self._close_policy("session_forbidden", "This resume token belongs to another session")
            return
        session = self.lookup(session_id)
        if session is None:
            self._close_policy("session_not_found", "Session not found or grace window has expired")
            return
        if session.owner != self.owner:
            self._close_policy("session_forbidden", "Session belongs to another account")
            return
        if session.cap_at is not None and now >= session.cap_at:
            self._close_policy("session_expired", "Session has reached its maximum duration")
            return
        if session.cap_at is not None:
            self.wire.do(ArmTimer(EXPIRE_TIMER, session.cap_at))
        detector = self.make_engines().detector   # its audio clock restarts with this connection
        detector.configure(session.config["input"].get("turn_detection"))
        close = getattr(session.engines.detector, "close", None)
        if callable(close):
            close()   # a silero detector returns its model to the pool
        session.engines.detector = detector
        session.resume_token = self.mint_resume(session.id, session.owner)
        session.stats["resumes"] += 1
        self._attach(session)
        self.wire.do(TakeOver(session))
        self._greet = False
        self.wire.do(ArmTimer(READY_TIMER, now + READY_GAP_S))

    def _attach(self, session: Session) -> None:
        session.stats.update(self._pre_stats)
        self._pre_stats.clear()
        self.session = session

    def _end(self, now: float) -> None:
        """3.7 / 4.4: ``session.ended`` then close 1000; not resumable afterwards."""
        self.replies.stop_all()
        session = self.session
        duration = session.duration_s(now) if session else now - self.connected
        audio = session.audio_duration_s if session else None
        self.wire.send(SessionEnded(round(duration, 3), audio))
        if session is not None:
            self.wire.do(EndSession(session))
        self.wire.do(Close(1000))

    def idle(self, now: float) -> list[Effect]:
        """No ``session.update``/``session.resume`` in time after the upgrade (6.1, ~10 s live):
        ``agent_timeout`` + 1008."""
        if self.state is ConnState.IDLE and self.session is None:
            self._close_policy("agent_timeout", "No session.update received in time after connecting")
        return self.wire.drain()

    def crashed(self, now: float) -> list[Effect]:
        """An engine (or the server) failed mid-session: ``internal_error`` then 1011 (1.4); the
        session ends (not resumable)."""
        self.replies.stop_all()
        if self.state in (ConnState.IDLE, ConnState.AWAITING_READY, ConnState.RESUMING, ConnState.READY,
                          ConnState.ENDING):
            self._error("internal_error", "Internal service error", answer=False)
        if self.session is not None:
            self.wire.do(EndSession(self.session))
        self.wire.do(Close(1011, "internal error"))
        return self.wire.drain()

    def shutdown(self, now: float) -> list[Effect]:
        """The server is stopping: a ready session gets ``session.ended`` (4.4, not resumable),
        then every connection is closed 1001 (going away)."""
        session = self.session
        if session is not None and self.state in (ConnState.READY, ConnState.ENDING):
            self.replies.stop_all()
            self.wire.send(SessionEnded(round(session.duration_s(now), 3), session.audio_duration_s))
        if session is not None:
            self.wire.do(EndSession(session))
        self.wire.do(Close(1001, "server shutting down"))
        return self.wire.drain()

    def closed(self, now: float) -> list[Effect]:
        """The socket closed: stop replies; a session that did not end is kept for resume."""
        self.replies.stop_all()
        self.wire.conn.step(0, Role.LOCAL, CLOSED)
        if self.session is not None and self.state is ConnState.DISCONNECTED:
            self.wire.do(Detach(self.session))
        return self.wire.drain()

    # -- timers ---------------------------------------------------------------------------
    def timer(self, name: str, now: float) -> list[Effect]:
        """An ``ArmTimer`` fired."""
        if name == READY_TIMER and self.state in (ConnState.AWAITING_READY, ConnState.RESUMING):
            s = self._require_session()
            self.wire.send(SessionReady(s.id, s.config, s.expires_at, s.resume_token))
            text = s.config.get("greeting")
            if self._greet and isinstance(text, str) and text.strip():
                if self.options.greeting_delay_ms:
                    self.wire.do(ArmTimer(GREETING_TIMER, now + self.options.greeting_delay_ms / 1000.0))
                else:
                    self.replies.enqueue("greeting", text=text, now=now)
        elif name == GREETING_TIMER and self.state is ConnState.READY:
            self.replies.enqueue("greeting", text=self._require_session().config.get("greeting"), now=now)
        elif name == TOOLS_TIMER and self.state is ConnState.READY:
            self.replies.timer(now)
        elif name == EXPIRE_TIMER and self.session is not None and self.state in (
                ConnState.READY, ConnState.AWAITING_READY, ConnState.RESUMING):
            self.replies.stop_all()   # 5.8: session_expired, close 1008, no warning first
            self._close_policy("session_expired", "Session has reached its maximum duration")
            self.wire.do(EndSession(self.session))
        return self.wire.drain()

    # -- input audio and turns ------------------------------------------------------------
    def _audio(self, raw: bytes, now: float) -> None:
        """``input.audio`` (3.2), after ``session.ready`` (the table checked that)."""
        session = self._require_session()
        encoding = (session.config["input"].get("format") or {}).get("encoding", "audio/pcm")
        if encoding == "audio/pcm" and len(raw) % 2:
            self._error("invalid_audio", "PCM16 audio must have an even number of bytes")
            return
        ms = len(raw) / bytes_per_ms(encoding)
        if self.options.enforce_realtime:
            if self.limiter is None:
                self.limiter = RateLimiter(self.options.burst_allowance_ms)
            if not self.limiter.accept(ms, now):
                self.stats["rate_violations"] += 1
                self.stats["audio_dropped_ms"] += int(ms)
                if self.limiter.should_report(now):
                    self._error("audio_rate_violation", "Audio is being sent faster than real time; "
                                "the excess was dropped")
                return
        session.audio_ms += ms
        self._feed(decode_input(raw, encoding), now)

    @property
    def _turn_detection(self) -> dict[str, Any]:
        td = self._require_session().config["input"].get("turn_detection")
        return td if isinstance(td, dict) else {}

    def _feed(self, pcm: bytes, now: float) -> None:
        """Turn detection on accepted audio (PCM16 24 kHz), then the partial-transcript cadence."""
        detector = self._require_session().engines.detector
        self.buffer.append(pcm)
        for event in detector.feed(pcm):
            if event.kind == "started":
                self._speech_started(event.at_ms, now)
            else:
                self._speech_stopped(event.at_ms, now)
        now_ms = self.buffer.end_ms
        self._speculate(detector)
        if self.turn is not None and detector.in_speech:
            if self.interrupt_at_ms is not None and now_ms >= self.interrupt_at_ms:
                self.interrupt_at_ms = None
                self.replies.interrupt(now)
            silent = getattr(detector, "silence_since_ms", None) is not None   # nothing new to hear,
            if not silent and now_ms - self.turn.last_partial_ms >= PARTIAL_EVERY_MS:   # and the final runs
                self.turn.last_partial_ms = now_ms
                self.wire.do(Transcribe(self.turn.item_id, self.buffer.slice(self.turn.start_ms, now_ms),
                                        final=False))
            self.buffer.trim(self.turn.start_ms)  # caps a runaway utterance at MAX_UTTERANCE_MS
        elif self.turn is None:
            self.buffer.trim(now_ms - PREROLL_MS)

    def _speech_started(self, at_ms: float, now: float) -> None:
        """``input.speech.started``, then barge-in if the agent is talking (6.3)."""
        self.turn = UserTurn(new_id("msg_"), max(self.buffer.start_ms, at_ms - PREROLL_MS), at_ms)
        self.wire.send(InputSpeechStarted())
        live = self.replies.streaming
        td = self._turn_detection
        if live is None or td.get("interrupt_response") is False:
            return
        if live.job.kind == "greeting" and "greeting" in (td.get("uninterruptible_turns") or []):
            return
        delay = td.get("interruption_delay") or 0
        if delay > 0:
            self.interrupt_at_ms = at_ms + delay
        else:
            self.replies.interrupt(now)

    def _speculate(self, detector: Any) -> None:
        """Start the final transcript as soon as silence begins (audio-lab 7.5), on detectors that
        say when (``silence_since_ms``); drop it when speech resumes."""
        since = getattr(detector, "silence_since_ms", None)
        turn = self.turn
        if turn is None or self._spec_final:
            return
        if since is None or (self._spec is not None and self._spec != (turn.item_id, since)):
            self._spec, self._spec_text = None, None      # speech resumed: throw it away
        if since is not None and self._spec is None and \
                float(getattr(detector, "silence_ms", 0.0)) >= SPECULATE_AFTER_MS:
            self._spec = (turn.item_id, since)
            self.stats["speculative_finals"] += 1
            self.wire.do(Transcribe(turn.item_id, self.buffer.slice(turn.start_ms, since), final=True,
                                    at_ms=since))

    def _speech_stopped(self, at_ms: float, now: float) -> None:
        """``input.speech.stopped``, then the final transcript in a worker (6.2): the speculative
        one when it was started at this very silence."""
        turn, self.turn, self.interrupt_at_ms = self.turn, None, None
        if turn is None:
            return
        self.wire.send(InputSpeechStopped())
        self._finals[turn.item_id] = (turn.start_ms, at_ms)
        if self._spec == (turn.item_id, at_ms):
            self.stats["speculative_finals_used"] += 1
            if self._spec_text is not None:
                text, self._spec, self._spec_text = self._spec_text, None, None
                self._final(turn.item_id, text, now)
            else:
                self._spec_final = True   # the result still to come is the final
        else:
            self._spec, self._spec_text = None, None
            self.wire.do(Transcribe(turn.item_id, self.buffer.slice(turn.start_ms, at_ms), final=True))
        self.buffer.trim(at_ms - PREROLL_MS)

    def transcribed(self, item_id: str, text: str, final: bool, now: float,
                    at_ms: float | None = None) -> list[Effect]:
        """A ``Transcribe`` finished: a cumulative delta (if it changed), or the final transcript
        and the reply to it (suppressed while a hold tool runs, 6.5). ``at_ms``: a speculative
        final's silence start (kept, used or dropped, see :meth:`_speculate`)."""
        self._require_session()
        if self.state is not ConnState.READY:
            return self.wire.drain()
        if at_ms is not None:
            if self._spec != (item_id, at_ms):
                return self.wire.drain()          # speech resumed since: stale
            if not self._spec_final:
                self._spec_text = text            # the turn is still open: keep it for the stop
                return self.wire.drain()
            self._spec, self._spec_final = None, False
        if not final:
            turn = self.turn
            if turn is not None and turn.item_id == item_id and text and text != turn.last_partial_text:
                turn.last_partial_text = text
                self.replies.user_transcript(TranscriptUserDelta(item_id, text))
            return self.wire.drain()
        self._final(item_id, text, now)
        return self.wire.drain()

    def _final(self, item_id: str, text: str, now: float) -> None:
        session = self._require_session()
        start_ms, end_ms = self._finals.pop(item_id, (0.0, 0.0))
        self.replies.user_transcript(TranscriptUser(item_id, text))
        self.stats["user_turns"] += 1
        ctx = self.replies.context(user_text=text, speech_seconds=(end_ms - start_ms) / 1000.0)
        session.history.append(("user", text))
        session.turn_index += 1
        if not self.replies.holding:
            self.replies.enqueue("turn", ctx=ctx, now=now)

    # -- what the reply pipeline produced (pipeline.py) ------------------------------------
    def reply_live(self, reply_id: str) -> bool:
        return self.replies.is_current(reply_id)

    def reply_speech(self, reply_id: str, speech: Speech, offset_ms: float, text: str,
                     last: bool) -> list[Effect]:
        """A clause is synthesized: ``reply.started`` (first one) and its word deltas."""
        self.replies.begin(reply_id)
        words = _align(text, speech, offset_ms)
        self.replies.words(reply_id, words, last)
        return self.wire.drain()

    def reply_audio(self, reply_id: str, chunk: bytes, ms: float, now: float) -> list[Effect]:
        self.replies.audio(reply_id, chunk, ms, now)
        return self.wire.drain()

    def reply_tool_calls(self, reply_id: str, calls: list[Any]) -> list[Effect]:
        self.replies.tool_calls(reply_id, calls)
        return self.wire.drain()

    def reply_error(self, reply_id: str, error: BrainError) -> list[Effect]:
        """The brain failed mid-reply: ``reply.error`` (4.15); the reply goes on (an apology)."""
        self.replies.error(reply_id, error)
        return self.wire.drain()

    def reply_complete(self, reply_id: str, text: str, now: float) -> list[Effect]:
        self.replies.complete(reply_id, text, now)
        return self.wire.drain()


def _configure_stt(engines: Engines, config: dict[str, Any]) -> None:
    """``input.keyterms`` for an STT that takes them (an optional ``configure(keyterms)``)."""
    configure = getattr(engines.stt, "configure", None)
    if callable(configure):
        configure(list(config["input"].get("keyterms") or []))


def _align(text: str, speech: Speech, offset_ms: float) -> list[WordTiming]:
    """Word timings of one clause, shifted by ``offset_ms``. When the TTS found as many words as
    ``text.split()`` has, the tokens of ``text`` itself are used, so the deltas concatenate back
    to the text exactly."""
    tokens = text.split()
    off = round(offset_ms)
    words = list(speech.words)
    if len(tokens) == len(words):
        return [WordTiming(t, w.start_ms + off, w.end_ms + off) for t, w in zip(tokens, words, strict=True)]
    return [WordTiming(w.word, w.start_ms + off, w.end_ms + off) for w in words]


__all__ = ["BYTES_PER_MS", "READY_GAP_S", "AgentSession"]
