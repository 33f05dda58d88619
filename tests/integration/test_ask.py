"""`voicecli ask` (the real entry point, as a subprocess) against `voicecli serve` over loopback."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import EXAMPLES, Served, run_cli

HELLO = str(EXAMPLES / "hello.wav")
WEATHER = str(EXAMPLES / "weather.wav")
THANKS = str(EXAMPLES / "thanks.wav")
KEY = ("--api-key", "test-key")
FAST = ("--pace", "fast", "--trailing-silence", "800")


def ndjson(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_plain_turn_prints_only_the_reply(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo"), *KEY, *FAST)
    assert r.code == 0, r.stderr
    assert r.stdout == "Hello! This is the scripted agent.\n"


def test_real_time_pace_two_turns_with_transcript(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, THANKS, "--url", scripted_server.at(scenario="echo"), *KEY, "--transcript")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "user: hello there",
        "agent: Hello! This is the scripted agent.",
        "user: how are you",
        "agent: I am fine, thank you for asking.",
    ]


def test_greeting_is_spoken_before_the_first_turn(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="greeting"), *KEY, *FAST,
                "--greeting", "Welcome to the test.", "--transcript")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["agent: Welcome to the test.", "user: hi", "agent: Nice to meet you."]


def test_tool_round_trip_with_no_tool_configured_gets_an_error_result(scripted_server: Served) -> None:
    r = run_cli("ask", WEATHER, "--url", scripted_server.at(scenario="undeclared_tool"), *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    types = [e["type"] for e in events]
    results = [e for e in events if e["type"] == "voicecli.tool.result"]
    assert len(results) == 1 and results[0]["is_error"] is True and results[0]["name"] == "get_weather"
    assert "no tool named 'get_weather'" in str(results[0]["result"])
    # the reply that made the call completed before the follow-up reply started
    call_at = types.index("tool.call")
    assert "reply.done" in types[call_at:]
    agent = [e["text"] for e in events if e["type"] == "transcript.agent"]
    assert agent[0] == "Let me check." and "no tool named" in str(agent[1])


def test_duplicate_tool_call_runs_once(scripted_server: Served) -> None:
    r = run_cli("ask", WEATHER, "--url", scripted_server.at(scenario="duplicate_tool"), *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    assert sum(e["type"] == "tool.call" for e in events) == 2
    assert sum(e["type"] == "voicecli.tool.result" for e in events) == 1


def test_json_mode_is_ndjson_with_audio_replaced_by_byte_counts(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo"), *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    types = [e["type"] for e in events]
    assert types[0] == "session.updated" and "session.ready" in types
    audio = [e for e in events if e["type"] == "reply.audio"]
    assert audio and all("data" not in e and isinstance(e["bytes"], int) and e["bytes"] > 0 for e in audio)
    order = [t for t in types if t in ("input.speech.started", "input.speech.stopped", "transcript.user",
                                       "reply.started", "transcript.agent", "reply.done")]
    assert order[:6] == ["input.speech.started", "input.speech.stopped", "transcript.user", "reply.started",
                         "transcript.agent", "reply.done"]
    metrics = [e for e in events if e["type"] == "voicecli.metrics"]
    assert metrics and metrics[0]["speech_stopped_to_first_audio_ms"] >= 0
    assert types[-1] == "session.ended"


def test_save_reply_writes_the_agent_audio(scripted_server: Served, tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo"), *KEY, *FAST, "--save-reply", str(out),
                "--json")
    assert r.code == 0, r.stderr
    received = sum(e["bytes"] for e in ndjson(r.stdout) if e["type"] == "reply.audio")
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert w.getnframes() * 2 == received > 0


def test_barge_in_on_the_server_side(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, THANKS, "--url", scripted_server.at(scenario="long"), *KEY, "--transcript",
                "--barge-in-after", "1500", "--trailing-silence", "800")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    interrupted = [line for line in lines if line.startswith("agent (interrupted): ")]
    assert len(interrupted) == 1
    spoken = interrupted[0].removeprefix("agent (interrupted): ")
    assert spoken and "Once upon a time".startswith(spoken[:16]) and not spoken.endswith("morning.")
    assert lines[-1] == "agent: Okay, I stopped."


def test_unknown_events_and_fields_are_ignored(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo", fault="unknown-events"), *KEY, *FAST)
    assert r.code == 0, r.stderr
    assert r.stdout == "Hello! This is the scripted agent.\n"


def test_garbage_frame_is_reported_and_survived(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo", fault="garbage"), *KEY, *FAST)
    assert r.code == 0, r.stderr
    assert r.stdout == "Hello! This is the scripted agent.\n"
    assert "malformed frame" in r.stderr


def test_refused_key_exits_3_without_printing_the_key(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.url, "--api-key", "wrong-secret-123", *FAST)
    assert r.code == 3
    assert r.stdout == ""
    assert "refused" in r.stderr and "wrong-secret-123" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_keyed_local_server_refuses_a_client_without_a_key(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.url, *FAST)
    assert r.code == 3 and "refused" in r.stderr


def test_unreachable_url_exits_4() -> None:
    r = run_cli("ask", HELLO, "--url", "ws://127.0.0.1:9/v1/ws", *KEY)
    assert r.code == 4
    assert "cannot connect" in r.stderr and r.stdout == ""


def test_timeout_exits_7_when_no_turn_is_heard(scripted_server: Served, tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(24000, dtype=np.int16), 24000, subtype="PCM_16")
    r = run_cli("ask", str(quiet), "--url", scripted_server.at(scenario="echo"), *KEY, *FAST, "--timeout", "2")
    assert r.code == 7
    assert "no reply within 2 s" in r.stderr


def test_dropped_connection_is_resumed_and_the_script_completes(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, THANKS, "--url", scripted_server.at(scenario="echo", fault="drop-after-replies=1"),
                *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    types = [e["type"] for e in events]
    assert "voicecli.reconnect" in types and "voicecli.resumed" in types
    ready_ids = {e["session_id"] for e in events if e["type"] == "session.ready"}
    assert len(ready_ids) == 1                              # the same session, resumed
    agent = [e["text"] for e in events if e["type"] == "transcript.agent"]
    assert agent[-1] == "I am fine, thank you for asking."


def test_refused_resume_starts_a_fresh_session(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, THANKS, "--url",
                scripted_server.at(scenario="echo", fault="drop-after-replies=1,refuse-resume"),
                *KEY, *FAST, "--json")
    assert r.code == 0, r.stderr
    events = ndjson(r.stdout)
    assert "voicecli.new_session" in [e["type"] for e in events]
    assert len({e["session_id"] for e in events if e["type"] == "session.ready"}) == 2
    assert "context was lost" in r.stderr


def test_default_engine_is_honest_about_what_it_heard(default_server: Served) -> None:
    # issue 2's must-show, verbatim: no key needed for a `voicecli serve` on this machine
    r = run_cli("ask", WEATHER, "--url", default_server.url, "--trailing-silence", "800")
    assert r.code == 0, r.stderr
    assert "seconds of speech" in r.stdout


def test_local_mode_needs_no_server_or_key() -> None:
    r = run_cli("ask", "--local", HELLO, "--trailing-silence", "800")
    assert r.code == 0, r.stderr
    assert "seconds of speech" in r.stdout


def test_ctrl_c_ends_the_session_and_exits_130(scripted_server: Served) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, unit

    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "ask", HELLO, "--url",
                             scripted_server.at(scenario="long"), *KEY, *FAST, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if k != "ASSEMBLYAI_API_KEY"})
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(json.loads(line)["type"])
        if seen[-1] == "reply.audio":
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=unit(15))
    seen += [json.loads(line)["type"] for line in rest.splitlines()]
    assert proc.returncode == 130, err
    assert seen[-1] == "session.ended"
    assert "Traceback" not in err


def test_expect_passes_and_fails_per_turn(scripted_server: Served) -> None:
    url = scripted_server.at(scenario="echo")
    ok = run_cli("ask", HELLO, THANKS, "--url", url, *KEY, *FAST, "--expect", "scripted agent",
                 "--expect", "fine, THANK you")
    assert ok.code == 0, ok.stderr
    bad = run_cli("ask", HELLO, THANKS, "--url", url, *KEY, *FAST, "--expect", "scripted agent",
                  "--expect", "weather", "--json")
    assert bad.code == 1
    assert "turn 2 (thanks.wav): the reply does not match 'weather'" in bad.stderr
    checks = [e for e in ndjson(bad.stdout) if e["type"] == "voicecli.expect"]
    assert [c["ok"] for c in checks] == [True, False]
    assert ndjson(bad.stdout)[-1]["type"] == "voicecli.expect"     # every turn ran first


def test_expect_is_checked_before_connecting() -> None:
    too_many = run_cli("ask", HELLO, "--url", "ws://127.0.0.1:9/v1/ws", "--expect", "a", "--expect", "b")
    assert too_many.code == 2 and "2 --expect patterns for 1 file" in too_many.stderr
    bad_regex = run_cli("ask", HELLO, "--url", "ws://127.0.0.1:9/v1/ws", "--expect", "(")
    assert bad_regex.code == 2 and "not a valid regular expression" in bad_regex.stderr


def test_bad_file_fails_before_connecting_with_exit_6(tmp_path: Path) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("these are not audio samples\n")
    # the URL is unreachable: exit 6 (not 4) proves the file was checked before connecting
    r = run_cli("ask", HELLO, str(fake), "--url", "ws://127.0.0.1:9/v1/ws", *KEY)
    assert r.code == 6
    assert "notes.wav" in r.stderr and "not a readable audio file" in r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1


def test_ask_and_serve_work_without_sounddevice(tmp_path: Path) -> None:
    """`ask --local` (client and embedded server) never imports sounddevice, so it works on a
    machine without PortAudio (where importing sounddevice raises OSError)."""
    import subprocess
    import sys

    from tests.conftest import ROOT, unit

    code = ("import sys; sys.modules['sounddevice'] = None\n"
            "from voicecli.cli import main\n"
            f"sys.argv = ['voicecli', 'ask', '--local', {HELLO!r}, '--trailing-silence', '800']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=unit(60))
    assert proc.returncode == 0, proc.stderr
    assert "seconds of speech" in proc.stdout


def test_a_server_that_never_gets_ready_times_out_with_exit_7(scripted_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo", fault="ready-delay=8000"), *KEY,
                "--timeout", "1.5")
    assert r.code == 7
    assert "no session.ready within 1.5 s" in r.stderr


# ------------------------------------------------------------------------------------------
# the gaps issue 11 found: stdin, --say, paths checked first, rate violations, Ctrl-C
# ------------------------------------------------------------------------------------------


def _ask(*args: str, stdin: object = None, data: bytes | None = None) -> tuple[int, str, str]:
    """`voicecli ask ARGS` with stdin from a file object (a redirect) or ``data`` (a pipe)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, unit
    env = {k: v for k, v in os.environ.items() if k != "ASSEMBLYAI_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "voicecli.cli", "ask", *args], capture_output=True,
                          stdin=stdin, input=data, timeout=unit(60), cwd=ROOT, env=env)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_dash_reads_one_file_from_a_redirect_or_a_pipe(scripted_server: Served) -> None:
    url = scripted_server.at(scenario="echo")
    with open(HELLO, "rb") as fh:
        code, out, err = _ask("-", "--url", url, *KEY, *FAST, stdin=fh)
    assert code == 0, err
    assert out == "Hello! This is the scripted agent.\n"
    code, out, err = _ask("/dev/stdin", THANKS, "--url", url, *KEY, *FAST, "--transcript",
                          data=Path(HELLO).read_bytes())       # /dev/stdin on a pipe: not "empty"
    assert code == 0, err
    assert out.splitlines()[-1] == "agent: I am fine, thank you for asking."


