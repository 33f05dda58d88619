"""Stored agents without sockets: validation (the session.update validator, pydantic-style items),
the agent file shapes, the TOML writer, URL derivation, and the SQLite store under threads."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from voicecli.app.agents_api import UUID_RE, agents_url, safe_json, to_toml
from voicecli.server.agents import (
    AgentFileError,
    AgentStore,
    from_config_shape,
    load_agents_file,
    session_of,
    to_config_shape,
    validate_agent,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent.toml"


def test_agents_url_beside_the_websocket() -> None:
    assert agents_url("wss://agents.assemblyai.com/v1/ws") == "https://agents.assemblyai.com/v1/agents"
    assert agents_url("ws://127.0.0.1:8765/v1/ws?scenario=tools") == "http://127.0.0.1:8765/v1/agents"
    assert agents_url("wss://agents.eu.assemblyai.com/v1/realtime") == "https://agents.eu.assemblyai.com/v1/agents"


def test_example_agent_file_is_a_valid_agent_in_the_config_shape() -> None:
    agent = from_config_shape(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert validate_agent(agent) == []
    assert agent["voice"] == {"voice_id": "alba"} and "output" not in agent
    assert agent["greeting"].startswith("Hi, I'm the weather assistant")
    (tool,) = agent["tools"]
    assert tool["name"] == "get_weather" and tool["type"] == "function"
    assert not {"command", "cwd", "callable"} & set(tool)      # how the client runs it: not stored
    session = session_of(agent)
    assert session["output"] == {"voice": "alba"} and "name" not in session and "voice" not in session


def test_validation_reuses_the_session_rules() -> None:
    base: dict[str, Any] = {"name": "a", "system_prompt": "p", "voice": {"voice_id": "alba"}}
    assert validate_agent(base) == []
    bad = validate_agent({**base, "input": {"transcription_mode": "fastest"}})
    assert bad[0]["loc"] == ["body", "input", "transcription_mode"] and bad[0]["input"] == "fastest"
    bad = validate_agent({**base, "tools": [{"type": "function", "name": "t", "timeout_seconds": 999}]})
    assert bad[0]["loc"] == ["body", "tools", 0, "timeout_seconds"]
    assert validate_agent({**base, "llm": [{"base_url": "u", "model": "m"}, {"base_url": "u", "model": "n"}]}
                          )[0]["type"] == "too_long"
    assert validate_agent([1, 2])[0]["loc"] == ["body"]
    assert validate_agent({**base, "voice": "alba"})[0]["loc"] == ["body", "voice"]


def test_config_shape_round_trips_through_the_toml_writer() -> None:
    record = {"id": "x", "name": "w", "system_prompt": 'say "hi"\nthen stop', "greeting": "Héllo",
              "voice": {"voice_id": "anna"}, "output": {"volume": 50, "format": {"encoding": "audio/pcm"}},
              "input": {"keyterms": ["a", "b"], "turn_detection": {"min_silence": 200, "max_silence": 900}},
              "tools": [{"type": "function", "name": "t", "description": "",
                         "parameters": {"type": "object", "properties": {"c": {"type": "string"}}}}],
              "llm": [{"base_url": "http://h/v1", "model": "m"}], "pre_connect_requests": [],
              "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:01Z"}
    text = to_toml(to_config_shape(record))
    back = from_config_shape(tomllib.loads(text))
    assert back == {k: v for k, v in record.items()}
    assert to_toml({"s": "a\x1b[31mred\u202e"}) == 's = "a\\u001b[31mred\\u202e"\n'   # no terminal control
    assert "\x1b" not in safe_json({"n": "\x1b]0;x\x07"})


def test_example_agents_file_for_serve() -> None:
    ((agent_id, agent),) = load_agents_file(EXAMPLE.with_name("agents.toml"))
    assert agent_id == "demo-weather" and agent["voice"] == {"voice_id": "george"}
    assert [t["name"] for t in agent["tools"]] == ["get_weather"]


def test_client_settings_are_not_agent_fields(tmp_path: Path) -> None:
    with pytest.raises(AgentFileError, match="'api_key' is a client setting"):
        from_config_shape({"name": "a", "api_key": "k"})
    path = tmp_path / "agents.toml"
    path.write_text('[[agents]]\nname = "no id"\nsystem_prompt = "p"\nvoice = "alba"\n', encoding="utf-8")
    with pytest.raises(AgentFileError, match=r"agents\[0\]: needs an id"):
        load_agents_file(path)
    path.write_text('[[agents]]\nid = "a"\nname = "A"\nsystem_prompt = "p"\nvoice = "alba"\n'
                    '[[agents]]\nid = "a"\nname = "B"\nsystem_prompt = "p"\nvoice = "alba"\n', encoding="utf-8")
    with pytest.raises(AgentFileError, match="a second agent with id 'a'"):
        load_agents_file(path)


def test_store_reads_missing_file_as_empty_without_creating_it(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "sub" / "agents.sqlite3")
    assert store.all() == [] and store.get("x") is None and not store.path.exists()
    made = store.create({"name": "a", "system_prompt": "p", "voice": {"voice_id": "alba"}})
    assert UUID_RE.match(made["id"]) and store.path.exists()
    assert (store.path.parent.stat().st_mode & 0o777) == 0o700
    assert (store.path.stat().st_mode & 0o777) == 0o600       # it may hold an llm api_key
    again = store.create({"name": "b", "system_prompt": "q", "voice": {"voice_id": "alba"}}, made["id"])
    assert again["created_at"] == made["created_at"] and again["name"] == "b"    # same id: replaced
    assert [a["name"] for a in store.all()] == ["b"]


def test_store_threads_write_at_once_and_updates_merge(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "agents.sqlite3")
    shared = store.create({"name": "s", "system_prompt": "p", "voice": {"voice_id": "alba"}})
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            mine = AgentStore(store.path)      # each its own handle, as separate processes have
            for i in range(20):
                mine.create({"name": f"t{n}-{i}", "system_prompt": "p", "voice": {"voice_id": "eve"}})
                mine.update(shared["id"], {f"field{n}": i})
        except BaseException as exc:   # noqa: BLE001 - re-raised by the assert
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert len(store.all()) == 81
    final = store.get(shared["id"])
    assert final is not None and [final[f"field{n}"] for n in range(4)] == [19, 19, 19, 19]
    assert store.delete(shared["id"]) and not store.delete(shared["id"])


def test_an_update_without_the_write_only_llm_key_keeps_it(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "agents.sqlite3")
    llm = {"base_url": "http://h/v1", "model": "m", "api_key": "sk-kept"}
    made = store.create({"name": "a", "system_prompt": "p", "voice": {"voice_id": "alba"}, "llm": [llm]})
    record, _ = store.update(made["id"], {"llm": [{"base_url": "http://h/v1", "model": "m2"}]})
    assert record is not None and record["llm"] == [{"base_url": "http://h/v1", "model": "m2", "api_key": "sk-kept"}]
    record, _ = store.update(made["id"], {"llm": [{"base_url": "http://other/v1", "model": "m"}]})
    assert record is not None and record["llm"] == [{"base_url": "http://other/v1", "model": "m"}]   # a new endpoint: no key carried over
