"""The local server's Agents REST API (protocol.md 6.9) over real loopback HTTP, and stored agents
bound by ``session.update {agent_id}``: CRUD, validation, auth, persistence across restarts,
concurrent writers (threads and processes), lookups of agents another process wrote."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import ROOT, stop_server
from tests.conftest import start_server as start_serve
from tests.integration.srvutil import UNIT, client, http_base, run, start_server

AGENT: dict[str, Any] = {
    "name": "weather", "system_prompt": "You are a weather assistant.",
    "voice": {"voice_id": "anna"}, "greeting": "Hello from the stored agent.",
    "input": {"turn_detection": {"min_silence": 300, "max_silence": 1200}},
    "output": {"volume": 80},
    "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}}],
    "llm": [{"base_url": "http://127.0.0.1:9/v1", "model": "tiny", "api_key": "sk-secret"}],
}
RESOLVED_KEYS = {"id", "system_prompt", "greeting", "input", "output", "tools", "llm", "pre_connect_requests"}
INPUT_KEYS = {"type", "format", "keyterms", "turn_detection", "transcription_mode", "transcription_prompt",
              "language_codes", "voice_focus", "voice_focus_threshold", "continuous_partials"}
OUTPUT_KEYS = {"type", "voice", "format", "volume"}


def http(method: str, url: str, body: Any = None, key: str | None = "any-key",
         raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = key
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with opener.open(req, timeout=10 * UNIT) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return exc.code, json.loads(text) if text else None


def agents_of(ws_url: str) -> str:
    return http_base(ws_url) + "/v1/agents"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "agents.sqlite3"


def test_crud_round_trip(store: Path) -> None:
    srv = start_server(agents_store=str(store))
    try:
        base = agents_of(srv.url)
        assert http("GET", base) == (200, [])
        status, made = http("POST", base, AGENT)
        assert status == 201
        agent_id = made["id"]
        assert len(agent_id) == 36 and made["name"] == "weather" and made["voice"] == {"voice_id": "anna"}
        assert made["llm"] == [{"base_url": "http://127.0.0.1:9/v1", "model": "tiny"}]   # key write-only
        assert made["created_at"] == made["updated_at"]
        status, listed = http("GET", base)
        assert status == 200 and listed == [{"id": agent_id, "name": "weather",
                                             "created_at": made["created_at"],
                                             "updated_at": made["updated_at"]}]
        assert http("GET", f"{base}/{agent_id}") == (200, made)
        status, changed = http("PUT", f"{base}/{agent_id}", {"greeting": "Changed.", "name": "w2"})
        assert status == 200 and changed["greeting"] == "Changed." and changed["name"] == "w2"
        assert changed["system_prompt"] == AGENT["system_prompt"]          # fields not given are kept
        assert changed["created_at"] == made["created_at"] and changed["updated_at"] > made["updated_at"]
        assert http("DELETE", f"{base}/{agent_id}") == (204, None)
        assert http("GET", f"{base}/{agent_id}") == (404, {"detail": "Agent not found"})
        assert http("DELETE", f"{base}/{agent_id}") == (404, {"detail": "Agent not found"})
        assert http("PUT", f"{base}/{agent_id}", {"name": "x"}) == (404, {"detail": "Agent not found"})
        assert http("PATCH", base)[0] == 405
        assert http("POST", http_base(srv.url) + "/v1/token")[0] == 405
        assert http("POST", http_base(srv.url) + "/elsewhere")[0] == 404
        # the WebSocket and the plain-HTTP routes of http.py still work beside the REST seam
        assert http("GET", http_base(srv.url) + "/v1/token?expires_in_seconds=5", key="Bearer k")[0] == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("body, loc, needle", [
    ({"system_prompt": "x", "voice": {"voice_id": "alba"}}, ["body", "name"], "Field required"),
    ({"name": "a", "voice": {"voice_id": "alba"}}, ["body", "system_prompt"], "Field required"),
    ({"name": "a", "system_prompt": "x"}, ["body", "voice"], "Field required"),
    ({"name": "a", "system_prompt": "x", "voice": {"voice_id": "claire"}}, ["body", "voice", "voice_id"],
     "unknown voice 'claire'"),
    ({"name": "a", "system_prompt": "x", "voice": {"voice_id": "alba"},
      "input": {"turn_detection": {"min_silence": 900, "max_silence": 500}}},
     ["body", "input", "turn_detection", "min_silence"], "strictly less than"),
    ({"name": "a", "system_prompt": "x", "voice": {"voice_id": "alba"}, "tools": [{"name": "t"}]},
     ["body", "tools", 0, "type"], "function"),
    ({"name": "a", "system_prompt": "x", "voice": {"voice_id": "alba"},
      "output": {"format": {"encoding": "audio/pcm", "sample_rate": 16000}}},
     ["body", "output", "format", "sample_rate"], "24000"),
    ({"name": "a", "system_prompt": "x", "voice": {"voice_id": "alba"}, "llm": [{"model": "m"}]},
     ["body", "llm", 0, "base_url"], "Field required"),
    ({"name": 5, "system_prompt": "x", "voice": {"voice_id": "alba"}}, ["body", "name"], "valid string"),
])
def test_validation_errors_are_422_pydantic_style(store: Path, body: dict[str, Any], loc: list[Any],
                                                  needle: str) -> None:
    srv = start_server(agents_store=str(store))
    try:
        status, answer = http("POST", agents_of(srv.url), body)
        assert status == 422
        items = answer["detail"]
        assert all({"type", "loc", "msg", "input"} <= set(i) for i in items)
        match = [i for i in items if i["loc"] == loc]
        assert match and needle in match[0]["msg"], items
        assert http("GET", agents_of(srv.url)) == (200, [])      # nothing stored
    finally:
        srv.stop()


def test_bad_json_and_an_invalid_update_change_nothing(store: Path) -> None:
    srv = start_server(agents_store=str(store))
    try:
        base = agents_of(srv.url)
        status, answer = http("POST", base, raw=b"{not json")
        assert status == 422 and answer["detail"][0]["type"] == "json_invalid"
        _, made = http("POST", base, AGENT)
        status, answer = http("PUT", f"{base}/{made['id']}", {"voice": {"voice_id": "nope"}})
        assert status == 422 and answer["detail"][0]["loc"] == ["body", "voice", "voice_id"]
        assert http("GET", f"{base}/{made['id']}") == (200, made)
    finally:
        srv.stop()


def test_auth_raw_key_or_bearer_and_refusals(store: Path) -> None:
    srv = start_server(agents_store=str(store), api_key="sekrit")
    try:
        base = agents_of(srv.url)
        assert http("GET", base, key=None) == (401, {"detail": "Missing authorization header"})
        assert http("GET", base, key="wrong") == (401, {"detail": "Unauthorized"})
        assert http("POST", base, AGENT, key="Bearer wrong") == (401, {"detail": "Unauthorized"})
        assert http("GET", base) == (401, {"detail": "Unauthorized"})
        assert http("GET", base, key="sekrit") == (200, [])
        assert http("POST", base, AGENT, key="Bearer sekrit")[0] == 201
        assert len(http("GET", base, key="sekrit")[1]) == 1
    finally:
        srv.stop()
    open_srv = start_server(agents_store=str(store))      # no --api-key: any key, or none
    try:
        assert http("GET", agents_of(open_srv.url), key=None)[0] == 200
        assert http("GET", agents_of(open_srv.url), key="whatever")[0] == 200
    finally:
        open_srv.stop()


def test_only_agent_id_gets_ready_with_the_agents_resolved_config(store: Path) -> None:
    """The must-show: a session whose only message is session.update {agent_id} gets session.ready
    whose resolved config is the agent's, every 5.10 field filled. The agent was written by one
    server and is bound by another (the store is read at lookup time)."""
    writer = start_server(agents_store=str(store))
    try:
        _, made = http("POST", agents_of(writer.url), AGENT)
    finally:
        writer.stop()
    srv = start_server(agents_store=str(store))

    async def main() -> None:
        async with client(srv.url) as c:
            await c.send({"type": "session.update", "session": {"agent_id": made["id"]}})
            updated = await c.recv()
            ready = await c.recv()
            assert updated["type"] == "session.updated" and ready["type"] == "session.ready"
            config = ready["config"]
            assert set(config) >= RESOLVED_KEYS
            assert set(config["input"]) >= INPUT_KEYS and set(config["output"]) >= OUTPUT_KEYS
            assert config["system_prompt"] == AGENT["system_prompt"]
            assert config["greeting"] == AGENT["greeting"]
            assert config["output"]["voice"] == "anna" and config["output"]["volume"] == 80
            assert config["output"]["format"] == {"encoding": "audio/pcm", "sample_rate": 24000}
            td = config["input"]["turn_detection"]          # set keys as given, the unset ones null (5.10)
            assert {k: v for k, v in td.items() if v is not None} == {"min_silence": 300, "max_silence": 1200}
            assert [t["name"] for t in config["tools"]] == ["get_weather"]
            assert config["llm"] == [{"base_url": "http://127.0.0.1:9/v1", "model": "tiny"}]
            assert "sk-secret" not in json.dumps(ready)
            assert updated["config"] == config
            # the greeting is spoken: a full reply cycle whose transcript is the greeting verbatim
            said = await c.until("transcript.agent")
            assert said[-1]["text"] == AGENT["greeting"]
            # later updates still change mutable fields of a stored agent's session
            await c.send({"type": "session.update", "session": {"system_prompt": "Now terse."}})
            later = await c.until("session.updated")
            assert later[-1]["config"]["system_prompt"] == "Now terse."

    try:
        run(main())
    finally:
        srv.stop()


def test_unknown_agent_closes_1008_and_mixing_inline_fields_is_refused(store: Path) -> None:
    srv = start_server(agents_store=str(store))
    try:
        _, made = http("POST", agents_of(srv.url), AGENT)

        async def main() -> None:
            async with client(srv.url) as c:
                await c.send({"type": "session.update", "session": {"agent_id": "no-such-agent"}})
                error = await c.recv()
                assert error["type"] == "session.error" and error["code"] == "agent_not_found"
                with pytest.raises(ConnectionClosed):
                    await c.recv(2 * UNIT)
                assert c.ws.close_code == 1008
            async with client(srv.url) as c:
                await c.send({"type": "session.update",
                              "session": {"agent_id": made["id"], "system_prompt": "inline"}})
                error = await c.recv()
                assert error["code"] == "agent_id_not_first" and error["param"] == "agent_id"
                assert await c.quiet(0.2 * UNIT) == []          # no session.ready
                ready = await c.start({"agent_id": made["id"]})  # the same socket may retry
                assert ready["config"]["greeting"] == AGENT["greeting"]
            # a deleted agent is gone for new sessions at once
            assert http("DELETE", f"{agents_of(srv.url)}/{made['id']}")[0] == 204
            async with client(srv.url) as c:
                await c.send({"type": "session.update", "session": {"agent_id": made["id"]}})
                assert (await c.recv())["code"] == "agent_not_found"

        run(main())
    finally:
        srv.stop()


def test_agents_persist_across_a_serve_restart(store: Path) -> None:
    served = start_serve("--engine", "basic", "--tts", "tone", "--agents-store", str(store))
    try:
        status, made = http("POST", agents_of(served.url), AGENT)
        assert status == 201
    finally:
        stop_server(served)
    again = start_serve("--engine", "basic", "--tts", "tone", "--agents-store", str(store))
    try:
        assert http("GET", f"{agents_of(again.url)}/{made['id']}") == (200, made)
    finally:
        stop_server(again)


_WRITER = """
import json, sys, urllib.request
base, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(n):
    body = {"name": f"{tag}-{i}", "system_prompt": "p", "voice": {"voice_id": "alba"}}
    req = urllib.request.Request(base, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "k"})
    with opener.open(req, timeout=30) as resp:
        assert resp.status == 201