def test_bad_stdin_fails_before_connecting_with_exit_6() -> None:
    nowhere = ("--url", "ws://127.0.0.1:9/v1/ws", *KEY)
    code, out, err = _ask("-", *nowhere, data=b"")
    assert (code, out) == (6, "") and "standard input is empty (0 bytes)" in err
    code, _, err = _ask("-", *nowhere, data=b"not audio at all\n")
    assert code == 6 and "Audio on standard input is not a readable audio file" in err
    code, _, err = _ask("-", "-", *nowhere, data=Path(HELLO).read_bytes())
    assert code == 6 and "more than once" in err and len(err.strip().splitlines()) == 1


def test_say_turns_are_synthesized_and_kept_in_order_with_files(scripted_server: Served) -> None:
    r = run_cli("ask", "--say", "hello there", HELLO, "--url", scripted_server.at(scenario="echo"), *KEY,
                *FAST, "--expect", "scripted agent", "--expect", "fine", "--json")
    assert r.code == 0, r.stderr
    checks = [e for e in ndjson(r.stdout) if e["type"] == "voicecli.expect"]
    assert [c["file"] for c in checks] == ["say 'hello there'", "hello.wav"]
    r = run_cli("ask", HELLO, "--say", "how are you", "--url", scripted_server.at(scenario="echo"), *KEY,
                *FAST, "--expect", ".", "--expect", ".", "--json")
    assert [e["file"] for e in ndjson(r.stdout) if e["type"] == "voicecli.expect"] == [
        "hello.wav", "say 'how are you'"]


