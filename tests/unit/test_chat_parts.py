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


def test_a_speaker_reopened_at_another_rate_plays_at_that_rate_and_keeps_cuts_gated() -> None:
    """Device hot-swap (issue 10): the speaker comes back at 16 kHz instead of 24 kHz. The cut reply
    stays gated; the next reply is resampled for the new rate (100 ms = 1600 device frames)."""
    spk, buffer, _ = speaker()
    spk.audio("r1", tone_ms(300))
    spk.cut("r1")
    spk.rerate(16000)
    assert spk.buffer is not buffer and spk.buffer.rate == 16000 and spk.playback.device_rate == 16000
    assert spk.buffer.prebuffer_frames == 0 and spk.buffer.max_frames == 5 * 16000
    spk.audio("r1", tone_ms(100))                    # late audio of the cut reply: still dropped
    assert spk.buffer.depth_frames == 0
    spk.audio("r2", tone_ms(100))
    spk.done("r2")
    assert abs(spk.buffer.depth_frames - 1600) <= 40
    assert spk.buffer.pull(1600).any()


def test_a_mic_reopened_at_another_rate_gets_a_pipeline_for_it() -> None:
    from voicecli.app.chat_mic import Mic
    from voicecli.audio.pipeline import CapturePipeline
    mic = Mic(CapturePipeline(48000, 2), None, half_duplex=False, hangover_ms=0,  # type: ignore[arg-type]
              ptt=False, recorder=None, agent_audible=lambda: False, input_latency=lambda: 0.0)
    mic.rerate(16000, 1, None)
    assert mic.capture.in_rate == 16000
    chunks = mic.capture.feed(np.full((16000, 1), 0.1, dtype=np.float32))     # 1 s at 16 kHz mono
    assert 48 <= len(chunks) <= 50 and all(len(c) == RATE // 50 * 2 for c in chunks)


def test_a_lost_device_is_looked_for_by_name_then_the_spec_then_the_default() -> None:
    from voicecli.app.chat_devices import ChatDevices
    from voicecli.audio.devices import DeviceInfo, StreamSettings
    usb = DeviceInfo(7, "USB Audio Headset", "ALSA", 1, 2, 48000.0)
    keeper = ChatDevices(7, None, None, lambda i, o: None, lambda: None)
    keeper.current = {"input": StreamSettings(usb, "input", 48000, 1),
                      "output": StreamSettings(usb, "output", 48000, 2)}
    assert keeper._candidates("input") == ["USB Audio Headset", 7, None]
    assert keeper._candidates("output") == ["USB Audio Headset", None]