"""


def test_concurrent_writers_two_servers_processes_and_threads_lose_nothing(store: Path) -> None:
    """Two `voicecli serve` processes on one store, written by two client processes, two `voicecli
    agents create --local` runs and threads at once, plus concurrent PUTs of different fields of
    one agent: every write is kept."""
    a = start_serve("--engine", "basic", "--tts", "tone", "--agents-store", str(store))
    b = start_serve("--engine", "basic", "--tts", "tone", "--agents-store", str(store))
    try:
        _, shared = http("POST", agents_of(a.url), AGENT)
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, agents_of(url), tag, "15"], cwd=ROOT)
                 for url, tag in ((a.url, "pa"), (b.url, "pb"))]
        # and the CLI at the same time, writing through its own embedded server (--local)
        cli_env = dict(os.environ, VOICECLI_AGENTS_STORE=str(store))
        procs += [subprocess.Popen([sys.executable, "-m", "voicecli.cli", "agents", "create", "--local", "--from",
                                    str(ROOT / "examples" / "agent.toml")], cwd=ROOT, env=cli_env,
                                   stdout=subprocess.DEVNULL) for _ in range(2)]
        errors: list[BaseException] = []

        def writer(url: str, tag: str) -> None:
            try:
                for i in range(15):
                    status, _ = http("POST", agents_of(url), {"name": f"{tag}-{i}", "system_prompt": "p",
                                                              "voice": {"voice_id": "eve"}})
                    assert status == 201
            except BaseException as exc:   # noqa: BLE001 - re-raised below
                errors.append(exc)

        def updater(url: str, field: str, values: list[str]) -> None:
            try:
                for value in values:
                    status, _ = http("PUT", f"{agents_of(url)}/{shared['id']}", {field: value})
                    assert status == 200
            except BaseException as exc:   # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(a.url, "ta")),
                   threading.Thread(target=writer, args=(b.url, "tb")),
                   threading.Thread(target=updater, args=(a.url, "greeting", [f"g{i}" for i in range(10)])),
                   threading.Thread(target=updater, args=(b.url, "system_prompt", [f"s{i}" for i in range(10)]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * UNIT)
        for p in procs:
            assert p.wait(120 * UNIT) == 0
        assert not errors, errors
        for url in (a.url, b.url):
            status, listed = http("GET", agents_of(url))
            names = sorted(x["name"] for x in listed)
            assert status == 200 and len(listed) == 63, len(listed)
            assert names.count("weather") == 3      # the shared one and the two CLI runs'
            for tag in ("pa", "pb", "ta", "tb"):
                assert [n for n in names if n.startswith(tag + "-")] == sorted(f"{tag}-{i}" for i in range(15))
        final = http("GET", f"{agents_of(b.url)}/{shared['id']}")[1]
        assert final["greeting"] == "g9" and final["system_prompt"] == "s9"   # neither update lost the other
        with sqlite3.connect(store) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        stop_server(a)
        stop_server(b)


def test_serve_agents_file_preloads_known_ids(tmp_path: Path, store: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text('[[agents]]\nid = "demo"\nname = "Demo"\nsystem_prompt = "Demo prompt."\n'
                    'greeting = "Demo greeting."\n[agents.output]\nvoice = "george"\n', encoding="utf-8")
    served = start_serve("--engine", "basic", "--tts", "tone", "--agents-store", str(store),
                         "--agents", str(path))
    try:
        status, agent = http("GET", f"{agents_of(served.url)}/demo")
        assert status == 200 and agent["name"] == "Demo" and agent["voice"] == {"voice_id": "george"}

        async def main() -> None:
            async with client(served.url) as c:
                ready = await c.start({"agent_id": "demo"})
                assert ready["config"]["greeting"] == "Demo greeting."
                assert ready["config"]["output"]["voice"] == "george"

        run(main())
    finally:
        stop_server(served)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[agents]]\nid = "x"\nname = "X"\nsystem_prompt = "p"\nvoice = "nobody"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "voicecli.cli", "serve", "--port", "0", "--agents", str(bad),
                           "--agents-store", str(store)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60 * UNIT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("voicecli: error: ")
    assert "agents[0]: voice.voice_id: unknown voice 'nobody'" in proc.stderr


def test_requests_split_across_packets_and_garbage_get_answers(store: Path) -> None:
    """The seam reads the request line whatever the TCP segmentation; a request h11 cannot parse
    gets a 400; a WebSocket upgrade sent byte by byte still reaches websockets."""
    import socket
    import time
    from urllib.parse import urlsplit

    srv = start_server(agents_store=str(store))
    host, port = urlsplit(srv.url).hostname, urlsplit(srv.url).port
    body = json.dumps(AGENT).encode()
    request = (f"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def exchange(data: bytes, step: int) -> bytes:
        with socket.create_connection((host, port), timeout=10 * UNIT) as s:
            for i in range(0, len(data), step):
                s.sendall(data[i:i + step])
                time.sleep(0.001)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
                if b"101 Switching Protocols" in out:
                    break
            return out

    try:
        answer = exchange(request, 3)
        assert answer.startswith(b"HTTP/1.1 201 ") and b'"name": "weather"' in answer
        assert exchange(b"POST /v1/agents HTTP/1.1\r\nContent-Length: zz\r\n\r\n", 100).startswith(b"HTTP/1.1 400 ")
        upgrade = (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert exchange(upgrade, 1).startswith(b"HTTP/1.1 101 Switching Protocols")
    finally:
        srv.stop()