def test_nothing_to_ask_is_a_usage_error() -> None:
    r = run_cli("ask", "--url", "ws://127.0.0.1:9/v1/ws", *KEY)
    assert r.code == 2 and "nothing to ask" in r.stderr
    r = run_cli("ask", "--say", " ", "--url", "ws://127.0.0.1:9/v1/ws", *KEY)
    assert r.code == 2 and "--say needs words" in r.stderr


def test_save_reply_path_is_checked_before_connecting(tmp_path: Path) -> None:
    # the URL is unreachable: exit 2 (not 4) proves the path was checked first
    cases = [(tmp_path / "missing" / "r.wav", "does not exist"), (tmp_path, "is a directory")]
    if Path("/proc/self").is_dir():     # root may write anywhere, but not here: the check tries it
        cases.append((Path("/proc/reply.wav"), "is not writable"))
    for path, said in cases:
        r = run_cli("ask", HELLO, "--url", "ws://127.0.0.1:9/v1/ws", *KEY, "--save-reply", str(path))
        assert r.code == 2 and said in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists()


def test_record_dir_is_made_only_under_an_existing_folder(tmp_path: Path) -> None:
    import pytest

    from voicecli.app.recording import prepare_dir
    from voicecli.errors import UsageError
    assert prepare_dir(tmp_path / "new") == tmp_path / "new" and (tmp_path / "new").is_dir()
    assert prepare_dir(tmp_path / "new") == tmp_path / "new"              # existing: used as it is
    with pytest.raises(UsageError, match="the folder .*missing does not exist") as exc:
        prepare_dir(tmp_path / "missing" / "dir")
    assert exc.value.exit_code == 2 and not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a directory"):
        prepare_dir(tmp_path / "file")
    if Path("/proc/self").is_dir():
        with pytest.raises(UsageError, match="is not writable"):
            prepare_dir(Path("/proc/self"))


