"""One WebSocket connection of the local server: the protocol rules of protocol.md 6.10.

The connection is authenticated before :class:`ConnectionHandler` exists (``app.py``). It waits
for the first client message (6.1): ``session.update`` creates a :class:`Session`
(``session.updated`` then ~20 ms later ``session.ready``, then the greeting), ``session.resume``
re-attaches a kept one (6.7). Errors that keep the session open are answered with
``session.error`` (4.3); policy failures close with 1008 (1.4).

User turns (6.2) and replies run on the event loop: input is processed message by message while
replies (``reply.py``) and tool waits run as tasks. Audio and turn handling live in
``conversation.py`` (:class:`Conversation`), which this class extends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..protocol.config import immutable_changes, resolve_config, validate_session
from ..protocol.events import (
    ConversationMessage,
    InputAudio,
    RemoteProtocolError,
    ReplyCancel,
    ReplyCreate,
    SessionEnd,
    SessionResume,
    SessionUpdate,
    ToolResult,
    decode_client_event,
    server_event_dict,
)
from .auth import Credentials, Identity
from .conversation import Conversation
from .engines import ReplyPlan
from .options import Faults, ServerOptions
from .session import Engines, Session, SessionRegistry, new_id

log = logging.getLogger("voicecli.server")

READY_GAP_S = 0.02  # session.updated arrives ~20 ms before session.ready [L] (protocol.md 4.2)
UNKNOWN_EVENT_TYPES = ("conversation.item.created", "rate_limits.updated", "x.local.heartbeat")


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


class ConnectionHandler(Conversation):
    """Serves one WebSocket connection; call :meth:`run` once."""

    def __init__(self, ws: ServerConnection, identity: Identity, *, options: ServerOptions,
                 faults: Faults, credentials: Credentials, registry: SessionRegistry,
                 make_engines: Callable[[], Engines]) -> None:
        super().__init__()
        self.ws = ws
        self.identity = identity
        self.options = options
        self.faults = faults
        self.credentials = credentials
        self.registry = registry
        self.make_engines = make_engines
        self.session: Session | None = None
        self.ready = False
        self.closing = False
        self.dropped = False
        self.connected = time.monotonic()
        self._pre_stats: Counter[str] = Counter()
        self._background: set[asyncio.Task[None]] = set()
        self._seq = count(1)

    # -- plumbing -------------------------------------------------------------------------
    @property
    def stats(self) -> Counter[str]:
        """The session's counters (the connection's own until a session exists)."""
        return self.session.stats if self.session is not None else self._pre_stats

    @property
    def session_config(self) -> dict[str, Any]:
        assert self.session is not None
        return self.session.config

    @property
    def engines(self) -> Engines:
        assert self.session is not None
        return self.session.engines

    async def send(self, event_type: str, **fields: Any) -> None:
        """Send one server event with a float ``timestamp`` (protocol.md 2). No-op once dropped."""
        if self.dropped:
            return
        event = server_event_dict(event_type, time.time(), **fields)
        if self.faults.unknown_events:  # clients must ignore unknown fields (protocol.md 2)
            event["x_local_debug"] = {"seq": next(self._seq), "note": "unknown field"}
        await self.ws.send(json.dumps(event, separators=(",", ":"), ensure_ascii=False))

    async def send_error(self, code: str, message: str, param: str | None = None) -> None:
        """``session.error`` with explicit nulls (protocol.md 4.3)."""
        await self.send("session.error", code=code, message=message, param=param,
                        session_id=self.session.id if self.session else None)

    async def send_unknown_event(self) -> None:
        """Fault ``unknown_events``: an event type no client knows (protocol.md 2)."""
        if self.faults.unknown_events:
            n = next(self._seq)
            await self.send(UNKNOWN_EVENT_TYPES[n % len(UNKNOWN_EVENT_TYPES)], seq=n)

    async def close_policy(self, code: str, message: str) -> None:
        """``session.error`` then close 1008 (protocol.md 1.4)."""
        await self.send_error(code, message)
        self.closing = True
        await self.ws.close(1008, message[:120])

    def abort(self, why: str) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        log.info("fault: dropping connection (%s)", why)
        self.dropped = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a background task tied to this connection (cancelled on teardown)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None \
                and not isinstance(task.exception(), ConnectionClosed):
            log.error("server task failed", exc_info=task.exception())

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Process client messages until the connection closes, then tear down."""
        try:
            async for message in self.ws:
                await self.dispatch(message)
                if self.closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            await self.teardown()

    async def teardown(self) -> None:
        """Stop replies and timers; keep an unended session for resume (protocol.md 6.7)."""
        await self.cancel_replies()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background))
        if self.session is not None and not self.session.ended:
            self.registry.detach(self.session, self, self.options.resume_window_s)

    async def dispatch(self, message: str | bytes) -> None:
        """Handle one client frame; protocol errors are answered and the session stays open."""
        if isinstance(message, bytes):
            self.stats["invalid_messages"] += 1
            await self.send_error("invalid_format", "Invalid message format: binary frames are not "
                                  "supported; send JSON text frames")
            return
        try:
            event = decode_client_event(message)
        except RemoteProtocolError as exc:
            self.stats["invalid_messages" if exc.code == "invalid_format" else "invalid_values"] += 1
            await self.send_error(exc.code, f"Invalid message format: {exc}" if exc.code ==
                                  "invalid_format" else str(exc), exc.param)
            return
        if isinstance(event, SessionUpdate):
            await (self.later_update(event.session) if self.session else self.first_update(event.session))
        elif isinstance(event, SessionResume):
            await self.resume(event.session_id)
        elif isinstance(event, SessionEnd):
            await self.end_session()
        elif isinstance(event, InputAudio):
            await self.on_audio(event.audio)
        elif not self.ready:
            await self.send_error("invalid_format", f"{event.type} before session.ready: send "
                                  "session.update first and wait for session.ready")
        elif isinstance(event, ToolResult):
            await self.on_tool_result(event.call_id, event.result, event.is_error)
        elif isinstance(event, ReplyCreate):
            await self.start_reply(self.engines.brain.reply(self.context(instructions=event.instructions
                                                                         or "")), "create", True)
        elif isinstance(event, ConversationMessage):
            self.session_history.append((event.role, event.content))  # no event (3.5)
        elif isinstance(event, ReplyCancel):
            await self.cancel_reply(event.reply_id)

    # -- configuration --------------------------------------------------------------------
    async def first_update(self, update: dict[str, Any]) -> None:
        """protocol.md 3.1 / 5.1: validate; a bad first update gets ``session.error`` and no
        ``session.ready`` (the client may send a corrected one); unknown agent -> 1008."""
        if "agent_id" in update and len(update) == 1 and isinstance(update["agent_id"], str):
            agent = self.options.agents.get(update["agent_id"])
            if agent is None:
                await self.close_policy("agent_not_found", f"Agent {update['agent_id']!r} not found")
                return
            update = agent
        problems = validate_session(update, first=True)
        if problems:
            await self.send_error(problems[0].code, problems[0].message, problems[0].param)
            return
        session_id = new_id("sess_")
        config = resolve_config(session_id, update)
        engines = self.make_engines()
        engines.detector.configure(config["input"].get("turn_detection"))
        session = Session(session_id, self.identity.owner, config, engines,
                          expires_at=int(time.time()) + self.options.session_lifetime_s,
                          max_session_duration_s=self.identity.max_session_duration_s)
        session.resume_token = self.credentials.mint_resume(session_id, session.owner)
        self.registry.add(session)
        self.attach(session)
        await self.send("session.updated", config=config)
        self.spawn(self._become_ready(greeting=True))

    async def _become_ready(self, greeting: bool) -> None:
        """``session.ready`` (after ~20 ms + the ``ready_delay_ms`` fault), then the greeting."""
        session = self.session
        assert session is not None
        await asyncio.sleep(READY_GAP_S + self.faults.ready_delay_ms / 1000.0)
        await self.send("session.ready", session_id=session.id, config=session.config,
                        expires_at=session.expires_at, resume_token=session.resume_token)
        self.ready = True
        await self.send_unknown_event()
        if self.faults.garbage:
            await self.ws.send("this is not JSON {")
        text = session.config.get("greeting")
        if greeting and isinstance(text, str) and text.strip():
            if self.options.greeting_delay_ms:
                await asyncio.sleep(self.options.greeting_delay_ms / 1000.0)
            await self.start_reply(ReplyPlan(text), "greeting", False)

    async def later_update(self, update: dict[str, Any]) -> None:
        """protocol.md 6.6 / 5.11: mutable fields apply, immutable changes are dropped with
        ``immutable_field`` (session open), ``tools`` replaces the array."""
        session = self.session
        assert session is not None
        problems = validate_session(update, first=False)
        if problems:
            await self.send_error(problems[0].code, problems[0].message, problems[0].param)
            return
        paths = immutable_changes(session.config, update)
        if paths:
            await self.send_error("immutable_field", f"'{paths[0]}' cannot be changed after the first "
                                  "session.update; the change was dropped", paths[0])
            update = _drop_paths(update, paths)
            if not update:
                return
        old_td = session.config["input"].get("turn_detection")
        session.config = resolve_config(session.id, update, base=session.config)
        if session.config["input"].get("turn_detection") != old_td:
            session.engines.detector.configure(session.config["input"].get("turn_detection"))
        await self.send("session.updated", config=session.config)

    # -- resume and end -------------------------------------------------------------------
    async def resume(self, session_id: str) -> None:
        """protocol.md 3.6 / 6.7: ``session.ready`` with the same id and history, or
        ``session_not_found`` / ``session_forbidden`` + 1008."""
        if self.session is not None:
            await self.send_error("invalid_format", "session.resume must be the first message",
                                  "type")
            return
        session = None if self.faults.refuse_resume else self.registry.resumable(session_id)
        if session is None:
            await self.close_policy("session_not_found", "Session not found or grace window has expired")
            return
        if session.owner != self.identity.owner:
            await self.close_policy("session_forbidden", "Session belongs to another account")
            return
        old = session.connection
        if old is not None:  # a half-open old connection: this one takes over
            old.closing = True
            old.spawn(old.ws.close(1008, "session resumed on another connection"))
        session.engines.detector = self.fresh_detector(session)
        session.resume_token = self.credentials.mint_resume(session.id, session.owner)
        session.stats["resumes"] += 1
        self.attach(session)
        self.spawn(self._become_ready(greeting=False))

    def attach(self, session: Session) -> None:
        self.registry.attach(session, self)
        session.stats.update(self._pre_stats)
        self._pre_stats.clear()
        self.session = session

    def fresh_detector(self, session: Session) -> Any:
        """A new turn detector for a resumed session (its audio clock restarts with us)."""
        detector = self.make_engines().detector
        detector.configure(session.config["input"].get("turn_detection"))
        return detector

    async def end_session(self) -> None:
        """protocol.md 3.7 / 4.4: ``session.ended`` then close 1000; not resumable afterwards."""
        await self.cancel_replies()
        session = self.session
        duration = session.duration_s if session else time.monotonic() - self.connected
        audio = session.audio_duration_s if session else None
        await self.send("session.ended", session_duration_seconds=round(duration, 3),
                        audio_duration_seconds=audio)
        if session is not None:
            self.registry.end(session)
        self.closing = True
        await self.ws.close(1000)
