"""Issue 12 item 7: whatever ends `voicecli ask`, the `--save-reply` WAV holds what arrived (written as it
arrives: readable after Ctrl-C, SIGTERM, a timeout and even kill -9), SIGTERM is Ctrl-C, and Ctrl-C before
`session.ready` still ends the session politely. Real subprocesses against the hostile-server double."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import EXAMPLES, ROOT, run_cli, unit
from tests.hostile_server import HostileServer, Hostility

HELLO = str(EXAMPLES / "hello.wav")


def start_cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("ASSEMBLYAI_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "voicecli.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + unit(timeout)
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wav_frames(path: Path) -> int:
    """Frames as both readers see them (they must agree, and match the file's size)."""
    with wave.open(str(path)) as wf:
        n = wf.getnframes()
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (1, 2, 24000)
        assert len(wf.readframes(n)) == 2 * n
    info = sf.info(str(path))
    assert info.frames == n
    assert path.stat().st_size == 44 + 2 * n
    return n


def long_reply() -> Hostility:
    return Hostility(reply_ms=20_000, reply_in_background=True)   # 20 s of reply audio in real time


def ask_args(url: str, out: Path) -> list[str]:
    return ["ask", HELLO, "--url", url, "--api-key", "k", "--pace", "fast", "--timeout", "60",
            "--save-reply", str(out)]


def midway(srv: HostileServer, out: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until the reply is streaming and some of it is on disk already (written as it arrives)."""
    wait_for(lambda: srv.stats.replies >= 1, "the reply to start")
    wait_for(lambda: out.exists() and out.stat().st_size > 44 + 48_000, "reply audio on disk")
    assert proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_ask_keeps_the_reply_so_far_and_ends_the_session(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "reply.wav"
    with HostileServer(long_reply()) as srv:
        proc = start_cli(*ask_args(srv.url, out))
        midway(srv, out, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=unit(20))
        ended = srv.stats.client_events["session.end"]
    assert proc.returncode == 130, err
    assert "voicecli: interrupted" in err and "Traceback" not in err
    assert ended == 1, err                       # SIGTERM is Ctrl-C: session.end was sent
    frames = wav_frames(out)
    assert 24_000 <= frames < 20 * 24_000        # what arrived: more than 1 s, less than the whole reply
    assert "saved" in err and str(out) in err


def test_kill_9_leaves_a_readable_wav_of_what_arrived(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    with HostileServer(long_reply()) as srv:
        proc = start_cli(*ask_args(srv.url, out))
        midway(srv, out, proc)
        size_before = out.stat().st_size
        proc.kill()
        proc.communicate(timeout=unit(20))
    frames = wav_frames(out)
    assert 2 * frames + 44 >= size_before and frames < 20 * 24_000


def test_a_timeout_keeps_the_reply_audio_that_arrived(tmp_path: Path) -> None:
    out = tmp_path / "reply.wav"
    with HostileServer(long_reply()) as srv:
        r = run_cli("ask", HELLO, "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "2",
                    "--save-reply", str(out))
    assert r.code == 7, r.stderr
    assert wav_frames(out) >= 24_000


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_before_session_ready_sends_session_end(sig: int) -> None:
    with HostileServer(Hostility(never_ready=True)) as srv:
        proc = start_cli("ask", HELLO, "--url", srv.url, "--api-key", "k", "--timeout", "30")
        wait_for(lambda: srv.stats.updates >= 1, "session.update")
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=unit(20))
        wait_for(lambda: srv.stats.client_events["session.end"] >= 1, "session.end", timeout=5)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


def test_sigterm_in_eval_is_ctrl_c(tmp_path: Path) -> None:
    with HostileServer(long_reply()) as srv:
        suite = tmp_path / "suite.toml"
        suite.write_text(f'url = "{srv.url}"\napi_key = "k"\ntimeout_s = 60\n'
                         f'[[conversations]]\nname = "long"\n  [[conversations.turns]]\n  audio = "{HELLO}"\n',
                         encoding="utf-8")
        proc = start_cli("eval", str(suite))
        wait_for(lambda: srv.stats.replies >= 1, "the reply to start")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=unit(20))
        ended = srv.stats.client_events["session.end"]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and ended == 1, err
