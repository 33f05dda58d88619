"""Local server: HTTP routes, the token endpoint and WebSocket authentication (protocol.md 1.1-1.4)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from srvutil import (
    UNIT,
    client,
    http_base,
    http_get,
    module_server,
    run,
    start_server,
)
from websockets.exceptions import ConnectionClosed

from voicecli.server.app import ServerThread


@pytest.fixture(scope="module", name="srv")
def _srv() -> Iterator[ServerThread]:
    yield from module_server()

KEY = "sk-local-test"


@pytest.fixture(scope="module")
def keyed():  # type: ignore[no-untyped-def]
    thread = start_server(api_key=KEY)
    yield thread
    thread.stop()


def mint(url: str, query: str = "expires_in_seconds=60", key: str = KEY, bearer: bool = True) -> tuple[int, dict]:
    auth = f"Bearer {key}" if bearer else key
    status, ctype, body = http_get(f"{http_base(url)}/v1/token?{query}", {"Authorization": auth})
    assert ctype.startswith("application/json")
    return status, json.loads(body)


async def refused(url: str, **kw: object) -> dict:
    """Connect, expect session.error{unauthorized} as the first frame, then close 1008."""
    async with client(url, **kw) as c:  # type: ignore[arg-type]
        first = await c.recv()
        with pytest.raises(ConnectionClosed):
            await c.recv(2 * UNIT)
        assert c.ws.close_code == 1008
        return first


def assert_unauthorized(event: dict) -> None:
    assert event["type"] == "session.error"
    assert event["code"] == "unauthorized"
    assert event["param"] is None and event["session_id"] is None
    assert isinstance(event["message"], str) and event["message"]
    assert isinstance(event["timestamp"], float)


def test_ws_paths_and_aliases(srv: ServerThread) -> None:
    async def main() -> None:
        for path in ("/v1/ws", "/v1/voice", "/v1/realtime"):
            async with client(srv.url, path=path) as c:
                ready = await c.start()
                assert ready["session_id"].startswith("sess_")
    run(main())


def test_plain_get_426_and_unknown_404(srv: ServerThread) -> None:
    base = http_base(srv.url)
    for path in ("/v1/ws", "/v1/voice", "/v1/realtime"):
        status, _, _ = http_get(base + path)
        assert status == 426
    status, ctype, body = http_get(base + "/v1/nope")
    assert status == 404 and ctype.startswith("application/json")
    assert json.loads(body) == {"detail": "Not Found"}

    async def main() -> None:
        from websockets.exceptions import InvalidStatus
        with pytest.raises(InvalidStatus) as info:
            async with client(srv.url, path="/v2/ws"):
                pass
        assert info.value.response.status_code == 404
    run(main())


def test_token_endpoint(keyed) -> None:  # type: ignore[no-untyped-def]
    status, body = mint(keyed.url, "expires_in_seconds=60")
    assert status == 200 and set(body) == {"token", "expires_in_seconds"}
    assert body["expires_in_seconds"] == 60 and body["token"].count(".") == 2
    status, body = mint(keyed.url, "expires_in_seconds=600&max_session_duration_seconds=60", bearer=False)
    assert status == 200  # raw key accepted on the token endpoint
    status, body = mint(keyed.url, key="wrong")
    assert status == 401 and body == {"detail": "Unauthorized"}
    status, _, text = http_get(f"{http_base(keyed.url)}/v1/token?expires_in_seconds=60")
    assert status == 401 and json.loads(text) == {"detail": "Missing authorization header"}
    cases = {
        "": ("missing", "Field required"),
        "expires_in_seconds=0": ("greater_than_equal", "greater than or equal to 1"),
        "expires_in_seconds=601": ("less_than_equal", "less than or equal to 600"),
        "expires_in_seconds=abc": ("int_parsing", "valid integer"),
    }
    for query, (kind, msg) in cases.items():
        status, body = mint(keyed.url, query)
        assert status == 422, query
        (item,) = body["detail"]
        assert item["loc"] == ["query", "expires_in_seconds"] and item["type"] == kind
        assert msg in item["msg"]
    for bad in ("59", "10801"):
        status, body = mint(keyed.url, f"expires_in_seconds=60&max_session_duration_seconds={bad}")
        assert status == 422 and body["detail"][0]["loc"] == ["query", "max_session_duration_seconds"]


def test_auth_header_and_query_token(keyed) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with client(keyed.url, key=KEY) as c:
            await c.start()
        assert_unauthorized(await refused(keyed.url, key="wrong-key"))
        assert_unauthorized(await refused(keyed.url, key=None))
        assert_unauthorized(await refused(keyed.url, key=None, headers={"Authorization": KEY}))  # no Bearer
        _, body = mint(keyed.url)
        async with client(keyed.url, key=None, query=f"token={body['token']}") as c:
            await c.start()
        # single use
        assert_unauthorized(await refused(keyed.url, key=None, query=f"token={body['token']}"))
        assert_unauthorized(await refused(keyed.url, key=None, query="token=forged.token.value"))
        # expired: the redemption window is expires_in_seconds
        _, body = mint(keyed.url, "expires_in_seconds=1")
        await asyncio.sleep(1.2)
        first = await refused(keyed.url, key=None, query=f"token={body['token']}")
        assert_unauthorized(first)
        assert "expired" in first["message"]
    run(main())


def test_open_server_accepts_any_key_or_none_keyed_server_needs_one(srv: ServerThread, keyed) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with client(srv.url, key="anything-at-all") as c:
            await c.start()
        async with client(srv.url, key=None) as c:
            await c.start()
        assert_unauthorized(await refused(keyed.url, key=None))
    run(main())


def test_message_over_1mib_closes_1009(srv: ServerThread) -> None:
    async def main() -> None:
        async with client(srv.url) as c:
            await c.start()
            await c.send({"type": "input.audio", "audio": "A" * (2**20 + 16)})
            with pytest.raises(ConnectionClosed):
                await c.recv(3 * UNIT)
            await c.ws.wait_closed()
            assert c.ws.close_code == 1009
    run(main())


def test_server_thread_reports_actual_port_and_stops() -> None:
    thread = start_server()
    assert thread.url.startswith("ws://127.0.0.1:") and thread.url.endswith("/v1/ws")
    assert int(thread.url.split(":")[2].split("/")[0]) > 0
    thread.stop()
    t0 = time.monotonic()
    with pytest.raises(OSError):
        run(_connect_refused(thread.url))
    assert time.monotonic() - t0 < 5 * UNIT


async def _connect_refused(url: str) -> None:
    async with client(url):
        pass


def test_local_server_serve_forever_on_the_callers_loop() -> None:
    """What `voicecli serve` does: start() for the URL, serve_forever() until stopped."""
    from voicecli.server.app import LocalServer
    from voicecli.server.options import ServerOptions

    async def main() -> None:
        server = LocalServer(ServerOptions(port=0, tts="tone"))
        url = await server.start()
        assert url == server.url and url.endswith("/v1/ws")
        serving = asyncio.create_task(server.serve_forever())
        async with client(url) as c:
            ready = await c.start()
            assert server.session(ready["session_id"]) is not None
            await server.stop()  # session.ended, then close 1001 (going away)
            ended = await c.recv(2 * UNIT)
            assert ended["type"] == "session.ended"
            with pytest.raises(ConnectionClosed):
                await c.recv(2 * UNIT)
            assert c.ws.close_code == 1001
        await asyncio.wait_for(serving, 2 * UNIT)
        assert server.session(ready["session_id"]).ended
    run(main())
