"""``voicecli agents ...`` and ``--agent-id NAME_OR_ID`` against real `voicecli serve` processes
(each test on its own temporary agents store, never the user's)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Served, run_cli, stop_server
from tests.conftest import start_server as start_serve

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
GREETING = "Hi, I'm the weather assistant. Which city would you like the weather for?"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's agents store, the default of every serve/CLI process it starts."""
    path = tmp_path / "agents.sqlite3"
    monkeypatch.setenv("VOICECLI_AGENTS_STORE", str(path))
    return path


@pytest.fixture
def served(store: Path) -> Iterator[Served]:
    s = start_serve("--engine", "basic", "--tts", "tone")
    yield s
    stop_server(s)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def test_must_show_create_local_then_ask_with_that_id(served: Served) -> None:
    made = run_cli("agents", "create", "--local", "--from", str(EXAMPLES / "agent.toml"))
    assert made.code == 0, made.stderr
    agent_id = made.stdout.strip()
    assert UUID.match(agent_id), made.stdout
    asked = run_cli("ask", "--agent-id", agent_id, "--url", served.url, str(EXAMPLES / "weather.wav"),
                    "--transcript")
    assert asked.code == 0, asked.stderr
    lines = asked.stdout.splitlines()
    assert lines[0] == f"agent: {GREETING}"          # the stored agent's greeting, verbatim
    assert lines[1].startswith("user: ") and lines[2].startswith("agent: ") and len(lines[2]) > 10
    # the same agent by its name, and the tool it declares run by the client's config
    tools = run_cli("ask", "--agent-id", "weather", "--url", served.url + "?scenario=tools",
                    "--config", str(EXAMPLES / "tools.toml"), str(EXAMPLES / "weather.wav"))
    assert tools.code == 0, tools.stderr
    assert "The weather in Paris is" in tools.stdout and "\"temp_c\": 19" in tools.stdout, tools.stdout


def test_list_show_update_delete_round_trip(served: Served, tmp_path: Path) -> None:
    url = ["--url", served.url]
    agent_id = run_cli("agents", "create", "--from", str(EXAMPLES / "agent.toml"), *url).stdout.strip()
    listed = run_cli("agents", "list", *url)
    assert listed.code == 0 and listed.stdout.split("\t")[:2] == [agent_id, "weather"]
    as_json = json.loads(run_cli("agents", "list", "--json", *url).stdout)
    assert [a["id"] for a in as_json] == [agent_id]
    shown = run_cli("agents", "show", "weather", *url)
    assert shown.code == 0, shown.stderr
    data = tomllib.loads(shown.stdout)       # the config file's shape, readable back
    assert data["id"] == agent_id and data["output"]["voice"] == "alba" and data["greeting"] == GREETING
    assert [t["name"] for t in data["tools"]] == ["get_weather"] and "command" not in data["tools"][0]
    edited = tmp_path / "edited.toml"
    edited.write_text(shown.stdout.replace(GREETING, "Hello again.").replace('voice = "alba"', 'voice = "vera"'),
                      encoding="utf-8")
    updated = run_cli("agents", "update", agent_id, "--from", str(edited), *url)
    assert updated.code == 0 and updated.stdout.strip() == agent_id, updated.stderr
    record = json.loads(run_cli("agents", "show", agent_id, "--json", *url).stdout)
    assert record["greeting"] == "Hello again." and record["voice"] == {"voice_id": "vera"}
    assert record["system_prompt"].startswith("You are a weather assistant")
    deleted = run_cli("agents", "delete", "weather", *url)
    assert deleted.code == 0 and deleted.stdout.strip() == agent_id
    assert run_cli("agents", "list", *url).stdout == ""


