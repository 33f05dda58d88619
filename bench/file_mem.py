"""Memory of decoding an `ask` input file: ``pre-fix`` (what `ask` did before issue 12 item 8: the whole
file read as float32, one-shot soxr, PCM bytes), ``whole`` (``load_audio_file``, still used by eval suites:
streamed decode, the PCM output kept) and ``streamed`` (what `ask` does now: ``open_audio_file`` +
``chunks``, soundfile blocks + soxr's stream resampler, each chunk dropped once sent). Prints, per mode, the peak RSS growth (VmHWM after - VmRSS before,
in a fresh process) and the tracemalloc peak (numpy buffers included), and the decode time. Asserts
nothing (design.md 16).

Reproduce:  .venv/bin/python bench/file_mem.py [--minutes 30] [--rate 16000] [--channels 1]
            (issue 12's cases: --minutes 60 --rate 16000; --minutes 10 --rate 48000 --channels 2)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_file(path: Path, minutes: float, rate: int, channels: int) -> None:
    """A tone with pauses, written block by block (generating it does not hold it in memory)."""
    import numpy as np
    import soundfile as sf
    frames = int(minutes * 60 * rate)
    block = rate * 10
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as fh:
        for start in range(0, frames, block):
            n = min(block, frames - start)
            t = (start + np.arange(n)) / rate
            x = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.2 * t) > 0)
            fh.write(np.repeat(x[:, None], channels, axis=1).astype(np.float32))


def vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(mode: str, path: str) -> None:
    """Run in a child: decode ``path`` one way and print 'rss_growth tracemalloc_peak seconds bytes'."""
    import tracemalloc

    from voicecli.audio.files import load_audio_file, open_audio_file
    before = vm("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "pre-fix":
        import soundfile as sf

        from voicecli.audio.files import to_protocol_pcm
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        total = len(to_protocol_pcm(data, rate))
        del data
    elif mode == "whole":
        total = len(load_audio_file(path).pcm)
    else:
        src = open_audio_file(path)
        total = sum(len(c) for c in src.chunks(50))
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    print(vm("VmHWM") - before, peak, elapsed, total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        measure(*args.child)
        return
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        make_file(path, args.minutes, args.rate, args.channels)
        print(f"file: {args.minutes:g} min, {args.rate} Hz, {args.channels} ch, PCM_16, "
              f"{path.stat().st_size / mib:.1f} MiB on disk")
        print(f"{'mode':<9} {'peak RSS growth':>16} {'tracemalloc peak':>17} {'decode s':>9} {'PCM out':>10}")
        for mode in ("pre-fix", "whole", "streamed"):
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], capture_output=True,
                                 text=True, check=True, cwd=ROOT).stdout.split()
            rss, peak, secs, total = int(out[0]), int(out[1]), float(out[2]), int(out[3])
            print(f"{mode:<9} {rss / mib:>12.1f} MiB {peak / mib:>13.1f} MiB {secs:>9.2f} "
                  f"{total / mib:>6.1f} MiB")
    print(f"reproduce: .venv/bin/python bench/file_mem.py --minutes {args.minutes:g} --rate {args.rate} "
          f"--channels {args.channels}")


if __name__ == "__main__":
    main()