def test_fast_pace_on_a_rate_checking_server_fails_the_turn_naming_the_violation(
        default_server: Served) -> None:
    r = run_cli("ask", HELLO, "--url", default_server.url, "--pace", "fast", "--trailing-silence", "800")
    assert r.code == 5, r.stderr
    assert "turn 1 (hello.wav): the server dropped audio sent faster than real time" in r.stderr
    assert "audio_rate_violation" in r.stderr and "drop --pace fast" in r.stderr
    assert r.stdout == ""                      # no reply to a truncated question passes as an answer


def test_ctrl_c_mid_reply_prints_what_was_said_so_far(scripted_server: Served) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, unit

    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "ask", HELLO, "--url",
                             scripted_server.at(scenario="long"), *KEY, *FAST, "--transcript"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={k: v for k, v in os.environ.items() if k != "ASSEMBLYAI_API_KEY"})
    assert proc.stdout is not None
    first = proc.stdout.readline()              # user: ... (the reply starts right after it)
    time.sleep(unit(1.5))
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=unit(15))
    assert proc.returncode == 130, err
    assert first.startswith("user: ")
    said = rest.strip().splitlines()[-1]
    assert said.startswith("agent (interrupted): Once upon a time"), rest
    assert not said.endswith("morning.")       # only the words whose audio had arrived
    assert err.strip().splitlines()[-1] == "voicecli: interrupted" and "Traceback" not in err


def test_llm_url_without_a_model_is_a_usage_error_before_connecting() -> None:
    r = run_cli("ask", "--local", "--llm-url", "http://127.0.0.1:9/v1", HELLO)
    assert r.code == 2 and r.stderr.strip().splitlines() == [
        "voicecli: error: --llm-url needs --llm-model NAME (the model name the endpoint serves)"]
