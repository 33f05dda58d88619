"""Engine calls off the event loop (design.md 15): one thread pool per server, a bound per session.

:class:`SessionWorkers` runs blocking engine calls (speech-to-text, text-to-speech, output
encoding) and blocking iterators (a brain's token stream) in the server's thread pool. Each session
may have at most ``limit`` calls in flight, so one busy session cannot take every thread; the
WebSocket handshake and the session rules never wait for a worker at all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")

PER_SESSION = 3      # a brain stream, a clause being synthesized, a transcript
POOL_THREADS = 32

_DONE = object()


class SessionWorkers:
    """Worker access of one session (see module docstring)."""

    def __init__(self, pool: ThreadPoolExecutor, limit: int = PER_SESSION) -> None:
        self.pool = pool
        self.slots = asyncio.Semaphore(limit)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread; the result (or its exception)."""
        async with self.slots:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def iterate(self, make: Callable[[], Iterable[T]]) -> AsyncIterator[T]:
        """Items of the blocking iterable ``make()`` as the worker thread produces them. Closing
        the async iterator (or cancelling its consumer) stops the thread at its next item."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def post(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed (server shut down): nobody is listening
                stop.set()

        def produce() -> None:
            try:
                for item in make():
                    if stop.is_set():
                        return
                    post(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                post(_Failure(exc))
            finally:
                post(_DONE)

        async with self.slots:
            future = loop.run_in_executor(self.pool, produce)
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, _Failure):
                        raise item.exc
                    yield cast(T, item)
            finally:
                stop.set()
                if not future.done():
                    future.cancel()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def make_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="voicecli-engine")
