"""The parts of a chat, without devices: the speaker side acts on verdicts and keeps play-out facts."""

from __future__ import annotations

import math

import numpy as np

from voicecli.app.chat_speaker import Speaker
from voicecli.audio.jitter import JitterBuffer
from voicecli.protocol.constants import RATE


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def tone_ms(ms: int) -> bytes:
    n = RATE * ms // 1000
    return (np.sin(np.arange(n) * 0.05) * 8000).astype("<i2").tobytes()


def speaker() -> tuple[Speaker, JitterBuffer, Clock]:
    clock = Clock()
    buffer = JitterBuffer(RATE, prebuffer_ms=0, max_ms=5000, clock=clock)
    return Speaker(buffer, RATE, clock), buffer, clock


def test_audio_is_queued_and_heard_time_is_the_first_sample_played() -> None:
    spk, buffer, clock = speaker()
    spk.started("r1")
    spk.audio("r1", tone_ms(200))
    assert buffer.depth_ms > 150
    clock.t = 100.5
    buffer.pull(RATE // 100)                        # the device plays 10 ms
    turns = spk.poll()
    assert "r1" not in spk.unplayed and turns == []   # no speech_stopped: no turn latency


def test_a_cut_flushes_gates_and_is_reported_once() -> None:
    spk, buffer, clock = speaker()
    spk.started("r1")
    spk.audio("r1", tone_ms(500))
    buffer.pull(RATE // 10)                         # 100 ms played
    cut = spk.cut("r1")
    assert cut is not None and 90 <= cut.played_ms <= 110 and cut.flushed_ms > 300
    assert buffer.depth_frames == 0
    spk.audio("r1", tone_ms(100))                    # late audio of the cut reply
    assert buffer.depth_frames == 0
    assert spk.cut("r1") is None


def test_barge_in_targets_the_reply_in_progress_and_the_one_still_playing() -> None:
    spk, buffer, _ = speaker()
    spk.audio("r1", tone_ms(300))
    buffer.pull(RATE // 100)
    assert spk.barge_in_targets("r2") == ["r2", "r1"]
    assert spk.barge_in_targets(None) == ["r1"]
    spk.cut("r1")
    buffer.pull(RATE // 100)                        # the next device block is silent
    assert spk.barge_in_targets(None) == []


def test_heard_is_everything_once_a_finished_reply_played_out() -> None:
    spk, buffer, _ = speaker()
    spk.audio("r1", tone_ms(100))
    spk.done("r1")
    assert spk.heard_ms("r1") < 1
    buffer.pull(RATE // 5)
    assert math.isinf(spk.heard_ms("r1"))
