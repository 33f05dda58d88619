"""Temporary tokens and secrets (issue 4): `voicecli token`, `--token` (?token=), single use, reconnect
without reusing a token, and keys/tokens never printed. Real subprocesses against `voicecli serve`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Served, run_cli, start_server, stop_server

HELLO = str(EXAMPLES / "hello.wav")
THANKS = str(EXAMPLES / "thanks.wav")
SECRET = "sk-live-7c1d9f0e4b2a"
FAST = ("--pace", "fast", "--trailing-silence", "800")


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[Served]:
    served = start_server("--engine", "scripted", "--scenario", "echo", "--tts", "tone", "--no-rate-check",
                          "--api-key", SECRET)
    yield served
    stop_server(served)


def mint(served: Served, *extra: str) -> str:
    r = run_cli("token", "--url", served.url, "--api-key", SECRET, *extra)
    assert r.code == 0, r.stderr
    token = r.stdout.strip()
    assert len(r.stdout.splitlines()) == 1 and len(token) > 20
    assert SECRET not in r.stdout + r.stderr
    return token


def test_token_is_minted_and_works_exactly_once(keyed_server: Served) -> None:
    token = mint(keyed_server, "--expires-in", "60", "--max-session-duration", "600")
    first = run_cli("ask", HELLO, "--url", keyed_server.at(scenario="echo"), "--token", token, *FAST,
                    "--json")
    assert first.code == 0, first.stderr
    assert token not in first.stdout + first.stderr
    again = run_cli("ask", HELLO, "--url", keyed_server.at(scenario="echo"), "--token", token, *FAST)
    assert again.code == 3
    assert again.stdout == "" and len(again.stderr.strip().splitlines()) == 1
    assert "refused" in again.stderr and "a temporary token works once" in again.stderr
    assert token not in again.stderr


def test_token_session_survives_a_drop_without_reusing_the_token(keyed_server: Served) -> None:
    token = mint(keyed_server)
    r = run_cli("ask", HELLO, THANKS, "--url", keyed_server.at(scenario="echo", fault="drop-after-replies=1"),
                "--token", token, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert "voicecli.resumed" in [e["type"] for e in events]
    agent = [e["text"] for e in events if e["type"] == "transcript.agent"]
    assert agent[-1] == "I am fine, thank you for asking."


def test_token_with_a_refused_key_exits_3_without_printing_it(keyed_server: Served) -> None:
    r = run_cli("token", "--url", keyed_server.url, "--api-key", "wrong-key-998877")
    assert r.code == 3 and r.stdout == ""
    assert r.stderr.strip() == ("voicecli: error: the server refused the API key (HTTP 401: Unauthorized) "
                                "(check --api-key / ASSEMBLYAI_API_KEY)")


def test_token_needs_a_key_and_a_reachable_server() -> None:
    r = run_cli("token")                                             # the service: a key, always
    assert r.code == 2 and "needs an API key" in r.stderr
    r = run_cli("token", "--url", "ws://127.0.0.1:9/v1/ws")          # another server may need none
    assert r.code == 4 and "cannot reach the token endpoint" in r.stderr
    r = run_cli("token", "--url", "ws://127.0.0.1:9/v1/ws", "--api-key", "k")
    assert r.code == 4 and "cannot reach the token endpoint http://127.0.0.1:9/v1/token" in r.stderr


def test_token_without_a_key_from_a_server_that_needs_none() -> None:
    """Issue 9: `voicecli serve` without --api-key mints for anyone, so `token` needs no key; the
    token then opens a session."""
    served = start_server("--engine", "scripted", "--scenario", "echo", "--tts", "tone", "--no-rate-check")
    try:
        r = run_cli("token", "--url", served.url)
        assert r.code == 0, r.stderr
        token = r.stdout.strip()
        assert token.count(".") == 2
        used = run_cli("ask", HELLO, "--url", served.at(scenario="echo"), "--token", token, *FAST)
        assert used.code == 0, used.stderr
    finally:
        stop_server(served)


def test_token_without_a_key_from_a_server_that_needs_one_says_so(keyed_server: Served) -> None:
    r = run_cli("token", "--url", keyed_server.url)
    assert r.code == 3 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"voicecli: error: the token endpoint {keyed_server.url.replace('ws://', 'http://').replace('/v1/ws', '/v1/token')}"
        " needs an API key (HTTP 401: Missing authorization header) (set ASSEMBLYAI_API_KEY or pass --api-key)"]


def test_token_range_is_checked_before_asking() -> None:
    r = run_cli("token", "--url", "ws://127.0.0.1:9/v1/ws", "--api-key", "k", "--expires-in", "601")
    assert r.code == 2 and "'--expires-in'" in r.stderr and "600" in r.stderr


def test_token_from_the_embedded_server() -> None:
    r = run_cli("token", "--local")
    assert r.code == 0, r.stderr
    assert r.stdout.count(".") == 2                               # JWT-shaped


def test_token_url_derivation() -> None:
    from voicecli.app.tokens import token_url
    assert token_url("ws://127.0.0.1:8765/v1/ws?scenario=x") == "http://127.0.0.1:8765/v1/token"
    assert token_url("wss://agents.assemblyai.com/v1/ws") == "https://agents.assemblyai.com/v1/token"
    assert token_url("wss://h.example/v1/realtime/") == "https://h.example/v1/token"
    assert token_url("wss://h.example/") == "https://h.example/v1/token"


class CaptureServer:
    """A real WebSocket server on loopback that records the upgrade request and refuses it
    (session.error unauthorized, close 1008), as the service does for a bad token."""

    def __init__(self) -> None:
        from websockets.sync.server import serve
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server = serve(self.handler, "127.0.0.1", 0)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/v1/ws"

    def handler(self, ws: Any) -> None:
        self.requests.append((ws.request.path, dict(ws.request.headers.raw_items())))
        ws.send(json.dumps({"type": "session.error", "code": "unauthorized", "message": "Invalid token",
                            "param": None, "timestamp": 1.0}))
        ws.close(1008, "unauthorized")

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def test_token_is_sent_as_a_query_parameter_not_a_header() -> None:
    capture = CaptureServer()
    try:
        r = run_cli("ask", HELLO, "--url", capture.url + "?keep=1", "--token", "tok.en.value", *FAST)
    finally:
        capture.stop()
    assert r.code == 3 and "tok.en.value" not in r.stderr
    (path, headers) = capture.requests[0]
    assert path == "/v1/ws?keep=1&token=tok.en.value"
    assert "authorization" not in {k.lower() for k in headers}


def test_keys_and_tokens_never_reach_output(keyed_server: Served, tmp_path: Path) -> None:
    r = run_cli("ask", HELLO, "--url", keyed_server.at(scenario="echo"), "--api-key", SECRET, *FAST, "--json",
                "--debug")
    assert r.code == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    ready = [json.loads(line) for line in r.stdout.splitlines() if '"session.ready"' in line][0]
    assert ready["resume_token"] == "<redacted>"                  # a credential too (protocol.md 1.2)

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'api_key = "{SECRET}"\n')
    cfg.chmod(0o600)
    for args in (("config", "show", "--config", str(cfg)), ("config", "show", "--config", str(cfg), "--json"),
                 ("config", "show", "--token", "tok-secret-55", "--json")):
        shown = run_cli(*args)
        assert shown.code == 0, shown.stderr
        assert SECRET not in shown.stdout + shown.stderr and "tok-secret-55" not in shown.stdout
        assert "<redacted>" in shown.stdout
    env = run_cli("config", "show", "--json", env={"ASSEMBLYAI_API_KEY": SECRET})
    assert SECRET not in env.stdout and json.loads(env.stdout)["settings"]["api_key"] == {
        "value": "<redacted>", "source": "env ASSEMBLYAI_API_KEY"}
