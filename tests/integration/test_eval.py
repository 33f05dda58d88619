"""`voicecli eval` (the real entry point, as a subprocess) against the local server over loopback."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import EXAMPLES, Served, run_cli

SUITE = str(EXAMPLES / "evals" / "voice_agent.toml")
HELLO = str(EXAMPLES / "hello.wav")


def ndjson(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def suite(tmp_path: Path, body: str, url: str | None = None) -> str:
    path = tmp_path / "suite.toml"
    head = f'url = "{url}"\napi_key = "test-key"\n' if url else ""
    path.write_text(head + body, encoding="utf-8")
    return str(path)


def test_the_example_suite_passes_locally_and_the_meant_to_fail_one_fails_on_reply(tmp_path: Path) -> None:
    junit = tmp_path / "out" / "eval.xml"
    junit.parent.mkdir()
    r = run_cli("eval", SUITE, "--local", "--concurrency", "4", "--json", "--junit", str(junit), timeout=90)
    assert r.code == 0, r.stdout + r.stderr
    events = ndjson(r.stdout)
    convs = {e["conversation"]: e for e in events if e["type"] == "voicecli.eval.conversation"}
    assert {k: v["status"] for k, v in convs.items()} == {
        "books a table": "passed", "calls the weather tool": "passed", "stops when interrupted": "passed",
        "meant to fail: wrong answer": "xfailed"}
    failed = convs["meant to fail: wrong answer"]["failed"]
    assert isinstance(failed, list) and len(failed) == 1 and failed[0].startswith("turn 1: reply FAILED")
    assert "/pizza/" in failed[0]
    turns = [e for e in events if e["type"] == "voicecli.eval.turn"]
    tool_turn = next(t for t in turns if t["conversation"] == "calls the weather tool")
    assert tool_turn["tools"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    story = next(t for t in turns if t["conversation"] == "stops when interrupted" and t["turn"] == 1)
    assert story["interrupted"] is True
    summary = events[-1]
    assert summary["type"] == "voicecli.eval.summary" and summary["ok"] is True
    assert summary["tool_call_accuracy"] == 1.0 and summary["latency_ms"]["turns"] == 6  # type: ignore[index]
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert len(cases) == 4 and cases[3].find("skipped") is not None


def test_plain_lines_and_exit_1_when_an_expectation_fails(tmp_path: Path, scripted_server: Served) -> None:
    path = suite(tmp_path, """
[[conversations]]
name = "typed"
  [[conversations.turns]]
  type = "hello"
  reply = "how can i help"
  [[conversations.turns]]
  type = "again"
  reply = "goodbye"
  heard = "again"
""", scripted_server.at(scenario="echo"))
    r = run_cli("eval", path)
    assert r.code == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PASS suite/typed turn 1")
    assert lines[1].startswith("FAIL suite/typed turn 2")
    assert "reply FAILED: expected matching /goodbye/" in lines[1]
    assert "heard" not in lines[1]          # only failed expectations are listed
    assert lines[2] == "conversations: 1 (1 failed)"


def test_repeat_and_filter(tmp_path: Path, scripted_server: Served) -> None:
    path = suite(tmp_path, """
[[conversations]]
name = "one"
  [[conversations.turns]]
  type = "hi"
  reply = "help"
[[conversations]]
name = "two"
  [[conversations.turns]]
  type = "hi"
  reply = "help"
""", scripted_server.at(scenario="echo"))
    r = run_cli("eval", path, "--repeat", "3", "--filter", "two$", "-c", "3", "--json")
    assert r.code == 0, r.stderr
    convs = [e for e in ndjson(r.stdout) if e["type"] == "voicecli.eval.conversation"]
    assert sorted((c["conversation"], c["repeat"]) for c in convs) == [("two", 1), ("two", 2), ("two", 3)]
    r = run_cli("eval", path, "--filter", "nothing-like-this")
    assert r.code == 2 and "matches no conversation" in r.stderr


def test_server_down_exits_4_with_the_reason(tmp_path: Path) -> None:
    path = suite(tmp_path, '[[conversations]]\nname = "c"\n  [[conversations.turns]]\n  type = "hi"\n',
                 "ws://127.0.0.1:9/v1/ws")
    r = run_cli("eval", path)
    assert r.code == 4, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "SKIP suite/c turn 1" and lines[1].startswith("BROKEN suite/c: cannot connect")
    assert lines[2] == "conversations: 1 (1 broken)"


BAD = {
    "broken toml": ('[[conversations]\nname = "x"\n', "not valid TOML"),
    "unknown expectation": ('[[conversations]]\nname = "x"\n  [[conversations.turns]]\n  type = "hi"\n'
                            '  replly = "a"\n',
                            "conversations[0].turns[0].replly: unknown turn key (did you mean reply?)"),
    "bad regex": ('[[conversations]]\nname = "x"\n  [[conversations.turns]]\n  type = "hi"\n  reply = "(a"\n',
                  "conversations[0].turns[0].reply: '(a' is not a valid regular expression"),
    "no input": ('[[conversations]]\nname = "x"\n  [[conversations.turns]]\n  reply = "a"\n',
                 "a turn needs exactly one of audio, say or type"),
    "bad config key": ('system_promt = "x"\n[[conversations]]\nname = "x"\n  [[conversations.turns]]\n'
                       '  type = "hi"\n', "unknown key (did you mean system_prompt?)"),
}


def test_bad_suites_fail_before_connecting_with_exit_2(tmp_path: Path) -> None:
    for case, (body, message) in BAD.items():
        path = suite(tmp_path, "local = true\n" + body)
        r = run_cli("eval", path)
        assert r.code == 2, (case, r.stderr)
        assert message in r.stderr, (case, r.stderr)
        assert "line " in r.stderr or case == "broken toml", (case, r.stderr)


def test_missing_audio_file_exits_6_naming_the_turn(tmp_path: Path) -> None:
    path = suite(tmp_path, 'local = true\n[[conversations]]\nname = "x"\n  [[conversations.turns]]\n'
                           '  audio = "nope.wav"\n')
    r = run_cli("eval", path)
    assert r.code == 6, r.stderr
    assert "conversation 'x' turn 1" in r.stderr and "nope.wav" in r.stderr and "does not exist" in r.stderr


def test_junit_path_is_checked_before_running(tmp_path: Path) -> None:
    r = run_cli("eval", SUITE, "--local", "--junit", str(tmp_path / "missing" / "x.xml"))
    assert r.code == 2 and "does not exist" in r.stderr
    assert r.stdout == ""


def test_pytest_plugin_collects_the_suite_one_item_per_conversation_over_xdist() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT, unit
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                           "-rA", str(EXAMPLES / "evals")], capture_output=True, text=True, cwd=ROOT,
                          timeout=unit(120))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed, 1 xfailed" in proc.stdout
    assert "XFAIL examples/evals/voice_agent.toml::meant to fail: wrong answer" in proc.stdout
