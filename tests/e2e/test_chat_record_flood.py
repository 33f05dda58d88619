"""Issue 12 items 7 and 9 on real PortAudio devices: `voicecli chat --record` while the hostile-server
double floods 10 minutes of reply audio as fast as the socket takes it. The recording is written as it
arrives, so --record adds (almost) no memory (before: every received chunk was kept, ~29 MiB here), and
a kill -9 mid-session leaves a readable stereo WAV of what was recorded so far."""

from __future__ import annotations

import time
import wave
from pathlib import Path

from tests.conftest import EXAMPLES, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from tests.hostile_server import HostileServer, Hostility

HELLO = EXAMPLES / "hello.wav"
MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def flooded_chat(vaudio: VirtualAudio, *extra: str) -> tuple[ChatProc, int]:
    """Chat until the flooded reply has fully arrived; (the still running chat, its peak RSS)."""
    with HostileServer(Hostility(audio_flood_s=600)) as srv:
        chat = ChatProc(vaudio.env, "--url", srv.url, "--api-key", "k", "--no-ui", "--json", *extra)
        chat.wait_for(lambda e: e["type"] == "session.ready", what="session.ready")
        vaudio.play(HELLO).wait(unit(10))
        chat.wait_for(lambda e: e["type"] == "reply.done", timeout=120, what="the flooded reply's end")
        time.sleep(0.5)
        return chat, peak_rss(chat.proc.pid)


def test_record_during_a_flood_adds_no_memory_and_survives_kill_9(vaudio: VirtualAudio, tmp_path: Path) -> None:
    plain, rss_plain = flooded_chat(vaudio)
    try:
        assert plain.interrupt(timeout=30) == 130, plain.stderr
    finally:
        plain.kill()
    rec_dir = tmp_path / "rec"
    recorded, rss_rec = flooded_chat(vaudio, "--record", str(rec_dir))
    recorded.kill()                                    # SIGKILL: no cleanup runs
    print(f"peak RSS after a 600 s flood: {rss_plain / MIB:.1f} MiB without --record, {rss_rec / MIB:.1f} MiB with")
    assert rss_rec - rss_plain < 10 * MIB, f"without --record {rss_plain / MIB:.0f} MiB, with {rss_rec / MIB:.0f}"
    wav_path = next(rec_dir.glob("chat-*.wav"))
    with wave.open(str(wav_path)) as wf:               # a valid WAV of what was recorded so far
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (2, 2, 24000)
        frames = wf.getnframes()
        assert len(wf.readframes(frames)) == 4 * frames
    assert frames > 24000 and wav_path.stat().st_size == 44 + 4 * frames
