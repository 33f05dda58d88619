"""validate_session/resolve_config never raise on any value at any known path (issue 12 item 4: a
hostile session.update, or a TOML config holding nan/inf, gets a Problem, not a traceback), and the
resolved config fills every section 5.10 default (issue 9)."""

from __future__ import annotations

import copy
import datetime
import math

import pytest

from voicecli.protocol.config import resolve_config, validate_session

PATHS = [
    "system_prompt", "greeting", "input", "input.type", "input.format", "input.format.encoding",
    "input.format.sample_rate", "input.keyterms", "input.transcription_mode", "input.transcription_prompt",
    "input.language_codes", "input.voice_focus", "input.voice_focus_threshold", "input.continuous_partials",
    "input.turn_detection", "input.turn_detection.vad_threshold", "input.turn_detection.min_silence",
    "input.turn_detection.max_silence", "input.turn_detection.interrupt_response",
    "input.turn_detection.interruption_delay", "input.turn_detection.type",
    "input.turn_detection.uninterruptible_turns", "output", "output.type", "output.voice", "output.format",
    "output.format.encoding", "output.format.sample_rate", "output.volume", "tools", "tools.0",
    "tools.0.name", "tools.0.description", "tools.0.parameters", "tools.0.parameters.properties",
    "tools.0.parameters.required", "tools.0.execution_mode", "tools.0.timeout_seconds",
    "tools.0.response_instructions", "tools.0.http", "llm", "llm.0", "llm.0.base_url", "llm.0.model",
    "pre_connect_requests", "webhook", "webhook.url", "webhook.events", "webhook.secret",
]
VALUES = [math.nan, math.inf, -math.inf, 10**400, -(10**30), 5, 0.5, "x", "", True, None, [], [5], {},
          {"a": 1}, [{"a": None}], datetime.date(1979, 5, 27), {"d": datetime.time(7, 32)}]   # TOML dates
BASE = {"input": {"format": {}, "turn_detection": {}}, "output": {"format": {}},
        "tools": [{"type": "function", "name": "f", "parameters": {}, "response_instructions": {}}],
        "llm": [{"base_url": "http://x"}], "webhook": {"url": "https://h"}}


def _set(session: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = session
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


@pytest.mark.parametrize("path", PATHS)
def test_any_value_anywhere_is_a_problem_or_resolves(path: str) -> None:
    for value in VALUES:
        session = copy.deepcopy(BASE)
        _set(session, path, value)
        problems = validate_session(session)
        if not problems:
            resolve_config("sess_" + "0" * 32, session)


@pytest.mark.parametrize("value", [math.nan, math.inf, 10**400])
def test_non_finite_numbers_from_a_toml_config_are_invalid_values(value: float) -> None:
    problems = validate_session({"input": {"turn_detection": {"min_silence": value}}})
    assert [(p.code, p.param) for p in problems] == [("invalid_value", "input.turn_detection.min_silence")]


def test_resolved_config_fills_every_default() -> None:
    cfg = resolve_config("s", {"input": {"format": {"sample_rate": 24000}},
                               "output": {"format": {"encoding": "audio/pcmu", "sample_rate": 8000}},
                               "tools": [{"type": "function", "name": "f"}],
                               "llm": [{"base_url": "http://x/v1", "api_key": "secret"}]})
    assert cfg["input"]["format"] == {"encoding": "audio/pcm", "sample_rate": 24000}
    assert cfg["output"]["format"] == {"encoding": "audio/pcmu"}
    assert cfg["tools"] == [{"type": "function", "name": "f", "description": "",
                             "parameters": {"type": "object", "properties": {}, "required": []},
                             "execution_mode": "interactive", "timeout_seconds": 120.0}]
    assert cfg["llm"] == [{"base_url": "http://x/v1", "model": None}]
    text = resolve_config("s", {"input": {"type": "text"}, "output": {"type": "text"}})
    assert text["input"] == {"type": "text"} and text["output"] == {"type": "text"}
    later = resolve_config("s", {"input": {"keyterms": ["a"]}}, base=text)
    assert later["input"] == {"type": "text"}
