"""Conversation.try_send_audio (issue 10, Cost): the live mic path writes each chunk straight to the
socket, over a real loopback connection to the local server, and sends nothing (so the caller queues
the chunk for the ordered, flow-controlled path) whenever writing now could reorder frames."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest

from tests.integration.srvutil import FAST_SESSION, UNIT, eventually, module_server, run, tone_speech
from voicecli.app.conversation import ConnectionSettings, Conversation
from voicecli.protocol.constants import BYTES_PER_MS
from voicecli.protocol.events import InputSpeechStarted
from voicecli.server.app import ServerThread
from voicecli.session.client import Received
from voicecli.ui.output import JsonOutput


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    yield from module_server()


def _conv(url: str) -> Conversation:
    return Conversation(ConnectionSettings(url, FAST_SESSION, api_key="test-key"),
                        JsonOutput(stdout=io.StringIO(), stderr=io.StringIO()))


def test_chunks_written_at_once_reach_the_server(srv: ServerThread) -> None:
    async def body() -> None:
        conv = _conv(srv.url)
        seen: list[Received] = []
        conv.listeners.append(seen.append)
        assert not conv.try_send_audio(b"\x00" * 960)          # not connected: nothing sent
        await conv.open()
        try:
            pcm = tone_speech("hello there")
            step = 20 * BYTES_PER_MS
            written = [conv.try_send_audio(pcm[i:i + step]) for i in range(0, len(pcm), step)]
            assert all(written)
            await eventually(lambda: any(isinstance(r.event, InputSpeechStarted) for r in seen), 5 * UNIT)
        finally:
            await conv.close()
    run(body())


def test_nothing_is_written_while_another_send_holds_the_socket(srv: ServerThread) -> None:
    async def body() -> None:
        conv = _conv(srv.url)
        await conv.open()
        try:
            async with conv._send_lock:                       # a control event is being sent
                assert not conv.try_send_audio(b"\x00" * 960)
                assert conv.session.data_to_send() == []       # not queued in the session either
            assert conv.try_send_audio(b"\x00" * 960)
            await conv._close_ws()                             # the socket is gone
            await asyncio.sleep(0)
            assert not conv.try_send_audio(b"\x00" * 960)
        finally:
            await conv.close()
    run(body())
