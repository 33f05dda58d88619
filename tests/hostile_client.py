"""Hostile clients for the local-server tests and benches: raw websockets clients over real
sockets (no voicecli client code), one function per attack (issue 12, "hostile-client fixture").

Every function connects to a real server URL (``ws://HOST:PORT/v1/ws``), does one thing a hostile
or careless client does, and returns what it saw as plain data for the caller to assert on:

- :func:`idle_forever`: upgrade, then send nothing; what the server did and when.
- :func:`many_idle`: ``n`` such connections at once; how many the server still holds after a while.
- :func:`token_spam`: mint ``n`` temporary tokens over one keep-alive HTTP connection; the time
  of each mint.
- :func:`resume_steal`: take a single-use token's session's ``resume_token`` and try to start
  new sessions with it, take over another session, and reuse it after it was replaced.
- :func:`path_scenario`: ``?scenario=<a file path>``; the first event and the close code.
- :func:`flood`: one client keeps the server busy (a long greeting, synthesized) while another
  connects; the second one's connect-to-``session.ready`` latency.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

SESSION: dict[str, Any] = {"input": {"turn_detection": {"min_silence": 200, "max_silence": 1000}}}


def _hdr(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _open(url: str, key: str | None = "test-key", query: str = "", timeout: float = 10.0
                ) -> ClientConnection:
    if query:
        url += ("&" if "?" in url else "?") + query
    return await connect(url, additional_headers=_hdr(key), proxy=None, compression=None,
                         max_queue=None, open_timeout=timeout, close_timeout=2)


async def _events(ws: ClientConnection, timeout: float) -> list[dict[str, Any]]:
    """Every JSON event until the socket closes or ``timeout`` passes (audio left out)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            raw = await asyncio.wait_for(ws.recv(), left)
            event = json.loads(raw)
            if event.get("type") != "reply.audio":
                got.append(event)
    except (TimeoutError, ConnectionClosed):
        pass
    return got


