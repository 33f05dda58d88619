"""A recording WebSocket proxy on loopback (real sockets both ways): what a client sent and what
the server answered, with the time the proxy had each message."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.conftest import unit


class RecordingProxy:
    """A real WebSocket server on loopback that forwards every frame to ``upstream`` (same path and
    query, same credentials) and back, recording both directions; it keeps the close codes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rsplit("/v1/", 1)[0]
        self.sent: list[str] = []       # client -> server
        self.received: list[str] = []   # server -> client
        self.sent_at: list[float] = []      # time.monotonic() of each, when the proxy had it
        self.received_at: list[float] = []
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handle(self, ws: ServerConnection) -> None:
        headers = {k: v for k, v in ws.request.headers.raw_items() if k.lower() == "authorization"}
        async with connect(self.upstream + ws.request.path, additional_headers=headers, proxy=None,
                           compression=None, max_size=None) as up:
            async def pump(src: Any, dst: Any, log: list[str]) -> None:
                try:
                    async for message in src:
                        (self.sent_at if log is self.sent else self.received_at).append(time.monotonic())
                        log.append(message)
                        await dst.send(message)
                except ConnectionClosed:
                    pass
                finally:
                    if src.close_code in (None, 1005, 1006) and dst.transport is not None:
                        dst.transport.abort()              # a drop stays a drop (1006)
                    else:
                        await dst.close(src.close_code or 1000)
            await asyncio.gather(pump(ws, up, self.sent), pump(up, ws, self.received))

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/ws"
            self._ready.set()
            await self._stop

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        assert self._ready.wait(unit(10))
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._stop is not None
        self._stop.get_loop().call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(unit(10))
