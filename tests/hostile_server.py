"""A hostile Voice Agent server for client tests: a TEST DOUBLE of a misbehaving service, over a real
WebSocket on loopback (no mocks), run in a background thread.

Its polite core follows protocol.md 6.1-6.2 just enough for ``voicecli ask``/``chat``: the first
``session.update`` gets ``session.updated`` + ``session.ready``; loud ``input.audio`` followed by
``end_of_turn_ms`` of quiet audio makes one user turn (speech started/stopped, ``transcript.user``) and one reply
(``reply.started``, ``reply_ms`` of silent ``reply.audio``, ``transcript.agent``, ``reply.done``);
``session.resume`` of a known id gets ``session.ready`` with the same id; ``session.end`` gets
``session.ended`` and close 1000.

Hostility is switched on by :class:`Hostility` fields (each names the attack of issue 12 it plays):

- ``before_ready`` / ``after_ready``: raw text frames sent before ``session.ready`` / right after it
  (e.g. :func:`deep_array`, NaN, garbage).
- ``never_ready``: ``session.update`` is never answered.
- ``die_after_audio_ms``: after that much audio on one connection, the connection dies (``die_how``:
  ``abort`` = TCP reset without a close frame, ``ended`` = ``session.ended`` + 1000, ``1011`` =
  ``session.error internal_error`` + 1011, ``1008`` = a bare 1008, ``4000``, ``too-big`` = a frame
  larger than the client's max_size); ``die_times`` limits how many connections die (default: all).
- ``refuse_after_death``: after the first death the listening socket is closed (connection refused).
- ``flap_after_s``: every resumed connection dies (as ``die_how``) that many seconds after its ready.
- ``delta_storm``: (count, per_second) ``transcript.agent.delta`` frames inside the first reply.
- ``user_delta_storm``: (count, per_second) ``transcript.user.delta`` frames before the first reply.
- ``tool_calls``: that many ``tool.call`` frames in the first reply (names from ``tool_name``).
- ``audio_flood_s``: seconds of ``reply.audio`` sent as fast as the socket takes it in the first reply.
- ``follow_up_after_tools``: once every ``tool.call`` of a reply has its ``tool.result``, a follow-up reply
  (protocol.md 6.5; the polite thing, off by default).
- ``reply_in_background``: replies run as tasks, so client events are read (and counted) while a long
  reply streams (e.g. the ``session.end`` of a client interrupted mid-reply); default: inline.
- ``end_delay_s``: ``session.end`` is answered (``session.ended`` + 1000) only after that many seconds
  (a slow shutdown, for the client's second Ctrl-C).
- ``greet_ms``: a reply of that many ms of audio right after ``session.ready`` (no user turn needed), with
  its words as timed ``transcript.agent.delta`` (one per 100 ms of audio): a reply to cut mid-way. It is
  the first reply: with ``user_delta_storm`` / ``delta_storm`` set, those storms come before / inside it
  (so a chat on a silent mic gets them too).

:attr:`HostileServer.stats` counts connections, updates, resumes, deaths and client events by type
(thread-safe reads after the run); :attr:`Stats.storms` has one :class:`Storm` per storm with the
``input.audio`` the client sent while it lasted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000


def deep_array(depth: int = 2000) -> str:
    """A small frame (~4 KB) nested ``depth`` deep: crashes recursive decoders."""
    return "[" * depth + "]" * depth


def frame(event_type: str, **fields: Any) -> str:
    return json.dumps({"type": event_type, **fields, "timestamp": time.time()})


def _hex() -> str:
    return secrets.token_hex(16)


@dataclass
class Hostility:
    before_ready: list[str] = field(default_factory=list)
    after_ready: list[str] = field(default_factory=list)
    never_ready: bool = False
    die_after_audio_ms: float | None = None
    die_how: str = "abort"
    die_times: int | None = None
    refuse_after_death: bool = False
    flap_after_s: float | None = None
    delta_storm: tuple[int, float] | None = None
    user_delta_storm: tuple[int, float] | None = None
    tool_calls: int = 0
    tool_name: str = "get_weather"
    audio_flood_s: float = 0.0
    reply_in_background: bool = False
    follow_up_after_tools: bool = False
    end_delay_s: float = 0.0
    greet_ms: float = 0.0
    end_of_turn_ms: float = 600.0   # quiet audio after some loud audio that ends a user turn
    reply_ms: float = 400.0
    reply_text: str = "Hello from the hostile server."


@dataclass
class Storm:
    kind: str
    started: float              # time.monotonic()
    ended: float = 0.0
    audio_ms_before: float = 0.0   # input.audio received on that connection when it started / ended
    audio_ms_after: float = 0.0

    @property
    def audio_ratio(self) -> float:
        """input.audio received during the storm / its wall-clock duration."""
        return (self.audio_ms_after - self.audio_ms_before) / max(1e-9, (self.ended - self.started) * 1000)


@dataclass
class Stats:
    connections: int = 0
    updates: int = 0
    resumes: int = 0
    deaths: int = 0
    replies: int = 0
    client_events: Counter[str] = field(default_factory=Counter)
    tool_results: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)   # conversation.message events
    storms: list[Storm] = field(default_factory=list)


class HostileServer:
    """``with HostileServer(Hostility(...)) as srv: run_cli("ask", ..., "--url", srv.url)``."""

    def __init__(self, hostility: Hostility | None = None) -> None:
        self.h = hostility or Hostility()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._sessions: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> HostileServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("hostile server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/ws"

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    # -- one connection -------------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        self._count(connections=1)
        conn = _Connection(self, ws)
        try:
            await conn.serve()
        except ConnectionClosed:
            pass

    def _may_die(self) -> bool:
        h = self.h
        return h.die_times is None or self.stats.deaths < h.die_times

    def _after_death(self) -> None:
        self._count(deaths=1)
        if self.h.refuse_after_death and self._server is not None:
            self._server.close(close_connections=False)


class _Connection:
    def __init__(self, server: HostileServer, ws: ServerConnection) -> None:
        self.srv = server
        self.h = server.h
        self.ws = ws
        self.audio_ms = 0.0
        self.speech_ms = 0.0      # loud audio since the last turn
        self.silence_ms = 0.0     # quiet audio since the last loud chunk
        self.session_id = ""
        self.ready_at: float | None = None
        self.resumed = False
        self.first_reply_done = False
        self.greeter: asyncio.Task[None] | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.awaiting_results = 0  # tool.calls sent that have no tool.result yet

    @staticmethod
    async def _quietly(work: Any) -> None:
        try:
            await work
        except ConnectionClosed:
            pass

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def serve(self) -> None:
        flapper: asyncio.Task[None] | None = None
        async for message in self.ws:
            if isinstance(message, bytes):
                continue
            try:
                event = json.loads(message)
            except ValueError:
                continue
            etype = event.get("type", "")
            with self.srv._lock:
                self.srv.stats.client_events[etype] += 1
            if etype == "session.update" and self.ready_at is None:
                self.srv._count(updates=1)
                if self.h.never_ready:
                    continue
                self.session_id = f"sess_{_hex()}"
                self.srv._sessions.add(self.session_id)
                await self.ready(event.get("session") or {})
            elif etype == "session.resume":
                self.srv._count(resumes=1)
                sid = event.get("session_id", "")
                if sid not in self.srv._sessions:
                    await self.send(frame("session.error", code="session_not_found", message="no such session",
                                          param="session_id"))
                    await self.ws.close(1008, "session_not_found")
                    return
                self.session_id, self.resumed = sid, True
                await self.ready({})
                if self.h.flap_after_s is not None:
                    flapper = asyncio.create_task(self.flap(self.h.flap_after_s))
            elif etype == "input.audio" and self.ready_at is not None:
                pcm = base64.b64decode(event.get("audio", ""))
                ms = len(pcm) / BYTES_PER_MS
                self.audio_ms += ms
                if (self.h.die_after_audio_ms is not None and self.audio_ms >= self.h.die_after_audio_ms
                        and self.srv._may_die()):
                    await self.die()
                    return
                loud = len(pcm) >= 2 and int(np.abs(np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2")).max()) > 800
                if loud:
                    self.speech_ms += ms
                    self.silence_ms = 0.0
                else:
                    self.silence_ms += ms
                if self.speech_ms >= 100 and self.silence_ms >= self.h.end_of_turn_ms:
                    self.speech_ms = 0.0
                    if self.h.reply_in_background:
                        self.background.add(asyncio.create_task(self._quietly(self.turn())))
                    else:
                        await self.turn()
            elif etype == "tool.result":
                self.srv._count(tool_results=1)
                self.awaiting_results -= 1
                if self.awaiting_results == 0 and self.h.follow_up_after_tools:
                    await self.reply()
            elif etype == "conversation.message":
                with self.srv._lock:
                    self.srv.stats.messages.append(event)
            elif etype == "reply.create" and self.ready_at is not None:
                await self.reply()
            elif etype == "session.end":
                if self.h.end_delay_s:
                    try:          # the client may give up (close) first
                        await asyncio.wait_for(self.ws.wait_closed(), self.h.end_delay_s)
                        return
                    except TimeoutError:
                        pass
                await self.send(frame("session.ended", session_duration_seconds=1.0,
                                      audio_duration_seconds=self.audio_ms / 1000))
                await self.ws.close(1000)
                return
        for task in (flapper, self.greeter):
            if task is not None:
                task.cancel()

    async def ready(self, session: dict[str, Any]) -> None:
        for text in self.h.before_ready:
            await self.send(text)
        config = {"system_prompt": session.get("system_prompt", ""), "greeting": None,
                  "input": {"format": {"encoding": "audio/pcm", "sample_rate": RATE}},
                  "output": {"voice": "ivy", "format": {"encoding": "audio/pcm", "sample_rate": RATE}},
                  "tools": session.get("tools", [])}
        if not self.resumed:
            await self.send(frame("session.updated", config=config))
        await self.send(frame("session.ready", session_id=self.session_id, config=config,
                              expires_at=int(time.time()) + 3600, resume_token=f"rt_{_hex()}"))
        self.ready_at = time.monotonic()
        for text in self.h.after_ready:
            await self.send(text)
        if self.h.greet_ms and not self.resumed:
            self.greeter = asyncio.create_task(self.greet(self.h.greet_ms))

    async def greet(self, ms: float) -> None:
        """A reply without a user turn: timed word deltas at once, then real-time audio."""
        try:
            await self._greet(ms)
        except ConnectionClosed:
            pass

    async def _greet(self, ms: float) -> None:
        rid, item = f"resp_{_hex()}", f"msg_{_hex()}"
        first = not self.first_reply_done
        self.first_reply_done = True
        if first and self.h.user_delta_storm:
            await self.storm("transcript.user.delta", *self.h.user_delta_storm, item_id=f"msg_{_hex()}")
        await self.send(frame("reply.started", reply_id=rid, item_id=item))
        if first and self.h.delta_storm:
            await self.storm("transcript.agent.delta", *self.h.delta_storm, reply_id=rid, item_id=item)
        words = [f"word{i} " for i in range(int(ms // 100))]
        for i, word in enumerate(words):
            await self.send(frame("transcript.agent.delta", reply_id=rid, item_id=item, delta=word,
                                  start_ms=i * 100, end_ms=i * 100 + 90))
        data = base64.b64encode(bytes(50 * BYTES_PER_MS)).decode()
        for _ in range(int(ms // 50)):
            await self.send(frame("reply.audio", reply_id=rid, data=data))
            await asyncio.sleep(0.05)
        await self.send(frame("transcript.agent", reply_id=rid, item_id=item, text="".join(words).strip(),
                              interrupted=False))
        await self.send(frame("reply.done", reply_id=rid, status="completed"))

    async def die(self) -> None:
        how = self.h.die_how
        if how == "ended":
            await self.send(frame("session.ended", session_duration_seconds=1.0,
                                  audio_duration_seconds=self.audio_ms / 1000))
            await self.ws.close(1000)
        elif how == "1011":
            await self.send(frame("session.error", code="internal_error", message="internal error", param=None))
            await self.ws.close(1011, "internal error")
        elif how == "1008":
            await self.ws.close(1008)
        elif how == "4000":
            await self.ws.close(4000)
        elif how == "too-big":
            await self.send(json.dumps({"type": "x.padding", "pad": "x" * (17 * 1024 * 1024)}))
        else:
            self.ws.transport.abort()
        self.srv._after_death()

    async def flap(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.die()

    async def turn(self) -> None:
        item = f"msg_{_hex()}"
        await self.send(frame("input.speech.started"))
        if self.h.user_delta_storm and not self.first_reply_done:
            await self.storm("transcript.user.delta", *self.h.user_delta_storm, item_id=item)
        await self.send(frame("input.speech.stopped"))
        await self.send(frame("transcript.user", item_id=item, text="hello"))
        await self.reply()

    async def storm(self, event_type: str, count: int, per_second: float, **fields: Any) -> None:
        gap = 1.0 / per_second if per_second > 0 else 0.0
        start = time.monotonic()
        record = Storm(event_type, start, audio_ms_before=self.audio_ms)
        with self.srv._lock:
            self.srv.stats.storms.append(record)
        text = ""
        for i in range(count):
            word = f"w{i} "
            text += word
            if event_type == "transcript.user.delta":
                await self.send(frame(event_type, text=text[-2000:], **fields))
            else:
                await self.send(frame(event_type, delta=word, **fields))
            if gap:
                delay = start + (i + 1) * gap - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        record.ended, record.audio_ms_after = time.monotonic(), self.audio_ms

    async def reply(self) -> None:
        self.srv._count(replies=1)
        rid, item = f"resp_{_hex()}", f"msg_{_hex()}"
        first = not self.first_reply_done
        self.first_reply_done = True
        await self.send(frame("reply.started", reply_id=rid, item_id=item))
        if first and self.h.delta_storm:
            await self.storm("transcript.agent.delta", *self.h.delta_storm, reply_id=rid, item_id=item)
        if first and self.h.tool_calls:
            self.awaiting_results += self.h.tool_calls
            for i in range(self.h.tool_calls):
                await self.send(frame("tool.call", call_id=f"call_{i}", name=self.h.tool_name,
                                      arguments={"location": f"City {i}"}))
        chunk = bytes(50 * BYTES_PER_MS)
        data = base64.b64encode(chunk).decode()
        if first and self.h.audio_flood_s:
            for _ in range(int(self.h.audio_flood_s * 20)):
                await self.send(frame("reply.audio", reply_id=rid, data=data))
        for _ in range(max(1, int(self.h.reply_ms / 50))):
            await self.send(frame("reply.audio", reply_id=rid, data=data))
            await asyncio.sleep(0.05)
        await self.send(frame("transcript.agent", reply_id=rid, item_id=item, text=self.h.reply_text,
                              interrupted=False))
        await self.send(frame("reply.done", reply_id=rid, status="completed"))
