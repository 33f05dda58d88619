"""One conversation with a Voice Agent server, across reconnects: the I/O shell around
:class:`voicecli.session.ClientSession`.

It owns the socket, a reader task, the clock and the timers (design.md principle 4). Everything a
command needs to react to arrives through listeners as :class:`Received` values, in order. The
rules (what may be sent when) are the session's; this module only moves frames.

Drops (a close without ``session.ended``, protocol.md 4.4) are resumed within the 30 s window with
``session.resume``; when the server refuses (``session_not_found``, as the live service did in
Sept 2026) a fresh session with the same config is started and the user is told the context was
lost (6.7).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from voicecli.app import transport
from voicecli.errors import AuthError, ConnectError, ServerError, TimeoutExpired, VoicecliError
from voicecli.protocol.constants import pcm_ms
from voicecli.protocol.events import (
    ClientEvent,
    RemoteProtocolError,
    ReplyDone,
    SessionEnded,
    SessionError,
    SessionReady,
)
from voicecli.session.client import ClientSession, Received, State
from voicecli.session.rules import AUTH_CODES, CLOSED_POLICY, RESUME_FAILED_CODES, close_key, error_kind
from voicecli.ui.output import Output
from voicecli.ui.sanitize import clean

Listener = Callable[[Received], None]


@dataclass
class ConnectionSettings:
    url: str
    session: dict[str, Any]
    api_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    open_timeout: float = 10.0
    ready_timeout: float = 15.0
    end_timeout: float = 2.0
    reconnect: bool = True
    resume_budget_s: float = 25.0   # stay inside the server's 30 s grace window (A2 does the same)
    # A flapping server (issue 12 item 2): a connection that dies within ``stable_after_s`` of its
    # session.ready does not end the outage. At most ``max_reconnects_per_turn`` reconnects without
    # a completed reply in between, and ``max_reconnects_per_minute`` in any 60 s; the backoff and
    # the resume budget run on across the flaps instead of restarting with each resume.
    stable_after_s: float = 10.0
    max_reconnects_per_turn: int = 3
    max_reconnects_per_minute: int = 6


class Conversation:
    """Connect, keep the session, dispatch events. Use as ``async with Conversation(...) as c``."""

    def __init__(self, settings: ConnectionSettings, output: Output,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Callable[[], Iterator[float]] = transport.backoff) -> None:
        self.settings = settings
        self.output = output
        self.clock = clock
        self.backoff = backoff
        self.session = ClientSession(settings.session)
        self.listeners: list[Listener] = []
        self.connected = asyncio.Event()   # set while a ready connection exists
        self.generation = 0                # bumped on every (re)connection that became ready
        self.dropped_audio_ms = 0.0        # audio offered while not connected
        self.failure: VoicecliError | None = None
        self.finished = asyncio.Event()    # set when the conversation is over for good
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._fast: tuple[Any, ...] | None = None     # try_send_audio's view of the socket (_fast_path)
        self._last_error: SessionError | None = None
        self._new_generation = asyncio.Event()   # set (and replaced) when a connection becomes ready
        self._close_code: int | None = None      # of the last socket that closed (None: no frame)
        # the reconnect budget across a flapping server (ConnectionSettings.stable_after_s)
        self._ready_at: float | None = None      # when the current connection became ready
        self._drops: deque[float] = deque()      # drops in the last minute
        self._streak = 0                         # reconnects since a completed reply / stable link
        self._outage_since: float | None = None  # first drop of the current outage pattern
        self._delays: Iterator[float] | None = None   # backoff, kept across a flapping outage

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and start a session; returns once ``session.ready`` arrived."""
        await self._connect(resume=False)
        self._reader = asyncio.create_task(self._read_loop(), name="voicecli-reader")

    async def close(self) -> None:
        """End the session politely: ``session.end``, wait briefly for ``session.ended``, close."""
        if self.session.state in (State.READY, State.AWAITING_READY) and self._ws is not None:
            self.session.end()
            try:
                await self._flush()
                await asyncio.wait_for(self.finished.wait(), self.settings.end_timeout)
            except TimeoutError:
                self.output.notice("the server did not confirm session.ended; closing anyway", "debug")
            except VoicecliError:
                pass
        self.finished.set()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self._close_ws()

    async def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 1.0)
            except Exception:
                pass

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    def raise_if_over(self) -> None:
        """Raise the failure, or ServerError if the server ended the session: the conversation is
        over for good and nothing will come back."""
        self.raise_if_failed()
        if self.finished.is_set():
            raise ServerError("the server ended the session")

    async def wait_connected(self) -> None:
        """Until a ready connection exists. Raises the failure if the conversation is over for good
        (never waits forever on a connection that will not come back)."""
        if not self.connected.is_set():
            waiters = [asyncio.ensure_future(self.connected.wait()),
                       asyncio.ensure_future(self.finished.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        self.raise_if_over()
        if not self.connected.is_set():
            raise ServerError("the server ended the session")

    async def generation_after(self, generation: int) -> None:
        """Until a connection newer than ``generation`` is ready."""
        while self.generation == generation:
            await self._new_generation.wait()

    # ------------------------------------------------------------------ sending

    async def send_audio(self, pcm: bytes) -> bool:
        """Send one ``input.audio`` chunk if the session is ready; otherwise drop it (counted in
        ``dropped_audio_ms``) and return False. Never raises for a dropped connection."""
        if not self.session.ready or self._ws is None:
            self.dropped_audio_ms += pcm_ms(len(pcm))
            return False
        self.session.send_audio(pcm)
        try:
            await self._flush()
        except ConnectError:
            return False
        return True

    def try_send_audio(self, pcm: bytes) -> bool:
        """Send one ``input.audio`` chunk right now, without a task or an ``await`` (issue 10: the
        live mic path is ~50 chunks/s; a task hop plus websockets' async send context per chunk were
        a third of the loop's CPU). Only when that cannot reorder or overfill anything: the session
        is ready, no other send is in progress, and the socket is open and not flow-controlled
        (paused). Otherwise returns False and sends nothing: the caller queues the chunk for
        :meth:`send_audio`, which waits properly."""
        ws = self._ws
        if ws is None or not self.session.ready or self._send_lock.locked():
            return False
        fast = self._fast
        if fast is None or fast[0] is not ws:
            fast = self._fast = _fast_path(ws)
        if fast is None:
            return False
        _, protocol, transport, send_data, open_state = fast
        if ws.paused or ws.send_in_progress is not None or transport.is_closing() \
                or protocol.state is not open_state:
            return False
        self.session.send_audio(pcm)
        for frame in self.session.data_to_send():
            protocol.send_text(frame.encode())
        send_data()
        return True

    async def send(self, event: ClientEvent) -> None:
        self.session.send(event)
        await self._flush()

    async def submit_tool_result(self, call_id: str, result: str, is_error: bool = False) -> bool:
        """Hand a tool result to the session (sent now or after the next reply.done; dropped if its
        reply was interrupted). Returns False if dropped."""
        kept = self.session.submit_tool_result(call_id, result, is_error)
        await self._flush()
        return kept

    async def _flush(self) -> None:
        frames = self.session.data_to_send()
        if not frames:
            return
        ws = self._ws
        if ws is None:
            return
        from websockets.exceptions import ConnectionClosed
        async with self._send_lock:
            try:
                for frame in frames:
                    await ws.send(frame)
            except ConnectionClosed:
                raise ConnectError("connection lost while sending") from None

    # ------------------------------------------------------------------ connecting

    def _credentials(self, reconnect: bool) -> tuple[str | None, str | None]:
        """(api_key, token) for a connection. A temporary token is single-use (protocol.md 1.3):
        reconnects use the API key if we have one, else the session's resume_token as Bearer."""
        s = self.settings
        if not reconnect:
            return s.api_key, s.token
        if s.api_key:
            return s.api_key, None
        if self.session.resume_token:
            return self.session.resume_token, None
        return None, s.token

    async def _connect(self, resume: bool) -> None:
        self._close_code = None
        api_key, token = self._credentials(reconnect=self.generation > 0)
        ws = await transport.connect(self.settings.url, api_key, token, self.settings.open_timeout)
        self._ws = ws
        if resume:
            self.session.resume(self.clock())
        else:
            self.session.start()
        try:
            await self._flush()
        except ConnectError:
            pass   # refused before reading our first message (auth): its session.error is read below
        await self._await_ready(ws)
        self._last_error = None          # errors are per connection: this one is ready
        self._ready_at = self.clock()
        self.generation += 1
        self.connected.set()
        self._new_generation.set()
        self._new_generation = asyncio.Event()

    async def _await_ready(self, ws: Any) -> None:
        """Read frames until ``session.ready``; errors before it are fatal for this attempt."""
        from websockets.exceptions import ConnectionClosed
        deadline = self.clock() + self.settings.ready_timeout
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                await self._close_ws()
                raise TimeoutExpired(f"no session.ready within {self.settings.ready_timeout:g} s",
                                     "the server accepted the connection but never started the session")
            try:
                frame = await asyncio.wait_for(ws.recv(), remaining)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                self._ws = None
                self._close_code = _close_code(exc)
                raise self._closed_before_ready(exc) from None
            rec = self._decode(frame)
            if rec is None:
                continue
            self._dispatch(rec)
            ev = rec.event
            if isinstance(ev, SessionReady):
                return
            if isinstance(ev, SessionError):
                self._last_error = ev
                if self.session.state not in (State.AWAITING_READY, State.RESUMING):
                    await self._close_ws()         # the table says this attempt is over
                    raise self._error_for(ev)

    def _closed_before_ready(self, exc: Exception) -> VoicecliError:
        if self._last_error is not None:
            return self._error_for(self._last_error)
        if close_key(_close_code(exc)) == CLOSED_POLICY:
            return self._policy_error(exc)
        return ConnectError("the server closed the connection before the session was ready"
                            f" ({_close_desc(exc)})")

    def _policy_error(self, exc: Exception) -> VoicecliError:
        return ServerError(f"the server closed the connection with a policy close ({_close_desc(exc)}) "
                           "and no session.error; a policy close ends the session (not resumable)",
                           "check the API key or token, the session's limits, and the server's logs")

    def _error_for(self, ev: SessionError) -> VoicecliError:
        code, msg = clean(ev.code, 60), clean(ev.message, 300)
        if ev.code in AUTH_CODES:
            return AuthError(f"the server refused the credentials ({code}: {msg})",
                             "check the API key or token; a temporary token works once")
        where = f" [{clean(ev.param, 100)}]" if ev.param else ""
        return ServerError(f"the server rejected the session: {code}{where}: {msg}", code=ev.code)

    # ------------------------------------------------------------------ reading

    def _decode(self, frame: str | bytes) -> Received | None:
        """The frame boundary: a frame the session cannot take (not JSON, nested too deep, not
        allowed now, or anything else its decoding raises) is one warning and is ignored; the
        session goes on (README: malformed frames are ignored)."""
        try:
            return self.session.receive(frame, self.clock())
        except RemoteProtocolError as exc:
            reason = str(exc)
        except RecursionError:
            reason = "nested too deeply"
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the session
            reason = f"{type(exc).__name__}: {exc}"
        reason = clean(reason, 200)
        self.output.notice(f"ignored a malformed frame from the server ({reason})", "warning")
        self.output.client_event("protocol_error", message=reason)
        return None

    def _dispatch(self, rec: Received) -> None:
        self.output.server_event(rec)
        for listener in list(self.listeners):
            listener(rec)

    async def _read_loop(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            while True:
                ws = self._ws
                if ws is None:
                    return
                try:
                    frame = await ws.recv()
                except ConnectionClosed as exc:
                    self._close_code = _close_code(exc)
                    if not await self._on_closed(exc):
                        return
                    continue
                rec = self._decode(frame)
                if rec is None:
                    continue
                if isinstance(rec.event, SessionError):
                    self._last_error = rec.event
                    if error_kind(rec.event.code) not in ("/fatal", "/refused"):   # fatal: one line
                        self.output.notice(f"server error {clean(rec.event.code, 60)}: "
                                           f"{clean(rec.event.message, 300)}", "warning")
                self._dispatch(rec)
                if isinstance(rec.event, ReplyDone) and not rec.stale:
                    self._streak = 0          # progress: the reconnect budget of a turn starts over
                if isinstance(rec.event, SessionEnded):
                    self.finished.set()
                try:
                    await self._flush()   # tool results released by reply.done
                except ConnectError:
                    pass
        except VoicecliError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: report it, don't hang the command
            self._fail(ServerError(f"internal error while reading from the server: {exc!r}"))

    def _fail(self, exc: VoicecliError) -> None:
        if self.failure is None:
            self.failure = exc
        self.connected.clear()
        self.finished.set()

    async def _on_closed(self, exc: Exception) -> bool:
        """Handle a closed socket. Returns True if a new connection is ready to read from."""
        self.connected.clear()
        self._ws = None
        now = self.clock()
        self.session.connection_lost(now, self._close_code)
        if self.session.state is State.ENDED:
            self.finished.set()
            return False
        err = self._last_error
        if self.session.state is State.FAILED:   # ended for good (the table says): no resume
            self._fail(self._error_for(err) if err is not None else self._policy_error(exc))
            return False
        if not self.settings.reconnect:
            self._fail(ConnectError(f"connection lost ({_close_desc(exc)})"))
            return False
        flapping = self._count_drop(now)
        if flapping is not None:
            self._fail(ConnectError(f"the server keeps dropping the connection: {flapping} "
                                    f"(last: {_close_desc(exc)}); giving up",
                                    "check the server (its logs, load, network) and try again later"))
            return False
        self.output.notice(f"connection lost ({_close_desc(exc)}); reconnecting", "warning")
        self.output.client_event("reconnect", reason=_close_desc(exc))
        dropped_before = self.dropped_audio_ms
        try:
            await self._reconnect(now)
        except VoicecliError as failure:
            self._fail(failure)
            return False
        lost_ms = self.dropped_audio_ms - dropped_before
        if lost_ms > 0:   # issue 4: audio captured during the gap is dropped, and said so
            self.output.notice(f"{lost_ms / 1000:.1f} s of input audio captured while reconnecting "
                               "was dropped", "warning")
            self.output.client_event("audio_dropped", ms=round(lost_ms))
        return True

    def _count_drop(self, now: float) -> str | None:
        """Book one drop against the reconnect budget; returns why the budget is spent, or None.
        A drop within ``stable_after_s`` of the connection's session.ready continues the outage
        (same backoff, same resume deadline); a stable connection starts a new one."""
        s = self.settings
        stable = self._ready_at is not None and now - self._ready_at >= s.stable_after_s
        if stable or self._outage_since is None:
            self._outage_since, self._delays = now, None
        if stable:
            self._streak = 0
        self._streak += 1
        self._drops.append(now)
        while self._drops and now - self._drops[0] > 60.0:
            self._drops.popleft()
        if self._streak > s.max_reconnects_per_turn:
            return f"{self._streak} drops without a completed reply"
        if len(self._drops) > s.max_reconnects_per_minute:
            return f"{len(self._drops)} drops within a minute"
        assert self._outage_since is not None
        if self._streak > 1 and now - self._outage_since >= s.resume_budget_s:
            return (f"{self._streak} drops in {now - self._outage_since:.0f} s, no connection lasting "
                    f"{s.stable_after_s:g} s")
        return None

    async def _reconnect(self, lost_at: float) -> None:
        outage = self._outage_since if self._outage_since is not None else lost_at
        deadline = outage + self.settings.resume_budget_s
        if self._delays is None:
            self._delays = self.backoff()
        delays = self._delays
        attempt = 0
        last: VoicecliError | None = None
        while self.clock() < deadline:
            attempt += 1
            await asyncio.sleep(min(next(delays), max(0.0, deadline - self.clock())))
            self._last_error = None
            try:
                if self.session.can_resume(self.clock()):
                    try:
                        await self._connect(resume=True)
                        self.output.notice("reconnected; session resumed", "info")
                        self.output.client_event("resumed", attempt=attempt,
                                                 session_id=self.session.session_id)
                        return
                    except ServerError as exc:
                        if exc.code not in RESUME_FAILED_CODES:
                            raise
                        self.session.connection_lost(self.clock())   # REFUSED: start afresh
                await self._connect(resume=False)
                self.output.notice("reconnected with a new session: the server could not resume the "
                                   "old one, so the conversation context was lost", "warning")
                self.output.client_event("new_session", attempt=attempt,
                                         session_id=self.session.session_id)
                return
            except AuthError:
                raise
            except (ConnectError, TimeoutExpired, ServerError) as exc:
                last = exc
                self.session.connect_failed(self.clock(), self._close_code)
                if self.session.over:                      # a session-ending error: stop trying
                    raise
                self.output.client_event("reconnect_failed", attempt=attempt, error=exc.message)
        raise ConnectError(f"connection lost and not recovered within {self.settings.resume_budget_s:g} s"
                           + (f" (last error: {last.message})" if last else ""),
                           "check the server and try again")


def _close_code(exc: Exception) -> int | None:
    rcvd = getattr(exc, "rcvd", None)
    return None if rcvd is None else int(rcvd.code)


def _close_desc(exc: Exception) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is None:
        sent = getattr(exc, "sent", None)
        if sent is not None and sent.code == 1009:     # we closed it: the server's frame was too big
            return (f"closed by voicecli: a frame from the server exceeded the "
                    f"{transport.MAX_FRAME // 2**20} MiB limit (1009)")
        return "closed without a close frame (1006)"
    reason = f" {clean(rcvd.reason, 120)}" if rcvd.reason else ""
    return f"close code {rcvd.code}{reason}"


def _fast_path(ws: Any) -> tuple[Any, ...] | None:
    """What :meth:`Conversation.try_send_audio` needs of a websockets connection, looked up once per
    connection: ``(ws, protocol, transport, send_data, State.OPEN)``; None for a connection without
    them (another websockets major version: every chunk then takes the awaited path)."""
    from websockets.protocol import State
    protocol, transport = getattr(ws, "protocol", None), getattr(ws, "transport", None)
    send_data = getattr(ws, "send_data", None)
    if protocol is None or transport is None or send_data is None or not hasattr(ws, "paused") \
            or not hasattr(ws, "send_in_progress"):
        return None
    return ws, protocol, transport, send_data, State.OPEN
