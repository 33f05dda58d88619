"""Issue 12 item 10: a server cannot make the client run unlimited tools at once. 300 `tool.call`s in one
reply (the hostile-server double) against a command tool that records how many copies of itself run at
the same moment: at most `tool_concurrency` run at once (the others queue), at most `max_tool_calls` of the
reply run at all, and every call, run or not, gets a `tool.result` (the excess an is_error one saying why)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLES, run_cli
from tests.hostile_server import HostileServer, Hostility

HELLO = str(EXAMPLES / "hello.wav")

# Each run: mark itself in DIR, log how many marks exist, hold 0.2 s, unmark, answer JSON.
SCRIPT = ('d="$1"; touch "$d/run.$$"; ls "$d" | grep -c "^run\\." >> "$d/../concurrency.log"; '
          'sleep 0.2; rm -f "$d/run.$$"; echo \'{"ok": true}\'')


def tools_config(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    running = tmp_path / "running"
    running.mkdir()
    cfg = tmp_path / "tools.toml"
    cfg.write_text(extra + f"""
[[tools]]
name = "get_weather"
description = "weather"
parameters = {{ type = "object", properties = {{ location = {{ type = "string" }} }} }}
command = ["sh", "-c", {json.dumps(SCRIPT)}, "tool", {json.dumps(str(running))}]
timeout_seconds = 60
""")
    return cfg, tmp_path / "concurrency.log"


def run_ask(url: str, cfg: Path, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    r = run_cli("ask", HELLO, "--url", url, "--api-key", "k", "--pace", "fast", "--timeout", "120",
                "--config", str(cfg), "--json", *extra, timeout=300)
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return r.code, events, r.stderr


def test_300_tool_calls_run_at_most_4_at_once_and_every_call_is_answered(tmp_path: Path) -> None:
    cfg, log = tools_config(tmp_path)
    with HostileServer(Hostility(tool_calls=300, follow_up_after_tools=True)) as srv:
        code, events, err = run_ask(srv.url, cfg)
        answered = srv.stats.tool_results
    assert code == 0, err
    counts = [int(line) for line in log.read_text().split()]
    assert len(counts) == 32                     # max_tool_calls (default 32) of the reply ran ...
    assert max(counts) <= 4, counts              # ... at most tool_concurrency (default 4) at once
    assert answered == 300                       # and the server got a result for every call
    results = [e for e in events if e["type"] == "voicecli.tool.result"]
    refused = [e for e in results if e["is_error"]]
    assert len(results) == 300 and len(refused) == 268
    assert "not run" in str(refused[0]["result"]) and "32 tool calls" in str(refused[0]["result"])
    assert err.count("more than 32 tool calls in one reply") == 1, err


def test_the_limits_come_from_the_config_and_the_option(tmp_path: Path) -> None:
    cfg, log = tools_config(tmp_path, "max_tool_calls = 10\n")
    with HostileServer(Hostility(tool_calls=20, follow_up_after_tools=True)) as srv:
        code, events, err = run_ask(srv.url, cfg, "--tool-concurrency", "2")
        answered = srv.stats.tool_results
    assert code == 0, err
    counts = [int(line) for line in log.read_text().split()]
    assert len(counts) == 10 and max(counts) <= 2, counts
    assert max(counts) == 2                      # queued calls do run in parallel up to the cap
    assert answered == 20


def test_a_bad_tool_concurrency_in_the_config_is_exit_2(tmp_path: Path) -> None:
    cfg, _ = tools_config(tmp_path, "tool_concurrency = 0\n")
    r = run_cli("ask", HELLO, "--url", "ws://127.0.0.1:9/v1/ws", "--api-key", "k", "--config", str(cfg))
    assert r.code == 2 and "tool_concurrency" in r.stderr and "between 1 and 64" in r.stderr, r.stderr
