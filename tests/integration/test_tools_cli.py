"""Client-side tools end to end: `voicecli ask` (real entry point, subprocess) with tools from a config
file, against `voicecli serve`'s scripted scenarios over loopback (issue 4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT, Served, run_cli, unit

WEATHER = str(EXAMPLES / "weather.wav")
THANKS = str(EXAMPLES / "thanks.wav")
KEY = ("--api-key", "test-key")
FAST = ("--pace", "fast", "--trailing-silence", "800")
PARIS = {"city": "Paris", "temp_c": 19, "conditions": "light rain",
         "summary": "light rain, 19 degrees Celsius"}
PARAMS = ('parameters = { type = "object", properties = { city = { type = "string" } }, '
          'required = ["city"] }\n')


def ndjson(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def config(tmp_path: Path, tools: str, **modules: str) -> str:
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
    path = tmp_path / "tools.toml"
    path.write_text(tools)
    return str(path)


def tool_results(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["type"] == "voicecli.tool.result"]


def agent_lines(events: list[dict[str, object]]) -> list[str]:
    return [str(e["text"]) for e in events if e["type"] == "transcript.agent"]


def test_command_tool_round_trip_result_is_a_json_string_sent_after_reply_done(
        scripted_server: Served) -> None:
    r = run_cli("ask", WEATHER, "--config", str(EXAMPLES / "tools.toml"), "--url",
                scripted_server.at(scenario="tools"), *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    types = [e["type"] for e in events]
    declared = events[types.index("session.updated")]["config"]["tools"]  # type: ignore[index]
    assert [t["name"] for t in declared] == ["get_weather"] and declared[0]["timeout_seconds"] == 10
    call, done, result = (types.index("tool.call"), types.index("reply.done"),
                          types.index("voicecli.tool.result"))
    assert call < done < result                                   # sent only once reply.done was latest
    res = events[result]
    assert res["status"] == "sent" and res["is_error"] is False and res["arguments"] == {"city": "Paris"}
    assert isinstance(res["result"], str) and json.loads(res["result"]) == PARIS
    assert types.index("reply.started", result) > result          # the server's follow-up reply
    assert agent_lines(events)[-1] == f"The weather in Paris is {json.dumps(PARIS)}."


def test_async_callable_tool_round_trip(scripted_server: Served, tmp_path: Path) -> None:
    cfg = config(tmp_path, f'[[tools]]\nname = "get_weather"\ndescription = "d"\n{PARAMS}'
                           'callable = "async_weather:get_weather"\n',
                 async_weather="import asyncio\n\nasync def get_weather(city):\n"
                               "    await asyncio.sleep(0.05)\n    return {'city': city, 'temp_c': 22}\n")
    r = run_cli("ask", WEATHER, "--config", cfg, "--url", scripted_server.at(scenario="tools"), *KEY, *FAST,
                "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    (res,) = tool_results(events)
    assert res["status"] == "sent" and json.loads(str(res["result"])) == {"city": "Paris", "temp_c": 22}
    assert agent_lines(events)[-1] == 'The weather in Paris is {"city": "Paris", "temp_c": 22}.'


def test_several_calls_in_one_reply_with_a_sync_callable(scripted_server: Served, tmp_path: Path) -> None:
    cfg = config(tmp_path, f'[[tools]]\nname = "get_weather"\ndescription = "d"\n{PARAMS}'
                           'callable = "examples.weather:get_weather"\n')    # found from the current folder
    r = run_cli("ask", WEATHER, "--config", cfg, "--url", scripted_server.at(scenario="two_tools"), *KEY,
                *FAST, "--json", "--transcript")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    results = tool_results(events)
    assert sorted(json.loads(str(e["result"]))["city"] for e in results) == ["London", "Paris"]
    assert all(e["status"] == "sent" and not e["is_error"] for e in results)
    assert agent_lines(events)[-1].startswith('Here you go: {"city": "Paris"')
    assert '{"city": "London"' in agent_lines(events)[-1]


def test_failing_command_tool_sends_an_error_result_with_stderrs_last_line(scripted_server: Served,
                                                                          tmp_path: Path) -> None:
    cfg = config(tmp_path, f'[[tools]]\nname = "get_weather"\n{PARAMS}command = ["python3", "failing.py"]\n'
                           'cwd = "."\n',
                 failing="import sys\nsys.stderr.write('looking up\\nweather service unreachable\\n')\n"
                         "sys.exit(2)\n")
    r = run_cli("ask", WEATHER, "--config", cfg, "--url", scripted_server.at(scenario="tools"), *KEY, *FAST,
                "--transcript")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert 'tool: get_weather({"city": "Paris"}) -> error: {"error": "tool \'get_weather\' failed: weather ' \
           'service unreachable"}' in lines
    assert lines[-1].startswith("agent: The weather in Paris is ") and "unreachable" in lines[-1]


def test_timed_out_command_tool_is_killed_and_reported(scripted_server: Served, tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    script = f"import time; time.sleep(3); open({str(marker)!r}, 'w')"
    cfg = config(tmp_path, f'[[tools]]\nname = "get_weather"\n{PARAMS}'
                           f'command = ["python3", "-c", "{script}"]\ntimeout_seconds = 1\n')
    started = time.monotonic()
    r = run_cli("ask", WEATHER, "--config", cfg, "--url", scripted_server.at(scenario="tools"), *KEY, *FAST,
                "--json")
    assert r.code == 0, r.stderr
    (res,) = tool_results(ndjson(r.stdout))
    assert res["is_error"] is True and "did not finish within 1 s" in str(res["result"])
    time.sleep(max(0.0, started + unit(3.5) - time.monotonic()))
    assert not marker.exists()                                    # the process was killed


def test_call_for_a_tool_not_configured_gets_an_error_naming_the_configured_ones(scripted_server: Served,
                                                                               tmp_path: Path) -> None:
    cfg = config(tmp_path, '[[tools]]\nname = "get_time"\ncommand = ["date"]\n')
    r = run_cli("ask", WEATHER, "--config", cfg, "--url", scripted_server.at(scenario="undeclared_tool"),
                *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    (res,) = tool_results(ndjson(r.stdout))
    assert res["is_error"] is True and res["status"] == "sent"
    assert json.loads(str(res["result"]))["error"].startswith("no tool named 'get_weather' is configured in "
                                                              "this client (configured: get_time)")


def test_result_of_a_call_the_agent_moved_on_from_is_dropped(scripted_server: Served, tmp_path: Path) -> None:
    # The tool takes 6 s; 1 s into "Let me check." the user speaks again, so a new reply starts
    # (superseding the call, protocol.md 6.5) long before the tool finishes: its result is not sent.
    cfg = config(tmp_path, f'[[tools]]\nname = "get_weather"\n{PARAMS}callable = "slow_weather:get_weather"\n'
                           'timeout_seconds = 30\n',
                 slow_weather="import time\n\ndef get_weather(city):\n    time.sleep(6)\n"
                              "    return {'city': city}\n")
    r = run_cli("ask", WEATHER, THANKS, "--config", cfg, "--url", scripted_server.at(scenario="slow_tool"),
                *KEY, "--barge-in-after", "1000", "--trailing-silence", "800", "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    types = [e["type"] for e in events]
    (res,) = tool_results(events)
    assert res["status"] == "dropped"
    second_reply = [i for i, t in enumerate(types) if t == "reply.started"][1]
    assert types.index("voicecli.tool.result") > second_reply
    assert not any("The weather in Paris" in line for line in agent_lines(events))
    assert agent_lines(events)[-1].startswith("Okay, never mind the weather then.")


def test_must_show_example_tool_config_runs_a_round_trip_on_the_local_server() -> None:
    r = run_cli("ask", "examples/weather.wav", "--config", "examples/tools.toml", "--transcript")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "user: what is the weather in paris"
    assert f'tool: get_weather({{"city": "Paris"}}) -> {json.dumps(PARIS)}' in lines
    assert lines[-1] == f"agent: The weather in Paris is {json.dumps(PARIS)}."
    assert (ROOT / "examples" / "tools.toml").stat().st_size > 0