async def _until(ws: ClientConnection, kind: str, timeout: float = 10.0,
                 got: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Events up to ``kind`` (or a session.error), appended to ``got`` as they come."""
    got = [] if got is None else got
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.001, deadline - time.monotonic()))
        event = json.loads(raw)
        got.append(event)
        if event.get("type") == kind or event.get("type") == "session.error":
            return got


@dataclass
class Closed:
    """What the server did to one connection."""

    events: list[dict[str, Any]]
    code: int | None
    after_s: float | None   # seconds from the upgrade to the close (None: still open)


async def idle_forever(url: str, key: str | None = "test-key", wait_s: float = 15.0) -> Closed:
    """Upgrade and never send a message; wait up to ``wait_s`` for the server to act."""
    ws = await _open(url, key)
    t0 = time.monotonic()
    events = await _events(ws, wait_s)
    closed = ws.close_code is not None
    after = time.monotonic() - t0 if closed else None
    code = ws.close_code
    await ws.close()
    return Closed(events, code, after)


async def many_idle(url: str, n: int, hold_s: float, key: str | None = "test-key") -> tuple[int, int]:
    """Open ``n`` idle connections; after ``hold_s`` return (opened, still open)."""
    opened: list[ClientConnection] = []
    for _ in range(n):
        try:
            opened.append(await _open(url, key))
        except (OSError, TimeoutError, ConnectionClosed):
            break
    await asyncio.sleep(hold_s)
    alive = 0
    for ws in opened:   # a socket the server closed has its close frame (or EOF) by now
        try:
            await asyncio.wait_for(ws.recv(), 0.01)
        except TimeoutError:
            alive += 1
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - a frame arrived: still open
            alive += 1
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    return len(opened), alive


def token_spam(ws_url: str, key: str, n: int, expires_in: int = 600) -> list[float]:
    """Mint ``n`` tokens over one keep-alive HTTP/1.1 connection; seconds per mint, in order."""
    parts = urlsplit(ws_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    times: list[float] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", f"/v1/token?expires_in_seconds={expires_in}",
                         headers={"Authorization": key, "Connection": "keep-alive"})
            resp = conn.getresponse()
            body = resp.read()
            times.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise AssertionError(f"mint failed: {resp.status} {body[:200]!r}")
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    finally:
        conn.close()
    return times


def mint(ws_url: str, key: str, expires_in: int = 60) -> str:
    """One temporary token."""
    parts = urlsplit(ws_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("GET", f"/v1/token?expires_in_seconds={expires_in}", headers={"Authorization": key})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200, body
        return str(body["token"])
    finally:
        conn.close()


@dataclass
class StealReport:
    """Outcomes of :func:`resume_steal` (each: (first event type/code, close code))."""

    new_session_with_resume_token: tuple[str, int | None] = ("", None)
    second_new_session: tuple[str, int | None] = ("", None)
    take_over_other: tuple[str, int | None] = ("", None)
    victim_still_open: bool = False
    own_resume: tuple[str, int | None] = ("", None)
    old_token_after_resume: tuple[str, int | None] = ("", None)
    notes: list[str] = field(default_factory=list)


def _outcome(events: list[dict[str, Any]], code: int | None) -> tuple[str, int | None]:
    if not events:
        return "", code
    last = events[-1]
    kind = str(last.get("type"))
    return (f"{kind}:{last['code']}" if kind == "session.error" else kind), code


async def _try(url: str, token: str, message: dict[str, Any], timeout: float = 5.0
               ) -> tuple[str, int | None, dict[str, Any] | None]:
    """Connect with ``?token=``, send ``message``, return (outcome, close code, ready event)."""
    try:
        ws = await _open(url, None, "token=" + quote(token))
    except Exception as exc:  # noqa: BLE001 - a refused upgrade is an outcome too
        return f"refused:{type(exc).__name__}", None, None
    got: list[dict[str, Any]] = []
    try:
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed:
            pass   # refused at once: its session.error is still in the receive buffer
        await _until(ws, "session.ready", timeout, got)
    except (TimeoutError, ConnectionClosed):
        pass
    ready = next((e for e in got if e.get("type") == "session.ready"), None)
    if ready is None:   # let the close frame arrive
        try:
            await asyncio.wait_for(ws.wait_closed(), 3.0)
        except TimeoutError:
            pass
    outcome = _outcome(got, ws.close_code)
    await ws.close()
    return outcome[0], outcome[1] if ready is None else None, ready


async def resume_steal(url: str, key: str = "test-key") -> StealReport:
    """Issue 12.12: a single-use token's session's resume token must resume only that session."""
    report = StealReport()
    victim = await _open(url, key)
    await victim.send(json.dumps({"type": "session.update", "session": SESSION}))
    victim_ready = (await _until(victim, "session.ready"))[-1]
    # the attacker's one legitimate session, from one single-use token
    attacker = await _open(url, None, "token=" + quote(mint(url, key)))
    await attacker.send(json.dumps({"type": "session.update", "session": SESSION}))
    own_ready = (await _until(attacker, "session.ready"))[-1]
    token = own_ready["resume_token"]
    update = {"type": "session.update", "session": SESSION}
    kind, code, _ = await _try(url, token, update)
    report.new_session_with_resume_token = (kind, code)
    kind, code, _ = await _try(url, token, update)
    report.second_new_session = (kind, code)
    kind, code, _ = await _try(url, token, {"type": "session.resume", "session_id": victim_ready["session_id"]})
    report.take_over_other = (kind, code)
    try:   # the victim must not have been closed ("session resumed on another connection")
        await asyncio.wait_for(victim.wait_closed(), 0.5)
        report.victim_still_open = False
    except TimeoutError:
        report.victim_still_open = True
    # its own session: resumable with it (a half-open old connection is taken over) ...
    kind, code, ready = await _try(url, token, {"type": "session.resume", "session_id": own_ready["session_id"]})
    report.own_resume = (kind, code)
    if ready is not None and ready.get("resume_token") == token:
        report.notes.append("the resume did not replace the resume token")
    # ... and the token it used is dead once a new one was minted
    kind, code, _ = await _try(url, token, {"type": "session.resume", "session_id": own_ready["session_id"]})
    report.old_token_after_resume = (kind, code)
    for ws in (victim, attacker):
        await ws.close()
    return report


async def path_scenario(url: str, path: str, key: str = "test-key") -> tuple[dict[str, Any] | None, int | None]:
    """``?scenario=<path>`` then a session.update: (first event, close code)."""
    ws = await _open(url, key, "scenario=" + quote(path, safe=""))
    try:
        await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
    except ConnectionClosed:
        pass
    events = await _events(ws, 3.0)
    await ws.close()
    return (events[0] if events else None), ws.close_code


@dataclass
class FloodReport:
    """:func:`flood`: seconds from the second client's connect to its ``session.ready``."""

    ready_latency_s: list[float]
    busy_client_ready: bool
    first_audio_s: list[float] = field(default_factory=list)   # connect -> first audio of a short greeting


async def flood(url: str, greeting_chars: int = 50_000, probes: int = 3, key: str = "test-key",
                timeout: float = 30.0, every_s: float = 0.2, text: str = "sentences") -> FloodReport:
    """One client asks for a ``greeting_chars`` greeting (the server synthesizes all of it) while
    another connects ``probes`` times, each time measuring connect -> ``session.ready`` and
    connect -> the first audio of its own one-word greeting.
    ``text``: ``sentences`` (many short clauses) or ``words`` (one clause without punctuation)."""
    unit = "The quick brown fox jumps over the lazy dog. " if text == "sentences" else "word "
    words = (unit * (greeting_chars // len(unit) + 1))[:greeting_chars]
    busy = await _open(url, key)
    await busy.send(json.dumps({"type": "session.update", "session": {**SESSION, "greeting": words}}))
    got = await _until(busy, "session.ready", timeout)
    busy_ready = got[-1].get("type") == "session.ready"
    drain = asyncio.get_running_loop().create_task(_events(busy, timeout))
    await asyncio.sleep(0.3)   # the greeting is being synthesized now
    latencies: list[float] = []
    first_audio: list[float] = []
    for _ in range(probes):
        t0 = time.perf_counter()
        try:
            ws = await _open(url, key, timeout=timeout)
            await ws.send(json.dumps({"type": "session.update", "session": {**SESSION, "greeting": "Hello."}}))
            await _until(ws, "session.ready", timeout)
            latencies.append(time.perf_counter() - t0)
            await _until(ws, "reply.audio", timeout)
            first_audio.append(time.perf_counter() - t0)
            await ws.send(json.dumps({"type": "session.end"}))
            await ws.close()
        except (TimeoutError, OSError, ConnectionClosed):
            latencies += [float("inf")] * (len(latencies) == len(first_audio))
            first_audio += [float("inf")] * (len(first_audio) < len(latencies))
        await asyncio.sleep(every_s)
    drain.cancel()
    await busy.close()
    return FloodReport(latencies, busy_ready, first_audio)
