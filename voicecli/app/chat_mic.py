"""The user's side of a chat: mic blocks -> 24 kHz ``input.audio`` chunks -> the socket.

The PortAudio input callback hands blocks to the loop (``call_soon_threadsafe``, design.md 5);
:meth:`Mic.on_blocks` runs there: it downmixes, resamples and cuts 20-50 ms chunks
(:class:`~voicecli.audio.pipeline.CapturePipeline`), replaces them with silence while the mic is
closed (muted, push-to-talk released, the half-duplex gate shut, or the echo guard of ``--echo aec``:
the canceller's warm-up, ``echo_guard_ms`` after each reply becomes audible), and queues them (the
chunks of one delivery as one ``input.audio``: a quiet mic's are held up to ~100 ms,
:class:`~voicecli.audio.devices.CaptureStream`); the
:meth:`Mic.sender` task writes them once the session is ready. A chunk is written at once instead
(:meth:`Conversation.try_send_audio`) when nothing is queued and the socket takes it without waiting.
A full queue drops its oldest chunk (a stalled socket must not grow memory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voicecli.app.conversation import Conversation
from voicecli.app.recording import ChatRecorder
from voicecli.audio.gate import HalfDuplexGate
from voicecli.audio.pipeline import CapturePipeline
from voicecli.protocol.constants import RATE

if TYPE_CHECKING:
    from voicecli.audio.aec import EchoCanceller

SEND_QUEUE = 50      # chunks (1 s at 20 ms) buffered towards the socket before dropping


class Mic:
    """Capture-side state: mute, push-to-talk, half duplex, and the user-audio clock."""

    def __init__(self, capture: CapturePipeline, conv: Conversation, *, half_duplex: bool,
                 hangover_ms: int, ptt: bool, recorder: ChatRecorder | None,
                 agent_audible: Callable[[], bool], input_latency: Callable[[], float],
                 aec: EchoCanceller | None = None, echo_guard_ms: int = 0) -> None:
        self.capture, self.conv, self.recorder = capture, conv, recorder
        self.aec = aec
        if aec is not None:
            capture.processor = aec.process
        self.echo_guard_s = echo_guard_ms / 1000.0
        self._was_audible = False
        self._guard_until = -1.0
        self.guarded_chunks = 0
        self.half_duplex = half_duplex
        self.gate = HalfDuplexGate(hangover_ms)
        self.ptt = ptt
        self.muted = False
        self.talking = not ptt
        self.agent_audible = agent_audible
        self.input_latency = input_latency
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(SEND_QUEUE)
        self._t0: float | None = None      # capture time of the first sample
        self._frames = 0                   # 24 kHz frames produced so far

    def rerate(self, rate: int, channels: int, aec: EchoCanceller | None) -> None:
        """The input device was reopened at another rate or channel count (a hot-swap): a new
        capture pipeline for it (and ``aec``, a canceller for the new rate, or None)."""
        self.aec = aec
        self.capture = CapturePipeline(rate, channels, self.capture.chunk_ms,
                                       aec.process if aec is not None else self.capture.processor)
        self.resync()

    def resync(self) -> None:
        """The input stream was reopened (a device hot-swap): the capture clock restarts, so the
        next block re-anchors the user-audio clock (the recording keeps its timeline across the gap)."""
        self._t0 = None

    def is_open(self, now: float) -> bool:
        if self.muted or not self.talking:
            return False
        if now < self._guard_until:
            return False
        return not self.half_duplex or self.gate.mic_open(now)

    def on_blocks(self, blocks: list[Any], captured_at: float, adc_time: float | None = None) -> None:
        """Mic blocks (PCM16 bytes, or arrays), on the loop: (cancel echo,) resample, chunk, queue for
        sending (and record)."""
        frames = sum(self.capture.frames_of(b) for b in blocks)
        if self._t0 is None:     # anchor the user-audio clock (again after a device reopen)
            self._t0 = captured_at - frames / self.capture.in_rate - self.input_latency() \
                - self._frames / RATE
        audible = self.agent_audible()
        if self.half_duplex:
            self.gate.update(captured_at, audible)
        if self.echo_guard_s and audible and not self._was_audible:
            self._guard_until = captured_at + self.echo_guard_s
        self._was_audible = audible
        is_open = self.is_open(captured_at)
        if self.aec is not None:
            self.aec.note_capture(adc_time, frames)
        chunks: list[bytes] = []
        for block in blocks:
            for pcm in self.capture.feed(block):
                if not is_open and captured_at < self._guard_until:
                    self.guarded_chunks += 1
                pcm = pcm if is_open else bytes(len(pcm))
                if self.recorder is not None and self._t0 is not None:
                    self.recorder.add_user(pcm, self._t0 + self._frames / RATE)
                self._frames += len(pcm) // 2
                chunks.append(pcm)
        if chunks:   # the chunks of a quiet mic's held delivery leave as one input.audio (<= 100 ms)
            self._queue(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _queue(self, pcm: bytes) -> None:
        if not self.conv.session.ready:
            return
        if self.queue.empty() and self.conv.try_send_audio(pcm):
            return                          # written at once (no task hop); else in order via the queue
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(pcm)

    async def sender(self) -> None:
        while True:
            await self.conv.send_audio(await self.queue.get())
