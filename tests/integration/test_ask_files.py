"""Issue 12 items 5 and 8 through the real `voicecli ask`: input files are decoded as they are streamed
(memory independent of their length), a header with an absurd sample rate fails before connecting with
exit 6 naming the file, and non-finite float samples are repaired without a numpy warning."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, run_cli, unit
from tests.hostile_server import HostileServer

MIB = 1024 * 1024


def tone_file(path: Path, seconds: float, rate: int) -> Path:
    """A loud tone (so the hostile server hears a turn), written block by block."""
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as fh:
        for start in range(0, int(seconds * rate), rate * 10):
            n = min(rate * 10, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            fh.write((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    return path


def ask_rss(path: Path, url: str) -> tuple[int, int, str]:
    """Run `ask PATH` to the end; (exit code, the child's peak RSS in bytes, stderr)."""
    env = dict(os.environ)
    env.pop("ASSEMBLYAI_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "voicecli.cli", "ask", str(path), "--url", url,
                             "--api-key", "k", "--pace", "fast", "--chunk-ms", "100", "--timeout", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 1 if sys.platform == "darwin" else 1024      # ru_maxrss: KiB on Linux (wait4: this child only)
    return proc.returncode, usage.ru_maxrss * scale, err


def test_a_long_file_is_streamed_not_loaded(tmp_path: Path) -> None:
    short = tone_file(tmp_path / "short.wav", 1.0, 16000)
    long = tone_file(tmp_path / "long.wav", 600.0, 16000)       # 10 min: 18 MiB on disk
    with HostileServer() as srv:
        code_s, rss_s, err_s = ask_rss(short, srv.url)
        code_l, rss_l, err_l = ask_rss(long, srv.url)
    assert code_s == 0 and code_l == 0, (err_s, err_l)
    # before: the whole file as float32, resampled, as PCM (+ a copy with the trailing silence): ~150 MiB
    assert rss_l - rss_s < 20 * MIB, f"peak RSS {rss_s / MIB:.0f} MiB (1 s) vs {rss_l / MIB:.0f} MiB (10 min)"


def with_rate(path: Path, rate: int) -> Path:
    """Rewrite a PCM16 mono WAV header's sample rate (and byte rate): a damaged header."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [1, 10_000_000])
def test_an_absurd_sample_rate_is_exit_6_naming_the_file_before_connecting(tmp_path: Path, rate: int) -> None:
    bad = with_rate(tone_file(tmp_path / f"bad{rate}.wav", 1.0, 16000), rate)
    with HostileServer() as srv:
        r = run_cli("ask", str(bad), "--url", srv.url, "--api-key", "k", "--timeout", "5", timeout=unit(60))
        connections = srv.stats.connections
    assert r.code == 6, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and f"{rate} Hz" in lines[0], r.stderr
    assert connections == 0                     # it failed before connecting


def test_nan_and_inf_samples_are_repaired_without_a_numpy_warning(tmp_path: Path) -> None:
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype(np.float32)
    x[100:200] = np.nan
    x[300] = np.inf
    x[400] = -np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 48000, subtype="FLOAT")       # resampled: NaN would smear through the filter
    with HostileServer() as srv:
        r = run_cli("ask", str(path), "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "30")
    assert r.code == 0, r.stderr
    assert "Warning" not in r.stderr and "invalid value" not in r.stderr, r.stderr
    assert r.stdout.strip() == "Hello from the hostile server."
