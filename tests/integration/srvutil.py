"""Helpers for the local-server integration tests: an in-process ServerThread on a free loopback
port, a raw websockets client (no voicecli client code), speech audio, and timeouts that are
multiples of one unit scaled by ``VOICECLI_TEST_TIMEOUT_SCALE`` (design.md 13).

pytest-asyncio is not used: each test calls :func:`run` (``asyncio.run`` with a deadline).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from voicecli.protocol.constants import BYTES_PER_MS
from voicecli.server.app import ServerThread
from voicecli.server.options import ServerOptions
from voicecli.server.tts import EspeakTTS, ToneTTS

SCALE = float(os.environ.get("VOICECLI_TEST_TIMEOUT_SCALE", "1"))
UNIT = 1.0 * SCALE  # seconds

# Short turn detection so tests do not wait for long silences.
FAST_TD = {"min_silence": 200, "max_silence": 1000}
FAST_SESSION: dict[str, Any] = {"input": {"turn_detection": FAST_TD}}


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30 * UNIT) -> Any:
    """Run one test coroutine on a fresh loop with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def start_server(**overrides: Any) -> ServerThread:
    # engine "basic": the model-free engines (energy VAD, "[speech N s]"); tests/speech run the real ones
    opts: dict[str, Any] = {"port": 0, "tts": "tone", "enforce_realtime": False, "engine": "basic"}
    opts.update(overrides)
    thread = ServerThread(ServerOptions(**opts))
    thread.start()
    return thread


def module_server() -> Iterator[ServerThread]:
    """Body of each module's ``srv`` fixture: ToneTTS, no rate limit, any API key."""
    thread = start_server()
    yield thread
    thread.stop()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a plain GET (no proxies)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=5 * UNIT) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def http_base(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://").rsplit("/v1/", 1)[0]


def tone_speech(text: str = "hello there", silence_ms: int = 500) -> bytes:
    """Loud synthetic "speech" (tone bursts per word) followed by silence."""
    return ToneTTS().synthesize(text).pcm + bytes(silence_ms * BYTES_PER_MS)


def espeak_speech(text: str, silence_ms: int = 700) -> bytes:
    """Real synthetic speech (libespeak-ng) padded with silence."""
    return bytes(200 * BYTES_PER_MS) + EspeakTTS().synthesize(text).pcm + bytes(silence_ms * BYTES_PER_MS)


class Client:
    """A raw protocol client: JSON in, dicts out; every received event is kept in ``events``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []

    async def send(self, obj: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def recv(self, timeout: float = 5 * UNIT) -> dict[str, Any]:
        """The next JSON event (non-JSON frames are kept in ``raw`` and skipped)."""
        while True:
            message = await asyncio.wait_for(self.ws.recv(), timeout)
            assert isinstance(message, str), "server sent a binary frame"
            try:
                event = json.loads(message)
            except ValueError:
                self.raw.append(message)
                continue
            self.events.append(event)
            return event

    async def until(self, event_type: str, timeout: float = 10 * UNIT, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first ``event_type`` whose fields equal ``match``."""
        got: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            event = await self.recv(max(left, 0.001))
            got.append(event)
            if event["type"] == event_type and all(event.get(k) == v for k, v in match.items()):
                return got

    async def start(self, session: dict[str, Any] | None = None) -> dict[str, Any]:
        """session.update -> the session.ready event (asserting session.updated came first)."""
        await self.send({"type": "session.update", "session": FAST_SESSION if session is None else session})
        got = await self.until("session.ready")
        assert [e["type"] for e in got][:1] == ["session.updated"], got
        return got[-1]

    async def send_pcm(self, pcm: bytes, chunk_ms: int = 40, realtime: bool = False) -> None:
        step = chunk_ms * BYTES_PER_MS
        for i in range(0, len(pcm), step):
            await self.send({"type": "input.audio", "audio": base64.b64encode(pcm[i:i + step]).decode()})
            if realtime:
                await asyncio.sleep(chunk_ms / 1000)

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything received within ``seconds`` (no error when nothing comes)."""
        got: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                got.append(await self.recv(left))
            except TimeoutError:
                break
        return got


@asynccontextmanager
async def client(url: str, query: str = "", key: str | None = "test-key",
                 headers: dict[str, str] | None = None, path: str | None = None) -> AsyncIterator[Client]:
    """Connect a raw client (Bearer ``key`` unless None; extra ``headers``; ``?query``)."""
    if path is not None:
        url = url.rsplit("/v1/", 1)[0] + path
    if query:
        url += ("&" if "?" in url else "?") + query
    hdrs = dict(headers or {})
    if key is not None:
        hdrs.setdefault("Authorization", f"Bearer {key}")
    # max_queue=None: tests do not read every audio frame; a bounded queue would stall the close
    async with connect(url, additional_headers=hdrs, proxy=None, compression=None, max_queue=None,
                       open_timeout=5 * UNIT, close_timeout=2 * UNIT) as ws:
        yield Client(ws)


async def eventually(predicate: Any, timeout: float = 2 * UNIT) -> None:
    """Poll ``predicate()`` (server state read from the test thread) until true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def types(events: list[dict[str, Any]], skip_audio: bool = True) -> list[str]:
    return [e["type"] for e in events if not (skip_audio and e["type"] == "reply.audio")]


def audio_of(events: list[dict[str, Any]], reply_id: str) -> bytes:
    return b"".join(base64.b64decode(e["data"]) for e in events
                    if e["type"] == "reply.audio" and e["reply_id"] == reply_id)
