"""Acoustic echo cancellation for ``voicecli chat --echo aec`` (issue 10).

The canceller is WebRTC's audio processing module through ``livekit``'s ``rtc.AudioProcessingModule``
(the optional ``aec`` extra). It is imported lazily, only when a chat runs with ``aec``
(:func:`available` only asks importlib whether it is installed), so ``--help``, ``ask`` and ``serve``
never load it.

Far-end reference: the output callback writes every block it plays into a :class:`FarEndRing`
(single producer, single consumer, no lock: the writer stores samples, then publishes the new write
count and the block's DAC time; the reader checks the count again after copying). The mic side
(:class:`EchoCanceller`, on the loop) processes 10 ms frames of 24 kHz mic audio; for each frame it
takes the reference that was at the speaker's DAC when the frame's first sample was at the mic's
ADC. Both times come from PortAudio's time info (``outputBufferDacTime``, ``inputBufferAdcTime``, on
PortAudio's clock, shared by the two streams), so the alignment is the measured stream delay, not a
constant. The reference is read contiguously (one frame per mic frame, so the canceller sees render
and capture in lock step); the measured position jitters by a few ms per block (the sound server's
delay reports), so it is averaged (0.5 s), and when the input and output clocks have drifted apart
is followed by reading the ring up to 1 % faster or slower; only an offset beyond
:data:`REALIGN_MS` (a glitch moved one stream) makes the read position jump (counted in
``realigned``). The reading never runs ahead of what was played. The acoustic path and the sound
server's unreported buffering are left to the canceller's own delay estimator.
Measured (issue 10): the faster/slower reading only changes how much resampled reference is queued,
not which sample is fed, so drift in fact reaches the canceller as a slowly growing lag (250 ppm:
+20 ms in 100 s, ``echo_lag_ms``) that AEC3's delay estimator follows, with the REALIGN_MS jump as
the backstop; the residual echo gate below covers the re-learning after such a jump.

Residual echo gate: see GATE_*; no echo path (headphones): see NO_ECHO_*. Diagnosis:
``VOICECLI_AEC_TRACE=FILE.npz`` records everything the canceller was given (for short runs: it is
kept in memory until exit); :func:`replay_trace` feeds it through a fresh canceller
(bench/aec_replay.py, tests/unit/test_aec_gate.py). Cost per 10 ms frame: bench/aec_bench.py.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from voicecli.audio.aec_support import INSTALL_HINT as INSTALL_HINT  # the probe lives apart (no numpy)
from voicecli.audio.aec_support import available as available
from voicecli.audio.polyphase import PolyphaseResampler
from voicecli.protocol.constants import RATE

FRAME = RATE // 100          # the canceller works on 10 ms frames
RING_S = 2.0                 # reference history kept (s)
REALIGN_MS = 80.0            # jump the reference when it is off by more than this (smoothed)
ERR_SMOOTHING = 0.02         # per 10 ms frame: a time constant of 0.5 s
FOLLOW = 0.05                # per frame, the share of the smoothed offset corrected by reading faster/slower
MAX_SLEW = 0.01              # at most 1 % faster or slower
# Residual echo gate (issue 10). On the virtual echo path the sound server now and then drops or
# inserts a few ms of the played stream (seen: 1-19 ms, at a reply's start or mid-reply), so the
# echo comes earlier or later than the reference the canceller learned; AEC3 re-learns that in about
# 0.5 s and meanwhile lets the echo through (ERLE 0-10 dB), and it sometimes leaves one band
# (500-1000 Hz of synthetic speech) almost uncancelled for ~100 ms without any shift. Either is long
# enough for a turn detector to hear "speech". The gate: when the last GATE_WINDOW of mic signal is
# (nearly) a copy of the reference fed at some lag (normalised cross-correlation above GATE_NCC),
# the mic hears nothing but the echo, so whatever the canceller lets through is echo and is
# attenuated by GATE_DB. A user who talks over the agent makes the mic unlike the reference at once
# (at GATE_NCC 0.8, a talker at more than -2.5 dB of the echo's level), which opens the gate.
GATE_WINDOW = FRAME * 5      # mic samples compared (50 ms)
GATE_MAX_LAG = RATE // 5     # lags searched: 0..200 ms of reference history
GATE_FFT = 8192              # >= GATE_WINDOW + GATE_MAX_LAG
GATE_NCC = 0.8
GATE_DB = -30.0
GATE_GAIN = 10 ** (GATE_DB / 20)
GATE_SPAN = 4                # samples around the last lag found, checked before a full search
GATE_SEARCH_EVERY = 4        # frames between two full searches while they find nothing (0.2 ms each)
# No echo path (headphones; the bench's virtual devices without the loopback): AEC3 never hears an
# echo, its linear filter never converges, and meanwhile it assumes the echo is as loud as the far
# end, so a user who talks over the agent is suppressed by 60-80 dB for as long as the far end plays
# (measured, issue 10: the first barge-in of a chat reached the wire 0.85 s late; bench/aec_bench.py
# --no-echo). While the mic has stayed this far below the far end (ERL >= 40 dB: an echo there is
# below any turn detector's speech threshold) for NO_ECHO_FRAMES of far-end audio, the mic is passed
# on as it is, without the APM (as with ``--echo off``; it also costs nothing then: the APM's native
# calls are most of the canceller's cost; noise suppression measurably bought nothing on the echo
# runs, bench/aec_replay.py --ns off); echo-like mic audio (the gate's test), or a mic louder than
# that for NO_ECHO_REVOKE of far-end audio without the far end stopping (a barge-in stops it), ends
# that (``no_echo_path``) and the APM takes over again (from AEC3's conservative initial state).
FAR_ACTIVE = 1e-6            # mean far-end power (-60 dBFS) above which the far end is playing
NO_ECHO_ERL = 1e-4           # mic power below far-end power * this (-40 dB): no echo to cancel
NO_ECHO_FRAMES = 50          # 0.5 s of far-end audio with such a mic
IDLE_AFTER_FRAMES = 8        # 80 ms without a write to the ring: the output stream is stopped (see _far_idle)
NO_ECHO_REVOKE = 100         # 1 s of a loud, not echo-like mic while the far end plays
_ONES_WINDOW = np.ones(GATE_WINDOW, dtype=np.float32)
_RAMP_DOWN = np.linspace(1.0, GATE_GAIN, FRAME, dtype=np.float32)   # the gate closing over one frame
_RAMP_UP = np.linspace(GATE_GAIN, 1.0, FRAME, dtype=np.float32)



class FarEndRing:
    """What the speaker played, at the output device rate, with the DAC time of the latest block.

    Writer: the output callback (:meth:`write`). Reader: the loop (:meth:`read`, :meth:`frame_at`).
    No lock: ``written`` and ``anchor`` are published after the samples (one attribute store each,
    atomic under the GIL); a reader that was lapped gets None."""

    def __init__(self, rate: int, seconds: float = RING_S) -> None:
        self.rate = rate
        self.size = int(rate * seconds)
        self.data = np.zeros(self.size, dtype=np.int16)
        self.written = 0                                   # frames written so far
        self.anchor: tuple[int, float] | None = None       # (frame index, its DAC time)
        self.trace: list[tuple[npt.NDArray[np.int16], float, float]] | None = None  # VOICECLI_AEC_TRACE

    def write(self, block: npt.NDArray[Any] | memoryview | bytes | bytearray, dac_time: float,
              channels: int = 1) -> None:
        """Callback thread: ``block`` as played, int16: a (frames, channels) or (frames,) array, or the
        raw buffer of a RawOutputStream (bytes, bytearray or a 1-D memoryview, format 'h' or 'B':
        ``channels`` interleaved); ``dac_time`` = when its first frame reaches the DAC (PortAudio's
        clock). Only the first channel is kept."""
        if isinstance(block, np.ndarray) and block.ndim == 2:
            mono = block[:, 0]
        else:
            mono = block if isinstance(block, np.ndarray) else np.frombuffer(block, dtype=np.int16)
            if channels > 1:
                mono = mono[::channels]
        n = mono.shape[0]
        start = self.written % self.size
        first = min(n, self.size - start)
        self.data[start:start + first] = mono[:first]
        if first < n:
            self.data[:n - first] = mono[first:n]
        self.anchor = (self.written, dac_time)
        self.written += n
        if self.trace is not None:
            self.trace.append((mono.copy(), dac_time, time.monotonic()))

    def drop_after(self, t: float) -> int:
        """The output stream was aborted at ``t`` (a barge-in drops what the device held): the frames
        written for later than ``t`` will never play, so they become silence in the reference. Only
        while the stream is stopped (no writer). Returns how many frames were cleared."""
        at = self.frame_at(t)
        if at is None:
            return 0
        lo = max(int(math.ceil(at)), self.written - self.size, 0)
        n = self.written - lo
        if n <= 0:
            return 0
        a = lo % self.size
        first = min(n, self.size - a)
        self.data[a:a + first] = 0
        if first < n:
            self.data[:n - first] = 0
        return n

    def frame_at(self, t: float) -> float | None:
        """The (fractional) frame index that was at the DAC at time ``t`` (the anchor's clock)."""
        anchor = self.anchor
        if anchor is None:
            return None
        return anchor[0] + (t - anchor[1]) * self.rate

    def read(self, start: int, n: int, out: npt.NDArray[np.int16]) -> bool:
        """Copy frames ``[start, start + n)`` into ``out[:n]``; frames not written yet (or lost) are
        zeros. False if the reader was lapped while copying."""
        written = self.written
        lo, hi = max(start, written - self.size), min(start + n, written)
        out[:n] = 0
        if hi > lo:
            a, b = lo % self.size, (hi - 1) % self.size + 1
            if a < b:
                out[lo - start:hi - start] = self.data[a:b]
            else:
                k = self.size - a
                out[lo - start:lo - start + k] = self.data[a:]
                out[lo - start + k:hi - start] = self.data[:b]
        return self.written - self.size <= lo


class EchoCanceller:
    """Removes the speaker's echo from 24 kHz mic audio (float32, any block size).

    Contract: :meth:`note_capture` with each mic block's ADC time and length (device frames) before
    :meth:`process` is given that block's resampled samples; :meth:`process` returns the same number
    of samples, delayed by less than one 10 ms frame (:attr:`delay_s`)."""

    def __init__(self, ring: FarEndRing, mic_rate: int, noise_suppression: bool = True) -> None:
        # lazy, and through importlib so mypy gives one answer with or without the optional extra
        rtc: Any = importlib.import_module("livekit.rtc")
        self._rtc = rtc
        self.apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=noise_suppression,
                                             high_pass_filter=True, auto_gain_control=False)
        # the reference is already time-aligned. Once: AEC3 ignores it (it estimates the delay
        # itself) and the output is the same bit for bit as when it is set before every frame, which
        # cost a native call (~8 us) per frame (issue 10, bench/aec_bench.py)
        self.apm.set_stream_delay_ms(0)
        self.ring = ring
        self.mic_rate = mic_rate
        self.ref_resampler = PolyphaseResampler(ring.rate, RATE)
        self.ref_step = ring.rate / 100.0        # output-device frames per 10 ms
        self._ref_pos: float | None = None       # next reference frame to read (output-device frames)
        self._err = 0.0                          # smoothed (measured - read) reference position
        self._ref_buf = np.zeros(int(math.ceil(self.ref_step * (1 + 2 * MAX_SLEW))) + 2, dtype=np.int16)
        # resampled reference not used yet: self._ref_q[:self._ref_n] (a read adds at most one
        # _ref_buf's worth, resampled, to less than a frame)
        self._ref_q = np.zeros(FRAME + int(math.ceil(self._ref_buf.shape[0] * RATE / ring.rate)) + 8,
                               dtype=np.float32)
        self._ref_n = 0
        # the APM's two frames, made once; their samples are rewritten in place every 10 ms
        self._far_frame = rtc.AudioFrame(bytearray(FRAME * 2), RATE, 1, FRAME)
        self._near_frame = rtc.AudioFrame(bytearray(FRAME * 2), RATE, 1, FRAME)
        self._far_i16: npt.NDArray[np.int16] = np.frombuffer(self._far_frame.data, dtype=np.int16)
        self._near_i16: npt.NDArray[np.int16] = np.frombuffer(self._near_frame.data, dtype=np.int16)
        self._scratch = np.empty(FRAME, dtype=np.float32)
        self._e_mic = self._e_ref = 0.0         # energies of the gate's windows (this frame)
        self._near = np.zeros(0, dtype=np.float32)    # mic samples waiting for a full frame
        self._near_t: float | None = None        # ADC time of self._near[0]
        self._adc: tuple[float, float] | None = None   # (mic device frame count, ADC time) latest
        self._mic_frames = 0.0                  # mic device frames noted so far
        self._near_total = 0                    # 24 kHz mic samples given to process()
        self.frames = 0                          # 10 ms mic frames processed
        self.passed_frames = 0                   # of which passed on without the APM (no echo path)
        self.realigned = 0
        self.echo_lag_ms: float | None = None    # the echo's lag behind the reference fed (last found)
        self._gate_lag: int | None = None        # samples
        self._search_wait = 0                    # frames until the next full search may run
        self._hist_ref = np.zeros(GATE_WINDOW + GATE_MAX_LAG, dtype=np.float32)
        self._hist_mic = np.zeros(GATE_WINDOW, dtype=np.float32)
        self.gate = True
        self.no_echo_path = False                # see NO_ECHO_*
        self._quiet_frames = 0                   # far-end frames with a mic NO_ECHO_ERL below it
        self._loud_frames = 0                    # far-end frames in a row with a loud, not echo-like mic
        self._silence = np.zeros(FRAME, dtype=np.int16)
        self._idle_written = -1                  # ring.written at the previous frame (see _far_idle)
        self._idle_zero = False                  # the ring holds only silence from _ref_pos on
        self._idle_count = 0                     # frames in a row without a write to the ring
        self.idle_frames = 0                     # frames that took the far-idle path
        self._gain = 1.0
        self.gated_frames = 0
        self.delay_ms = 0.0                      # last measured stream delay (DAC - ADC)
        self.cost_s = 0.0                        # CPU time of the calling thread spent in the canceller
        self.trace_path = os.environ.get("VOICECLI_AEC_TRACE") or None
        self._calls: list[tuple[float, ...]] = []
        self._mic_in: list[npt.NDArray[np.float32]] = []
        self._mic_out: list[npt.NDArray[np.float32]] = []
        self._frame_log: list[tuple[float, ...]] = []
        if self.trace_path:
            ring.trace = []
            atexit.register(self.write_trace)

    @property
    def delay_s(self) -> float:
        return FRAME / RATE

    def output_restarted(self) -> None:
        """The output stream was stopped and started again (idle pause, barge-in drop): its DAC
        clock restarted, so the reference position is taken afresh from the ring's new anchor at the
        next frame instead of being slewed towards it (the echo path itself did not change, so AEC3's
        own delay estimate stays valid)."""
        self._ref_pos = None
        self._idle_written = -1
        self._err = 0.0
        self.ref_resampler.reset()
        self._ref_n = 0

    def note_capture(self, adc_time: float | None, frames: int) -> None:
        """A mic block of ``frames`` device frames whose first frame was at the ADC at ``adc_time``."""
        if adc_time is not None:
            self._adc = (self._mic_frames, adc_time)
        self._mic_frames += frames
        if self.trace_path:
            self._calls.append((0.0, time.monotonic(), -1.0 if adc_time is None else adc_time, float(frames),
                                float(self.ring.written), *(self.ring.anchor or (-1.0, -1.0))))

    def _adc_time_of(self, sample: int) -> float | None:
        """ADC time of the 24 kHz mic sample number ``sample``."""
        if self._adc is None:
            return None
        frame, t = self._adc
        return t + (sample * self.mic_rate / RATE - frame) / self.mic_rate

    def process(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        t0 = time.thread_time()
        if self.trace_path:
            self._calls.append((1.0, time.monotonic(), -1.0, float(x.shape[0]), float(self.ring.written),
                                *(self.ring.anchor or (-1.0, -1.0))))
            self._mic_in.append(x.copy())
        near = np.concatenate((self._near, x)) if self._near.size else x
        n_frames = near.shape[0] // FRAME
        out = np.empty(n_frames * FRAME, dtype=np.float32)
        base = self._near_total - self._near.shape[0]
        for i in range(n_frames):
            frame = near[i * FRAME:(i + 1) * FRAME]
            if self._far_idle():
                self._track_idle(frame)
                echo_like = False
            else:
                self._reference(self._adc_time_of(base + i * FRAME))
                echo_like = self._track(frame)
            self._note_path(echo_like)
            gain = GATE_GAIN if echo_like and self.gate else 1.0
            y = out[i * FRAME:(i + 1) * FRAME]
            self.frames += 1
            if self.no_echo_path:
                y[:] = frame
                self.passed_frames += 1
            else:
                self._cancel(frame, y)
            if gain != self._gain:
                y *= _RAMP_DOWN if gain < self._gain else _RAMP_UP
            elif gain != 1.0:
                y *= np.float32(gain)
            self.gated_frames += gain != 1.0
            self._gain = gain
        self._near = near[n_frames * FRAME:].copy()
        self._near_total += x.shape[0]
        self.cost_s += time.thread_time() - t0
        if self.trace_path:
            self._mic_out.append(out.copy())
        return out

    def _track(self, near: npt.NDArray[np.float32]) -> bool:
        """Keep the last GATE_WINDOW of mic and GATE_WINDOW + GATE_MAX_LAG of reference (the frame
        :meth:`_reference` just produced); return whether the mic is (nearly) pure echo (see GATE_*):
        first at the last lag found (+-GATE_SPAN, cheap), else by a search over every lag (FFT; while
        it finds nothing, every GATE_SEARCH_EVERY frames). A mic too quiet to hold an echo worth
        gating (NO_ECHO_ERL below the far end) is not searched."""
        h_ref, h_mic = self._hist_ref, self._hist_mic
        h_ref[:-FRAME] = h_ref[FRAME:]
        np.multiply(self._far_i16, np.float32(1 / 32768), out=h_ref[-FRAME:])
        h_mic[:-FRAME] = h_mic[FRAME:]
        h_mic[-FRAME:] = near
        e_m = self._e_mic = float(np.dot(h_mic, h_mic))
        e_r = self._e_ref = float(np.dot(h_ref, h_ref))
        if e_m < GATE_WINDOW * 1e-9:                 # -90 dBFS: nothing to gate
            return False
        if e_r < GATE_WINDOW * 1e-9:                 # no far end
            return False
        if e_m / GATE_WINDOW < e_r / h_ref.shape[0] * NO_ECHO_ERL:     # far below the far end
            return False
        if self._gate_lag is not None and self._echo_at(self._gate_lag, e_m):
            return True
        if self._search_wait > 0:
            self._search_wait -= 1
            return False
        found = _echo_lag(h_mic, h_ref)
        if found is None:
            self._search_wait = GATE_SEARCH_EVERY - 1
            return False
        self._gate_lag = found
        self.echo_lag_ms = found * 1000.0 / RATE
        return True

    def _far_idle(self) -> bool:
        """True while the far end is stopped and silent: nothing was written to the ring for
        IDLE_AFTER_FRAMES (a running output stream writes every block, 20-40 ms), everything it
        holds from the read position on is silence (so every read :meth:`_reference` would make
        until the next write is zeros: it never reads behind that position, nor past what was
        written) and the gate's reference history is all zeros. Then the frame's reference is zeros
        as it was, and :meth:`_track` could only answer "no echo": both are skipped (the output
        stream is paused between replies; issue 10, Cost). Only the reference position's
        bookkeeping stands still meanwhile; a restart of the output takes it afresh anyway
        (:meth:`output_restarted`)."""
        written = self.ring.written
        if written != self._idle_written:
            self._idle_written = written
            self._idle_zero = False
            self._idle_count = 0
            return False
        self._idle_count += 1
        if self._idle_count < IDLE_AFTER_FRAMES:  # a running stream writes every block: not stopped
            return False
        if self._e_ref != 0.0:                   # (0.0 exactly: the history, last frame included, is zeros)
            return False
        if not self._idle_zero:
            start = 0 if self._ref_pos is None else max(0, int(self._ref_pos))
            n = written - start
            if n > self.ring.size:
                return False
            tail = np.empty(max(n, 0), dtype=np.int16)
            self._idle_zero = n <= 0 or (self.ring.read(start, n, tail) and not tail.any())
        return self._idle_zero

    def _track_idle(self, near: npt.NDArray[np.float32]) -> None:
        """:meth:`_track` for a far-idle frame: the mic history moves on, the reference history stays
        all zeros (as shifting in a zero frame would leave it)."""
        h_mic = self._hist_mic
        h_mic[:-FRAME] = h_mic[FRAME:]
        h_mic[-FRAME:] = near
        self.idle_frames += 1

    def _note_path(self, echo_like: bool) -> None:
        """Whether there is an echo path at all (see NO_ECHO_*), from the windows :meth:`_track` keeps."""
        far = self._e_ref / self._hist_ref.shape[0]
        if far < FAR_ACTIVE:
            self._loud_frames = 0
            return
        if echo_like:
            self._revoke()
        elif self._e_mic / GATE_WINDOW < far * NO_ECHO_ERL:
            self._loud_frames = 0
            self._quiet_frames += 1
            if self._quiet_frames >= NO_ECHO_FRAMES:
                self.no_echo_path = True
        else:
            self._loud_frames += 1
            if self._loud_frames >= NO_ECHO_REVOKE:
                self._revoke()

    def _revoke(self) -> None:
        self.no_echo_path = False
        self._quiet_frames = self._loud_frames = 0

    def _echo_at(self, lag: int, e_m: float) -> bool:
        """Whether the mic window is the reference at ``lag`` +- GATE_SPAN (ncc above GATE_NCC)."""
        lo = max(0, GATE_MAX_LAG - lag - GATE_SPAN)
        hi = min(self._hist_ref.shape[0], GATE_MAX_LAG - lag + GATE_SPAN + GATE_WINDOW)
        if hi - lo < GATE_WINDOW:
            return False
        r = self._hist_ref[lo:hi]
        dots = np.correlate(r, self._hist_mic, "valid")          # dots[j] = r[j:j + W] . mic
        energies = np.correlate(np.square(r), _ONES_WINDOW, "valid")
        return bool(np.any(dots > GATE_NCC * np.sqrt(np.maximum(energies, np.float32(1e-12)) * e_m)))

    def _reference(self, adc_time: float | None) -> None:
        """The 10 ms of far-end audio played when the mic frame at ``adc_time`` was captured, into
        the far-end AudioFrame's samples (``self._far_i16``)."""
        want = self.ring.frame_at(adc_time) if adc_time is not None else None
        step = self.ref_step
        if want is not None:
            if self._ref_pos is None:
                self._ref_pos = want
            else:
                # The measured position jitters by a few ms per block (the sound server's delay
                # reports) and the two streams' clocks drift apart: follow its average (0.5 s) by
                # reading up to 1 % faster or slower; jump only when it is off by REALIGN_MS.
                self._err += ERR_SMOOTHING * ((want - self._ref_pos) - self._err)
                if abs(self._err) > REALIGN_MS * self.ring.rate / 1000:
                    self.realigned += 1
                    self._ref_pos += self._err
                    self._err = 0.0
                    self.ref_resampler.reset()
                    self._ref_n = 0
                else:
                    step += max(-MAX_SLEW, min(MAX_SLEW, FOLLOW * self._err / step)) * step
            anchor = self.ring.anchor
            if anchor is not None and adc_time is not None:
                self.delay_ms = (anchor[1] - adc_time) * 1000.0
        q, buf = self._ref_q, self._ref_buf
        while self._ref_n < FRAME:
            k = self._ref_n
            if self._ref_pos is None:
                q[k:k + FRAME] = 0
                self._ref_n += FRAME
                break
            # never ahead of what the speaker has played (that would be silence, not the echo's source)
            self._ref_pos = min(self._ref_pos, float(self.ring.written) - step)
            start = int(self._ref_pos)
            end = int(self._ref_pos + step)
            self._ref_pos += step
            n = end - start
            if not self.ring.read(start, n, buf):
                buf[:n] = 0
            if self.ref_resampler.passthrough:
                np.multiply(buf[:n], np.float32(1 / 32768), out=q[k:k + n])
                self._ref_n += n
            else:
                r = self.ref_resampler.process(buf[:n])
                q[k:k + r.shape[0]] = r
                self._ref_n += r.shape[0]
        _f32_to_i16(q[:FRAME], self._scratch, self._far_i16)
        rest = self._ref_n - FRAME
        q[:rest] = q[FRAME:self._ref_n]
        self._ref_n = rest
        if self.trace_path:
            self._frame_log.append((-1.0 if want is None else want, self._ref_pos or -1.0, self._err,
                                    self.delay_ms, float(self.realigned)))

    def _cancel(self, near: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> None:
        """One 10 ms frame through the APM: the far end (``self._far_i16``) as the reverse stream, then
        ``near``; the result into ``out``. The two AudioFrames are made once and their samples
        rewritten in place (no per-frame buffers)."""
        _f32_to_i16(near, self._scratch, self._near_i16)
        self.apm.process_reverse_stream(self._far_frame)
        self.apm.process_stream(self._near_frame)
        np.multiply(self._near_i16, np.float32(1 / 32768), out=out)

    def write_trace(self) -> None:
        """VOICECLI_AEC_TRACE=FILE.npz: everything needed to replay this chat's canceller offline
        (bench/aec_replay.py): the played blocks with their DAC times, the mic's capture notes and
        process() calls with the ring's state at that moment, the mic signal in and out."""
        if not self.trace_path or self.ring.trace is None:
            return
        played = self.ring.trace
        np.savez_compressed(
            self.trace_path, ring_rate=self.ring.rate, mic_rate=self.mic_rate,
            played=np.concatenate([b for b, _, _ in played]) if played else np.zeros(0, np.int16),
            played_n=np.array([b.shape[0] for b, _, _ in played]),
            played_t=np.array([(d, m) for _, d, m in played]).reshape(-1, 2),
            calls=np.array(self._calls).reshape(-1, 7),
            mic_in=np.concatenate(self._mic_in) if self._mic_in else np.zeros(0, np.float32),
            mic_out=np.concatenate(self._mic_out) if self._mic_out else np.zeros(0, np.float32),
            frames=np.array(self._frame_log).reshape(-1, 5))

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "realigned": self.realigned, "delay_ms": round(self.delay_ms, 1),
                "gated_frames": self.gated_frames, "no_echo_path": self.no_echo_path,
                "passed_frames": self.passed_frames, "idle_frames": self.idle_frames,
                "echo_lag_ms": None if self.echo_lag_ms is None else round(self.echo_lag_ms, 1),
                "ms_per_frame": round(self.cost_s * 1000 / self.frames, 3) if self.frames else None}


class _ReplayRing(FarEndRing):
    """A FarEndRing holding a whole trace's played audio; written count and anchor set per call."""

    def __init__(self, rate: int, played: npt.NDArray[np.int16]) -> None:
        super().__init__(rate)
        self.full = played

    def read(self, start: int, n: int, out: npt.NDArray[np.int16]) -> bool:
        lo, hi = max(start, self.written - self.size, 0), min(start + n, self.written)
        out[:n] = 0
        if hi > lo:
            out[lo - start:hi - start] = self.full[lo:hi]
        return True


def replay_trace(trace: Any, gate: bool = True, noise_suppression: bool = True) -> tuple[
        EchoCanceller, npt.NDArray[np.float32], npt.NDArray[np.float32], list[tuple[float, int]]]:
    """Feed a trace (``np.load`` of a VOICECLI_AEC_TRACE file) through a fresh canceller, call by
    call as it happened live. Returns the canceller, the mic input, its output and, per
    ``process()`` call, (monotonic time, samples out)."""
    ring = _ReplayRing(int(trace["ring_rate"]), trace["played"])
    saved, os.environ["VOICECLI_AEC_TRACE"] = os.environ.get("VOICECLI_AEC_TRACE"), ""
    try:
        c = EchoCanceller(ring, int(trace["mic_rate"]), noise_suppression=noise_suppression)
    finally:
        if saved is None:
            del os.environ["VOICECLI_AEC_TRACE"]
        else:
            os.environ["VOICECLI_AEC_TRACE"] = saved
    c.gate = gate
    mic = trace["mic_in"] if "mic_in" in trace else trace["mic_in_i16"].astype(np.float32) / np.float32(32768)
    outs: list[npt.NDArray[np.float32]] = []
    calls: list[tuple[float, int]] = []
    pos = 0
    for kind, mono, adc, n, written, anchor_i, anchor_t in trace["calls"]:
        ring.written = int(written)
        ring.anchor = None if anchor_i < 0 else (int(anchor_i), float(anchor_t))
        if kind == 0:
            c.note_capture(None if adc < 0 else float(adc), int(n))
        else:
            y = c.process(mic[pos:pos + int(n)])
            pos += int(n)
            outs.append(y)
            calls.append((float(mono), y.shape[0]))
    out = np.concatenate(outs) if outs else np.zeros(0, np.float32)
    return c, mic[:out.shape[0]], out, calls


def _echo_lag(mic: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]) -> int | None:
    """The lag (samples, 0..GATE_MAX_LAG) at which ``mic`` (GATE_WINDOW samples) is most like ``ref``
    (the reference fed, GATE_WINDOW + GATE_MAX_LAG samples ending at the same moment), if its
    normalised cross-correlation there is above GATE_NCC; else None."""
    e_m = float(np.dot(mic, mic))
    r = ref.astype(np.float64)
    c = np.fft.irfft(np.fft.rfft(r, GATE_FFT) * np.conj(np.fft.rfft(mic.astype(np.float64), GATE_FFT)),
                     GATE_FFT)[:GATE_MAX_LAG + 1]              # c[j] = sum mic[n] ref[n + j]
    cs = np.concatenate(([0.0], np.cumsum(r * r)))
    e_r = cs[GATE_WINDOW:GATE_WINDOW + GATE_MAX_LAG + 1] - cs[:GATE_MAX_LAG + 1]
    ncc = c / np.sqrt(np.maximum(e_r, 1e-12) * max(e_m, 1e-12))
    j = int(np.argmax(ncc))
    return GATE_MAX_LAG - j if float(ncc[j]) > GATE_NCC else None


def _f32_to_i16(x: npt.NDArray[np.float32], scratch: npt.NDArray[np.float32],
                out: npt.NDArray[np.int16]) -> None:
    """float32 [-1, 1) -> int16 (scale by 32768, round, clip) into ``out``, through ``scratch``."""
    np.multiply(x, np.float32(32768.0), out=scratch)
    np.minimum(scratch, np.float32(32767.0), out=scratch)     # clipping before rounding: the same
    np.maximum(scratch, np.float32(-32768.0), out=scratch)
    np.rint(scratch, out=out, casting="unsafe")
