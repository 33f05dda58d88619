"""The thin I/O layer of one connection: a websockets-style pump over an
:class:`~voicecli.server.agent.AgentSession`.

``run()`` reads frames, hands each to ``agent.receive(frame, now)`` and runs the effects it
returns, in order (``effects.py``). The pump owns everything that needs the event loop: the timers
the agent arms, the reply pipeline tasks (``pipeline.py``), speech-to-text in a worker
(``workers.py``) and the one writer task that puts frames on the socket in exactly the order the
agent produced them. A session is registered with, detached from and taken over through the
registry (``registry.py``); the pump never touches another connection.

Fault injection (``faults.py``) subclasses the pump and overrides :meth:`Pump.send_event` and
:meth:`Pump.arm`; the agent session knows nothing about faults.
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

from voicecli.protocol.events import ServerEvent, server_event_to_dict

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
from .workers import SessionWorkers

log = logging.getLogger("voicecli.server")


class _CloseFrame:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Pump:
    """Serves one WebSocket connection; call :meth:`run` once."""

    def __init__(self, ws: ServerConnection, agent: AgentSession, *, registry: SessionRegistry,
                 workers: SessionWorkers, options: ServerOptions) -> None:
        self.ws = ws
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
        try:
            async for message in self.ws:
                await self.apply(self.agent.receive(message, time.time()))
                if self.closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            await self._teardown(writer)

    async def _teardown(self, writer: asyncio.Task[Any]) -> None:
        await self.apply(self.agent.closed(time.time()))
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
                self.registry.take_over(effect.session, self, self.superseded)
            elif isinstance(effect, EndSession):
                self.registry.end(effect.session)
            elif isinstance(effect, Detach):
                self.registry.detach(effect.session, self, self.options.resume_window_s)
        return []

    def send_event(self, event: ServerEvent) -> None:
        """Queue one server event for the writer."""
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
            except Exception:
                log.exception("speech-to-text failed")
                if not effect.final:
                    return
                text = ""   # the turn still gets its transcript.user and a reply
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

    async def _reply(self, job: ReplyJob) -> None:
        try:
            await run_reply(job, self.agent, self.workers, self.options, self.apply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reply %s failed", job.reply_id)
            await self.apply(self.agent.reply_complete(job.reply_id, "", time.time()))
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
