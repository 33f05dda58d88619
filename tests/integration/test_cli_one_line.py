"""Bad input is one line and a documented exit code, never a traceback (issue 12 items 5 and 15),
through the real CLI: unusable ports, a config nested hundreds deep, a password in the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_cli
from tests.hostile_server import HostileServer, Hostility

HELLO = str(EXAMPLES / "hello.wav")


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voicecli: error:"), stderr
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "abc", "0"])
def test_invalid_port_is_exit_2_saying_so(port: str) -> None:
    r = run_cli("ask", HELLO, "--url", f"ws://127.0.0.1:{port}/v1/ws", "--api-key", "k")
    assert r.code == 2
    assert "port must be a number from 1 to 65535" in _one_error_line(r.stderr)


@pytest.mark.parametrize("toml", ["x = " + "{a = " * 400 + "1" + "}" * 400,
                                  "[" + ".".join(["a"] * 400) + "]\nb = 1",
                                  "x = " + "[" * 400 + "]" * 400])
def test_deeply_nested_config_is_exit_2(tmp_path: Path, toml: str) -> None:
    cfg = tmp_path / "deep.toml"
    cfg.write_text(toml + "\n")
    for args in (("config", "show"), ("ask", HELLO, "--local")):
        r = run_cli(*args, "--config", str(cfg))
        assert r.code == 2, r.stderr
        assert "nested" in _one_error_line(r.stderr)


def test_password_in_url_is_never_printed() -> None:
    url = "ws://user:HUNTER2KEY@127.0.0.1:1/v1/ws"     # nothing listens on port 1
    runs = [run_cli("ask", HELLO, "--url", url, "--api-key", "k"),
            run_cli("ask", HELLO, "--url", url, "--api-key", "k", "--debug"),
            run_cli("ask", HELLO, "--url", url, "--api-key", "k", "--json"),
            run_cli("config", "show", "--url", url),
            run_cli("config", "show", "--url", url, "--json"),
            run_cli("doctor", "--url", url, "--api-key", "k")]
    for r in runs:
        assert "HUNTER2KEY" not in r.stdout + r.stderr, r
    assert runs[0].code == 4 and "ws://***@127.0.0.1:1/v1/ws" in runs[0].stderr
    assert "***@127.0.0.1:1" in runs[3].stdout


def test_password_in_url_is_not_printed_by_a_live_session() -> None:
    """Connected (the hostile server ignores credentials) and dropped for good: every line the
    client prints about the connection stays redacted, --debug and --json included."""
    with HostileServer(Hostility(die_after_audio_ms=300, refuse_after_death=True)) as srv:
        url = srv.url.replace("ws://", "ws://user:HUNTER2KEY@")
        r = run_cli("ask", HELLO, "--url", url, "--api-key", "k", "--timeout", "2", "--debug", "--json")
    assert r.code == 4, r.stderr
    assert "HUNTER2KEY" not in r.stdout + r.stderr
