"""The thin I/O layer of one connection: a websockets-style pump over an
:class:`~voicecli.server.agent.AgentSession`.

``run()`` reads frames, hands each to ``agent.receive(frame, now)`` and runs the effects it
returns, in order (``effects.py``). The pump owns everything that needs the event loop: the timers
the agent arms, the reply pipeline tasks (``pipeline.py``), speech-to-text in a worker
(``workers.py``) and the one writer task that puts frames on the socket in exactly the order the
agent produced them. A session is registered with, detached from and taken over through the
registry (``registry.py``); the pump never touches another connection.

Fault injection (``faults.py``) subclasses the pump and overrides :meth:`Pump.send_event`,
:meth:`Pump.arm` and :meth:`Pump.produce_reply`; the agent session knows nothing about faults.

Failures: an exception of an engine (speech-to-text, the brain, text-to-speech) or of the
session code itself is one log line (the traceback with ``--debug`` only) and, for that session
alone, ``session.error internal_error`` + close 1011 (protocol.md 1.4); other sessions go on. A
connection that sends no ``session.update``/``session.resume`` within ``idle_timeout_s`` gets
``agent_timeout`` + 1008.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicecli.protocol.events import ServerEvent, SessionError, SessionReady, server_event_to_dict

from .agent import AgentSession
from .effects import (
    ArmTimer,
    CancelReply,
    CancelTimer,
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
from .options import ServerOptions
from .pipeline import run_reply
from .registry import SessionRegistry
from .serverlog import event as log_event
from .workers import SessionWorkers

log = logging.getLogger("voicecli.server")

ERRORS_LOGGED = 5    # session.error lines logged per connection (the rest are counted)
IDLE_TIMER = "x.idle"


class _CloseFrame:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Pump:
    """Serves one WebSocket connection; call :meth:`run` once."""

    def __init__(self, ws: ServerConnection, agent: AgentSession, *, registry: SessionRegistry,
                 workers: SessionWorkers, options: ServerOptions, conn_id: int = 0) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.errors_sent = 0
        self.opened = time.time()
        self._failed = False
        self._resumed = False
        self.agent = agent
        self.registry = registry
        self.workers = workers
        self.options = options
        self.closing = False
        self._aborted = False
        self._close_queued = False
        self._out: asyncio.Queue[str | _CloseFrame | Callable[[], None]] = asyncio.Queue()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._replies: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._partial_busy = False
        self._next_partial_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Process client frames until the connection closes, then tear down."""
        writer = self._spawn(self._write())
        idle = self.options.idle_timeout_s
        if idle:
            self._timers[IDLE_TIMER] = asyncio.get_running_loop().call_later(idle, self._idle)
        try:
            async for message in self.ws:
                try:
                    effects = self.agent.receive(message, time.time())
                except Exception as exc:   # a bug in the session code: this session only
                    self.fail("handling a client message", exc)
                    break
                await self.apply(effects)
                if self.closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            await self._teardown(writer)

    def _idle(self) -> None:
        self._timers.pop(IDLE_TIMER, None)
        if self.agent.session is None:
            self._apply_now(self.agent.idle(time.time()))

    def fail(self, what: str, exc: BaseException) -> None:
        """An engine or the session code raised: one log line, ``internal_error`` + 1011 for this
        session (it ends), nothing for the others. Only the first failure counts."""
        if self._failed or self.closing:
            return
        self._failed = True
        session = self.agent.session
        log_event("session.failed", logging.ERROR, conn=self.conn_id,
                  session_id=session.id if session is not None else None, during=what,
                  error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
        log.debug("traceback of the failure", exc_info=exc)
        try:
            effects = self.agent.crashed(time.time())
        except Exception:   # the rules themselves are broken: close anyway
            effects = [Close(1011, "internal error")]
        self._apply_now(effects)

    def shutdown(self) -> None:
        """The server is stopping (SIGTERM): ``session.ended`` for a ready session, close 1001."""
        if self.closing:
            return
        try:
            self._apply_now(self.agent.shutdown(time.time()))
        except Exception as exc:  # noqa: BLE001 - closing anyway
            log.debug("shutdown of a connection failed", exc_info=exc)
            self.closing = True
            self.emit(_CloseFrame(1001, "server shutting down"))

    async def _teardown(self, writer: asyncio.Task[Any]) -> None:
        try:
            await self.apply(self.agent.closed(time.time()))
        except Exception as exc:  # noqa: BLE001 - still tear down
            log.debug("closing the session failed", exc_info=exc)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._close_queued and not self._aborted:   # let the writer flush up to the close frame
            try:
                await asyncio.wait_for(asyncio.shield(writer), 2.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        session = self.agent.session
        log_event("connection.closed", conn=self.conn_id,
                  session_id=session.id if session is not None else None,
                  code=self.ws.close_code, duration_s=round(time.time() - self.opened, 3),
                  errors=self.errors_sent or None)

    def superseded(self) -> None:
        """The registry's callback: another connection resumed our session (6.7)."""
        self.closing = True
        self.emit(_CloseFrame(1008, "session resumed on another connection"))

    def abort(self, why: str) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        log.info("fault: dropping connection (%s)", why)
        self.closing = self._aborted = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    # -- effects --------------------------------------------------------------------------
    async def apply(self, effects: list[Effect]) -> None:
        """Run effects in order, without waiting for anything (frames keep the order the agent
        produced them in). Kept async for the reply pipeline and the fault pump."""
        self._apply_now(effects)

    def _apply_now(self, effects: list[Effect]) -> list[Effect]:
        """Run effects without yielding. ``Transcribe`` starts a task: the next client frame is
        read at once (whisper takes 0.1-0.3 s; waiting would stall input audio)."""
        for effect in effects:
            if isinstance(effect, Send):
                self.send_event(effect.event)
            elif isinstance(effect, Transcribe):
                self._start_transcribe(effect)
            elif isinstance(effect, StartReply):
                self._start_reply(effect.job)
            elif isinstance(effect, CancelReply):
                task = self._replies.pop(effect.reply_id, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
            elif isinstance(effect, ArmTimer):
                self.arm(effect.name, effect.at)
            elif isinstance(effect, CancelTimer):
                handle = self._timers.pop(effect.name, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(effect, Close):
                self.closing = True
                self.emit(_CloseFrame(effect.code, effect.reason))
            elif isinstance(effect, Register):
                self.registry.add(effect.session)
                self.registry.attach(effect.session, self, self.superseded)
            elif isinstance(effect, TakeOver):
                self._resumed = True
                self.registry.take_over(effect.session, self, self.superseded)
            elif isinstance(effect, EndSession):
                close = next((e for e in effects if isinstance(e, Close)), None)
                code = close.code if close is not None else None
                reason = {1000: "session.end", 1001: "server shutdown", 1011: "internal error"}.get(
                    code or 0, close.reason if close is not None and close.reason else "ended")
                self.registry.end(effect.session, reason, code)
            elif isinstance(effect, Detach):
                self.registry.detach(effect.session, self, self.options.resume_window_s, self.ws.close_code)
        return []

    def send_event(self, event: ServerEvent) -> None:
        """Queue one server event for the writer (and log the ones that matter)."""
        if isinstance(event, SessionReady):
            log_event("session.resumed" if self._resumed else "session.ready", conn=self.conn_id,
                      session_id=event.session_id)
        elif isinstance(event, SessionError):
            self.errors_sent += 1
            if self.errors_sent <= ERRORS_LOGGED:
                log_event("session.error", logging.WARNING, conn=self.conn_id, session_id=event.session_id,
                          code=event.code, param=event.param)
        self.emit(self.encode(event))

    def encode(self, event: ServerEvent) -> str:
        """One server event as a text frame, strictly encoded, stamped now (protocol.md 2)."""
        return json.dumps(server_event_to_dict(event, time.time()), separators=(",", ":"),
                          ensure_ascii=False)

    def emit(self, frame: str | _CloseFrame | Callable[[], None]) -> None:
        """Queue a frame for the writer (order kept); nothing once aborted."""
        if self._aborted or self._close_queued:
            return
        self._close_queued = isinstance(frame, _CloseFrame)
        self._out.put_nowait(frame)

    def arm(self, name: str, at: float) -> None:
        """Call ``agent.timer(name)`` at wall time ``at``."""
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timers[name] = loop.call_later(delay, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self._apply_now(self.agent.timer(name, time.time()))

    def _start_transcribe(self, effect: Transcribe) -> None:
        """Finals always run; a partial is skipped while another is in flight or before the STT's
        ``next_partial_in_s`` (its CPU budget, whisper.py) has passed since the last one."""
        if not effect.final:
            if self._partial_busy or time.monotonic() < self._next_partial_at:
                self.agent.stats["partials_skipped"] += 1
                return
            self._partial_busy = True
        self._spawn(self._transcribe(effect))

    async def _transcribe(self, effect: Transcribe) -> None:
        session = self.agent.session
        try:
            if session is None:
                return
            stt = session.engines.stt
            try:
                text = await self.workers.run(stt.final if effect.final else stt.partial, effect.pcm)
            except Exception as exc:
                self.fail("speech-to-text", exc)
                return
            if not effect.final:
                wait = float(getattr(stt, "next_partial_in_s", 0.0) or 0.0)
                self._next_partial_at = time.monotonic() + wait
            self._apply_now(self.agent.transcribed(effect.item_id, text, effect.final, time.time(),
                                                   at_ms=effect.at_ms))
        finally:
            if not effect.final:
                self._partial_busy = False

    def _start_reply(self, job: ReplyJob) -> None:
        task = self._spawn(self._reply(job))
        self._replies[job.reply_id] = task

    async def produce_reply(self, job: ReplyJob) -> None:
        """The reply pipeline of one reply (the fault pump's seam for an engine crash)."""
        await run_reply(job, self.agent, self.workers, self.options, self.apply)

    async def _reply(self, job: ReplyJob) -> None:
        try:
            await self.produce_reply(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(f"reply {job.reply_id}", exc)
        finally:
            if self._replies.get(job.reply_id) is asyncio.current_task():
                del self._replies[job.reply_id]

    # -- tasks ----------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None \
                and not isinstance(task.exception(), ConnectionClosed):
            log.error("server task failed", exc_info=task.exception())

    async def _write(self) -> None:
        """The one writer: frames in order; a close frame ends it."""
        try:
            while True:
                frame = await self._out.get()
                if isinstance(frame, _CloseFrame):
                    await self.ws.close(frame.code, frame.reason)
                    return
                if isinstance(frame, str):
                    await self.ws.send(frame)
                else:
                    frame()   # a marker: runs once everything before it is on the socket
        except ConnectionClosed:
            pass
