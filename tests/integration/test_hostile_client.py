"""The client against a hostile server (issue 12, client side), through the real CLI over loopback
(tests/hostile_server.py): a server that dies for good mid-file, one that keeps dropping every
resumed connection, and malformed frames before and after session.ready."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import EXAMPLES, Result, run_cli, unit
from tests.hostile_server import HostileServer, Hostility, deep_array

HELLO = str(EXAMPLES / "hello.wav")


def _tone(path: Path, seconds: float) -> str:
    t = np.arange(int(24000 * seconds)) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2"), 24000, subtype="PCM_16")
    return str(path)


def _ask(srv: HostileServer, *args: str, timeout_s: str = "4") -> tuple[Result, float]:
    start = time.monotonic()
    r = run_cli("ask", *args, "--url", srv.url, "--api-key", "k", "--timeout", timeout_s, timeout=90)
    return r, time.monotonic() - start


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("voicecli: error:")]


# -- item 1: the connection ends for good while a file is streaming ---------------------------------

def test_server_killed_mid_file_exits_4_within_timeout(tmp_path: Path) -> None:
    """Killed 1.5 s into a 10 s file and refusing connections after: exit 4 with one error line,
    bounded by --timeout (4 s) after the drop, not by the file's length or the 25 s resume window.
    Before: the rest of the file streamed into the void, then 25 s of reconnecting (27 s)."""
    wav = _tone(tmp_path / "long.wav", 10)
    with HostileServer(Hostility(die_after_audio_ms=1500, refuse_after_death=True)) as srv:
        r, took = _ask(srv, wav)
    assert r.code == 4, r.stderr
    assert len(_errors(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "not recovered within 4 s" in r.stderr
    assert took < unit(1.5 + 4 + 6), (took, r.stderr)     # drop + --timeout + process start/slack


def test_session_ended_mid_file_exits_5_at_once(tmp_path: Path) -> None:
    """session.ended 1.5 s into a 10 s file: exit 5 with that one line, promptly (before: only once
    the whole file had been streamed to nobody, after a misleading "sending it again")."""
    wav = _tone(tmp_path / "long.wav", 10)
    with HostileServer(Hostility(die_after_audio_ms=1500, die_how="ended")) as srv:
        r, took = _ask(srv, wav, timeout_s="30")
    assert r.code == 5, r.stderr
    assert r.stderr.strip().splitlines() == ["voicecli: error: the server ended the session"], r.stderr
    assert took < unit(1.5 + 5), (took, r.stderr)


# -- item 2: a flapping server ------------------------------------------------------------------

@pytest.mark.parametrize("how", ["1011", "4000", "too-big"])
def test_flapping_server_exhausts_the_reconnect_budget(how: str) -> None:
    """Every resumed connection dies 0.5 s after its session.ready: at most 3 reconnects for the
    turn, then exit 4 saying the server keeps dropping (before: 124 resumes in 60 s, never ending)."""
    with HostileServer(Hostility(die_after_audio_ms=300, die_times=1, flap_after_s=0.5, die_how=how)) as srv:
        r, took = _ask(srv, HELLO, timeout_s="5")
    assert r.code == 4, r.stderr
    assert "the server keeps dropping the connection" in _errors(r.stderr)[0], r.stderr
    assert len(_errors(r.stderr)) == 1 and "Traceback" not in r.stderr
    assert srv.stats.resumes <= 3 and srv.stats.connections <= 4, srv.stats
    assert took < unit(20), took
    if how == "too-big":
        assert "a frame from the server exceeded the 16 MiB limit (1009)" in r.stderr, r.stderr


def test_flapping_server_with_progress_is_still_bounded() -> None:
    """Each resumed connection lives 1 s, long enough for replies, so the per-turn count keeps
    starting over: the per-minute budget (6) or the outage's resume budget (it does not restart
    with each short-lived resume) still ends it with exit 4."""
    with HostileServer(Hostility(die_after_audio_ms=300, die_times=1, flap_after_s=1.0, die_how="1011")) as srv:
        r, took = _ask(srv, *[HELLO] * 40, "--pace", "fast", timeout_s="30")
    assert r.code == 4, r.stderr
    assert "the server keeps dropping the connection" in _errors(r.stderr)[0], r.stderr
    assert srv.stats.resumes <= 6 and srv.stats.replies >= 2, srv.stats
    assert took < unit(45), took


def test_bare_1008_is_a_policy_close_not_resumed() -> None:
    with HostileServer(Hostility(die_after_audio_ms=300, die_how="1008")) as srv:
        r, _ = _ask(srv, HELLO)
    assert r.code == 5, r.stderr
    assert "policy close" in r.stderr and len(_errors(r.stderr)) == 1, r.stderr
    assert srv.stats.resumes == 0 and srv.stats.connections == 1, srv.stats


# -- item 4: malformed frames -------------------------------------------------------------------

MALFORMED = {
    "deep-array": deep_array(2000),
    "deep-in-object": '{"type": "x.pad", "a": ' + deep_array(2000) + "}",
    "garbage": "\x00\xffnot json {",
}


@pytest.mark.parametrize("where", ["before_ready", "after_ready"])
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frame_is_one_warning_and_the_session_goes_on(name: str, where: str) -> None:
    with HostileServer(Hostility(**{where: [MALFORMED[name]]})) as srv:
        r, _ = _ask(srv, HELLO, "--pace", "fast", timeout_s="20")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == "Hello from the hostile server."
    warnings = [line for line in r.stderr.splitlines() if "malformed frame" in line]
    assert len(warnings) == 1 and r.stderr.strip() == warnings[0], r.stderr
    assert len(warnings[0]) < 300
    assert srv.stats.client_events["session.end"] == 1


def test_non_finite_numbers_do_not_end_the_session() -> None:
    """NaN/Infinity/1e999 in frames: at most one warning each, no traceback, the session goes on."""
    frames = ['{"type": "session.updated", "config": {"x": NaN, "y": Infinity, "z": 1e999}}',
              '{"type": "x.unknown", "n": -Infinity}']
    with HostileServer(Hostility(after_ready=frames)) as srv:
        r, _ = _ask(srv, HELLO, "--pace", "fast", timeout_s="20")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == "Hello from the hostile server."
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= len(frames), r.stderr
