"""The typed session config of protocol.md section 5, its wire form and its validation."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import ROOT
from voicecli.protocol.config import (
    AudioFormat,
    SessionConfig,
    ToolSpec,
    TurnDetection,
    immutable_changes,
    resolve_config,
    validate_session,
)
from voicecli.settings import CommonFlags, resolve

DOCS_EXAMPLE = {   # protocol.md 3.1, plus schema-only and unknown-to-us keys
    "system_prompt": "You are a concise support agent. Max 2 sentences per turn.",
    "greeting": "Hi! How can I help you today?",
    "input": {"format": {"encoding": "audio/pcm", "sample_rate": 24000}, "keyterms": ["AssemblyAI"],
              "turn_detection": {"vad_threshold": 0.5, "interrupt_response": True, "min_silence": 200,
                                 "max_silence": 1000, "uninterruptible_turns": ["greeting"]},
              "transcription_mode": "balanced", "type": "audio"},
    "output": {"voice": "alba", "format": {"encoding": "audio/pcm"}, "volume": 100},
    "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]},
               "execution_mode": "hold", "timeout_seconds": 30, "http": {"url": "https://x.example"}}],
    "llm": [{"base_url": "https://llm.example/v1", "model": "m"}],
}


def test_docs_example_validates_and_round_trips() -> None:
    assert validate_session(DOCS_EXAMPLE) == []
    typed = SessionConfig.from_wire(copy.deepcopy(DOCS_EXAMPLE))
    assert typed.input is not None and typed.input.turn_detection == TurnDetection(
        vad_threshold=0.5, min_silence=200, max_silence=1000, interrupt_response=True,
        uninterruptible_turns=("greeting",))
    assert typed.output is not None and typed.output.format == AudioFormat(encoding="audio/pcm")
    assert typed.tools is not None and typed.tools[0].extra == {"http": {"url": "https://x.example"}}
    assert typed.extra == {"llm": DOCS_EXAMPLE["llm"]}
    assert typed.to_wire() == DOCS_EXAMPLE


def test_typed_values_encode_only_what_is_set() -> None:
    cfg = SessionConfig(system_prompt="Be brief.", tools=(ToolSpec("ping"),))
    assert cfg.to_wire() == {"system_prompt": "Be brief.", "tools": [
        {"type": "function", "name": "ping", "description": "", "parameters": {"type": "object", "properties": {}}}]}
    assert SessionConfig(agent_id="agent-1").to_wire() == {"agent_id": "agent-1"}


def test_the_example_config_file_goes_on_the_wire_through_the_typed_model() -> None:
    session = resolve(CommonFlags(config_path=str(ROOT / "config.example.toml"), api_key="k")).session
    assert SessionConfig.from_wire(session).to_wire() == session
    assert session["tools"][0]["type"] == "function"


@pytest.mark.parametrize("session,code,param", [
    ({"input": {"turn_detection": {"min_silence": 1000, "max_silence": 1000}}}, "invalid_value",
     "input.turn_detection.min_silence"),
    ({"input": {"format": {"encoding": "audio/pcm", "sample_rate": 16000}}}, "invalid_value",
     "input.format.sample_rate"),
    ({"output": {"voice": "claire"}}, "invalid_value", "output.voice"),
    ({"agent_id": "a", "greeting": "hi"}, "agent_id_not_first", "agent_id"),
    ({"tools": [{"name": "x"}]}, "invalid_value", "tools[0].type"),
    ({"input": {"turn_detection": {"vad_threshold": 1.5}}}, "invalid_value", "input.turn_detection.vad_threshold"),
    ({"voice": "alba"}, "invalid_config", "voice"),
])
def test_validation_reports_code_and_param(session: dict[str, object], code: str, param: str) -> None:
    problems = validate_session(session)
    assert problems and (problems[0].code, problems[0].param) == (code, param)


def test_immutable_fields_and_resolved_config() -> None:
    resolved = resolve_config("sess_1", {"greeting": "hi", "output": {"voice": "anna"}})
    assert resolved["id"] == "sess_1" and resolved["output"]["voice"] == "anna"
    assert resolved["input"]["turn_detection"] is None                  # adaptive (protocol.md 5.10)
    assert immutable_changes(resolved, {"greeting": "hello", "output": {"volume": 50}}) == ["greeting"]
    assert immutable_changes(resolved, {"output": {"voice": "anna"}}) == []
    later = resolve_config("sess_1", {"tools": [{"type": "function", "name": "t"}]}, base=resolved)
    assert [t["name"] for t in later["tools"]] == ["t"] and later["greeting"] == "hi"
