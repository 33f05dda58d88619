"""`voicecli serve` flags of the engines: one engines line on stderr, `engines ready` once loaded,
and bad engine/tts/llm flags refused with exit 2 (options.check_choice is the one check)."""

from __future__ import annotations

from tests.conftest import run_cli, start_server, stop_server
from voicecli.speech.available import detect


def test_serve_prints_one_engines_line_and_says_when_they_are_ready() -> None:
    served = start_server("--llm-url", "http://127.0.0.1:9/v1", "--llm-model", "m")
    try:
        assert served.proc.stderr is not None
        line = served.proc.stderr.readline()
        assert line.startswith("engines: ") and "llm http://127.0.0.1:9/v1 model m" in line
        if detect().stt == "whisper":
            assert "whisper tiny.en" in line and "silero VAD" in line
        lines = [served.proc.stderr.readline() for _ in range(2)]
        assert any("engines ready" in x for x in lines), lines
    finally:
        stop_server(served)


def test_bad_engine_tts_and_llm_flags_are_usage_errors() -> None:
    for args, says in [(("--engine", "whisper"), "engine must be one of default, basic, scripted"),
                       (("--tts", "flite"), "tts must be one of auto, piper, espeak, tone"),
                       (("--llm-url", "http://127.0.0.1:9/v1"), "--llm-url needs --llm-model")]:
        r = run_cli("serve", "--port", "0", *args, timeout=20)
        assert r.code == 2 and says in r.stderr, (args, r.stderr)