def test_errors_are_one_line_with_the_contract_exit_codes(store: Path, tmp_path: Path) -> None:
    keyed = start_serve("--engine", "basic", "--tts", "tone", "--api-key", "sekrit")
    try:
        url = ["--url", keyed.url]
        refused = run_cli("agents", "list", *url, "--api-key", "wrong")
        assert refused.code == 3 and last_line(refused.stderr) == \
            "voicecli: error: the server refused the API key (HTTP 401: Unauthorized) " \
            "(check --api-key / ASSEMBLYAI_API_KEY)"
        missing = run_cli("agents", "show", "0b8c7d4e-0000-4000-8000-000000000000", *url, "--api-key", "sekrit")
        assert missing.code == 1 and "no such agent: 0b8c7d4e-0000-4000-8000-000000000000" in missing.stderr
        bad = tmp_path / "bad.toml"
        bad.write_text('name = "x"\nsystem_prompt = "p"\n[output]\nvoice = "claire"\n', encoding="utf-8")
        rejected = run_cli("agents", "create", "--from", str(bad), *url, "--api-key", "sekrit")
        assert rejected.code == 2 and "voice.voice_id: unknown voice 'claire'" in rejected.stderr
        assert len(rejected.stderr.strip().splitlines()) == 1
        client_key = tmp_path / "client.toml"
        client_key.write_text('name = "x"\nsystem_prompt = "p"\nvoice = "alba"\nurl = "ws://x"\n', encoding="utf-8")
        wrong_shape = run_cli("agents", "create", "--from", str(client_key), *url, "--api-key", "sekrit")
        assert wrong_shape.code == 2 and "'url' is a client setting" in wrong_shape.stderr
        nofile = run_cli("agents", "create", "--from", str(tmp_path / "none.toml"), *url)
        assert nofile.code == 2 and "cannot read" in nofile.stderr
        secret = tmp_path / "llm.json"
        secret.write_text(json.dumps({"name": "l", "system_prompt": "p", "voice": {"voice_id": "alba"},
                                      "llm": [{"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                               "api_key": "sk-top-secret"}]}), encoding="utf-8")
        made = run_cli("agents", "create", "--from", str(secret), "--json", *url, "--api-key", "sekrit")
        assert made.code == 0 and "sk-top-secret" not in made.stdout + made.stderr
        shown = run_cli("agents", "show", "l", *url, "--api-key", "sekrit")
        assert shown.code == 0 and "sk-top-secret" not in shown.stdout and "sekrit" not in shown.stdout
        assert tomllib.loads(shown.stdout)["llm"] == [{"base_url": "http://127.0.0.1:9/v1", "model": "m"}]
        typo = tmp_path / "typo.toml"
        typo.write_text('name = "t"\nsystem_prompt = "p"\nvoice = "alba"\ngreting = "hi"\n', encoding="utf-8")
        warned = run_cli("agents", "create", "--from", str(typo), *url, "--api-key", "sekrit")
        assert warned.code == 0 and "'greting' is not an agent field" in warned.stderr
        assert "did you mean greeting?" in warned.stderr
    finally:
        stop_server(keyed)
    gone = run_cli("agents", "list", "--url", keyed.url)
    assert gone.code == 4 and "cannot reach the agents API" in gone.stderr
    remote = run_cli("agents", "list", "--url", "wss://agents.example.invalid/v1/ws")
    assert remote.code == 2 and "needs an API key" in remote.stderr


def test_agent_id_name_resolution_errors(served: Served) -> None:
    url = ["--url", served.url]
    ids = [run_cli("agents", "create", "--from", str(EXAMPLES / "agent.toml"), *url).stdout.strip()
           for _ in range(2)]
    wav = str(EXAMPLES / "weather.wav")
    ambiguous = run_cli("ask", "--agent-id", "weather", *url, wav)
    assert ambiguous.code == 2 and "2 agents are named 'weather'" in ambiguous.stderr
    assert all(i in ambiguous.stderr for i in ids)
    unknown = run_cli("ask", "--agent-id", "sunshine", *url, wav)
    assert unknown.code == 1 and "no agent with id or name 'sunshine' (agents: weather)" in unknown.stderr
    # an unknown UUID is sent as it is: the server answers agent_not_found (protocol error, exit 5)
    stranger = run_cli("ask", "--agent-id", "0b8c7d4e-0000-4000-8000-000000000000", *url, wav)
    assert stranger.code == 5 and "agent_not_found" in stranger.stderr


def test_eval_agent_id_by_name(served: Served, tmp_path: Path) -> None:
    made = run_cli("agents", "create", "--from", str(EXAMPLES / "agent.toml"), "--url", served.url)
    assert made.code == 0, made.stderr
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "stored"\ntimeout_s = 20\n\n[[conversations]]\nname = "weather"\n\n'
                     f'  [[conversations.turns]]\n  audio = "{EXAMPLES / "weather.wav"}"\n'
                     f'  reply = "seconds of speech"\n', encoding="utf-8")
    passed = run_cli("eval", str(suite), "--url", served.url, "--agent-id", "weather")
    assert passed.code == 0, passed.stdout + passed.stderr
    missing = run_cli("eval", str(suite), "--url", served.url, "--agent-id", "rainy")
    assert missing.code == 1 and "no agent with id or name 'rainy'" in missing.stderr
