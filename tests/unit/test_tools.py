"""Client-side tools: command tools (real subprocesses) and Python callables (voicecli/tools.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, unit
from voicecli.tools import (
    CallableLoadError,
    CallableTool,
    CommandTool,
    ToolRunner,
    as_json_result,
    load_callable,
)

PY = sys.executable


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_command_tool_gets_json_arguments_on_stdin_and_returns_json_stdout() -> None:
    tool = CommandTool("get_weather", [PY, str(EXAMPLES / "weather.py")], timeout_s=unit(10))
    out = run(tool.run({"city": "paris"}))
    assert out.is_error is False
    assert json.loads(out.result) == {"city": "Paris", "temp_c": 19, "conditions": "light rain",
                                      "summary": "light rain, 19 degrees Celsius"}


def test_command_tool_non_json_stdout_is_sent_as_a_json_string() -> None:
    tool = CommandTool("echo", [PY, "-c", "import sys; print('it is ' + sys.stdin.read())"])
    out = run(tool.run({"a": 1}))
    assert out.is_error is False and json.loads(out.result) == 'it is {"a": 1}'


def test_command_tool_runs_without_a_shell() -> None:
    tool = CommandTool("argv", [PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                                "$HOME; echo hi"])
    assert json.loads(run(tool.run({})).result) == ["$HOME; echo hi"]


def test_command_tool_failure_reports_the_last_stderr_line() -> None:
    code = "import sys; sys.stderr.write('warming up\\nno such city: Atlantis\\n'); sys.exit(3)"
    out = run(CommandTool("get_weather", [PY, "-c", code]).run({"city": "Atlantis"}))
    assert out.is_error is True
    assert json.loads(out.result) == {"error": "tool 'get_weather' failed: no such city: Atlantis"}


def test_command_tool_failure_without_stderr_names_the_exit_status() -> None:
    out = run(CommandTool("t", [PY, "-c", "raise SystemExit(4)"]).run({}))
    assert out.is_error and "exit status 4" in json.loads(out.result)["error"]


def test_command_tool_timeout_kills_the_process_and_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    script = tmp_path / "slow.py"
    # the tool spawns a grandchild that would write the marker later: both must die
    script.write_text(
        "import subprocess, sys, time\n"
        "code = 'import time, sys; time.sleep(1.5); open(sys.argv[1], \"w\")'\n"
        "subprocess.Popen([sys.executable, '-c', code, sys.argv[1]])\n"
        "time.sleep(1.5)\n")
    started = time.monotonic()
    out = run(CommandTool("slow", [PY, str(script), str(marker)], timeout_s=0.5).run({}))
    assert time.monotonic() - started < unit(1.4)
    assert out.is_error and "did not finish within 0.5 s" in json.loads(out.result)["error"]
    time.sleep(unit(2))
    assert not marker.exists()


def test_command_tool_that_cannot_start_is_an_error_result() -> None:
    out = run(CommandTool("t", ["/nonexistent/program"]).run({}))
    assert out.is_error and "could not be started" in json.loads(out.result)["error"]


def get_answer(question: str) -> dict[str, object]:
    return {"question": question, "answer": 42}


async def get_answer_async(question: str) -> list[str]:
    await asyncio.sleep(0)
    return [question, "forty-two"]


def explode() -> None:
    raise ValueError("the moon is made of cheese")


def not_json() -> object:
    return {1, 2}


def slow() -> str:
    time.sleep(1)
    return "late"


def test_callable_tools_sync_and_async_return_json() -> None:
    out = run(CallableTool("ask", get_answer).run({"question": "why"}))
    assert (out.is_error, json.loads(out.result)) == (False, {"question": "why", "answer": 42})
    out = run(CallableTool("ask", get_answer_async).run({"question": "why"}))
    assert (out.is_error, json.loads(out.result)) == (False, ["why", "forty-two"])


@pytest.mark.parametrize("fn, args, text", [
    (explode, {}, "ValueError: the moon is made of cheese"),
    (get_answer, {"nope": 1}, "unexpected keyword argument"),
    (not_json, {}, "not JSON"),
])
def test_callable_failures_are_error_results(fn, args, text) -> None:  # type: ignore[no-untyped-def]
    out = run(CallableTool("t", fn).run(args))
    assert out.is_error and text in json.loads(out.result)["error"]


def test_callable_timeout() -> None:
    out = run(CallableTool("t", slow, timeout_s=0.2).run({}))
    assert out.is_error and "did not finish within 0.2 s" in json.loads(out.result)["error"]


def test_load_callable_from_a_search_folder(tmp_path: Path) -> None:
    (tmp_path / "mytools_unit.py").write_text("def hello(name):\n    return 'hi ' + name\n")
    fn = load_callable("mytools_unit:hello", [tmp_path])
    assert fn("bob") == "hi bob"
    assert str(tmp_path) not in sys.path


@pytest.mark.parametrize("spec, text", [
    ("no_colon", "not of the form"),
    ("surely_missing_module_xyz:f", "cannot import module 'surely_missing_module_xyz'"),
    ("json:no_such_function", "has no attribute 'no_such_function'"),
    ("json:__name__", "is not callable"),
])
def test_load_callable_errors(spec: str, text: str) -> None:
    with pytest.raises(CallableLoadError, match=text):
        load_callable(spec)


def test_runner_unknown_tool_is_an_error_the_model_can_read() -> None:
    out = run(ToolRunner([CallableTool("known", get_answer)]).run("other", {}))
    assert out.is_error
    assert json.loads(out.result)["error"] == ("no tool named 'other' is configured in this client "
                                               "(configured: known); tell the user it is unavailable")


def test_as_json_result() -> None:
    assert as_json_result(' {"a": 1}\n') == '{"a": 1}'
    assert as_json_result("plain text\n") == '"plain text"'
    assert as_json_result("") == '""'
