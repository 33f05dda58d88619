"""The chat's output-idle rule (issue 10, Cost): the output stream may pause only after the speaker
has been idle -- nothing queued, nothing audible, no reply in progress -- for ``idle_s``."""

from __future__ import annotations

from voicecli.app.chat_speaker import IDLE_PAUSE_S, OutputIdle
from voicecli.audio.jitter import JitterBuffer

RATE = 24000


def _pcm(ms: int) -> bytes:
    return b"\x10\x00" * (RATE * ms // 1000)


def test_idle_is_due_only_after_idle_s_without_being_busy() -> None:
    idle = OutputIdle(0.5)
    assert not idle.due(10.0, busy=False)        # the first idle look starts the count
    assert not idle.due(10.4, busy=False)
    assert idle.due(10.5, busy=False)
    assert not idle.due(10.6, busy=True)         # busy again: the count starts over
    assert not idle.due(10.7, busy=False)
    assert not idle.due(11.1, busy=False)
    assert idle.due(11.2, busy=False)
    idle.reset()                                 # resumed: counts from the next look
    assert not idle.due(11.3, busy=False) and idle.due(11.8, busy=False)


def test_the_default_outlasts_the_output_latency_by_far() -> None:
    assert 0.25 <= IDLE_PAUSE_S <= 1.0


def test_busy_while_audio_is_queued_audible_or_a_reply_is_in_progress() -> None:
    buf = JitterBuffer(RATE, prebuffer_ms=60, max_ms=5000)
    out = memoryview(bytearray(2 * 240)).cast("h")
    assert not OutputIdle.busy(buf, reply_in_progress=False)      # fresh: idle
    assert OutputIdle.busy(buf, reply_in_progress=True)           # reply.started, no audio yet
    buf.push(_pcm(30), "r1")
    assert OutputIdle.busy(buf, reply_in_progress=False)          # queued (still priming)
    buf.mark_end("r1")
    while buf.depth_frames:
        buf.pull_into(out)
    assert buf.audible and OutputIdle.busy(buf, reply_in_progress=False)   # the last block had audio
    buf.pull_into(out)
    assert not buf.audible and not OutputIdle.busy(buf, reply_in_progress=False)   # played out


def test_a_reply_cut_by_a_barge_in_leaves_the_speaker_idle() -> None:
    buf = JitterBuffer(RATE, prebuffer_ms=60, max_ms=5000)
    out = memoryview(bytearray(2 * 240)).cast("h")
    buf.push(_pcm(500), "r1")
    buf.pull_into(out)
    assert OutputIdle.busy(buf, reply_in_progress=False)
    buf.interrupt("r1")
    buf.pull_into(out)
    assert not OutputIdle.busy(buf, reply_in_progress=False)
    buf.push(_pcm(100), "r1")                                     # its late audio is gated
    assert not OutputIdle.busy(buf, reply_in_progress=False)
