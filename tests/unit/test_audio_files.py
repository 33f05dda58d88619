"""voicecli.audio.files: decoding real files written by soundfile, and every bad-file error path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicecli.audio.files import (
    PROTOCOL_RATE,
    DecodedAudio,
    chunk_pcm,
    load_audio_file,
    load_audio_files,
    silence,
)
from voicecli.errors import EXIT_AUDIO, AudioFileError


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def as_int16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def test_wav_pcm16_24k_mono_is_sample_exact(tmp_path: Path) -> None:
    samples = np.concatenate([[-32768, 32767, -1, 1, 0], np.arange(2400) * 29 % 65536 - 32768]).astype(
        np.int16
    )
    path = tmp_path / "a.wav"
    sf.write(path, samples, PROTOCOL_RATE, subtype="PCM_16")
    audio = load_audio_file(path)
    assert isinstance(audio, DecodedAudio)
    assert audio.path == str(path)
    assert (audio.source_rate, audio.source_channels, audio.source_format) == (24000, 1, "WAV/PCM_16")
    assert audio.duration_s == pytest.approx(2405 / 24000)
    # int16 -> float32 (/32768) -> int16 (*32768) is lossless, extremes included
    assert audio.pcm == samples.astype("<i2").tobytes()


@pytest.mark.parametrize(
    ("rate", "fmt", "subtype", "expected_format"),
    [
        (48000, "WAV", "PCM_24", "WAV/PCM_24"),
        (44100, "WAV", "FLOAT", "WAV/FLOAT"),
        (16000, "FLAC", "PCM_16", "FLAC/PCM_16"),
        (22050, "OGG", "VORBIS", "OGG/VORBIS"),
        (48000, "MP3", "MPEG_LAYER_III", "MP3/MPEG_LAYER_III"),
    ],
)
def test_formats_and_rates_decode_to_24k(
    tmp_path: Path, rate: int, fmt: str, subtype: str, expected_format: str
) -> None:
    x = sine(rate, 1.0)
    path = tmp_path / f"s.{fmt.lower()}"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    audio = load_audio_file(str(path))
    assert audio.source_rate == rate
    assert audio.source_format == expected_format
    n = len(audio.pcm) // 2
    assert abs(n - PROTOCOL_RATE) <= PROTOCOL_RATE * 0.1  # MP3 may pad a frame or so
    y = as_int16(audio.pcm).astype(np.float64) / 32768
    # a 440 Hz tone at amplitude 0.5 survives: RMS ~ 0.5/sqrt(2)
    assert np.sqrt(np.mean(y[2400:-2400] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_resampled_tone_matches_ideal(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    sf.write(path, sine(48000, 0.5, freq=1000), 48000, subtype="FLOAT")
    y = as_int16(load_audio_file(path).pcm).astype(np.float64) / 32768
    ideal = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / PROTOCOL_RATE)
    err = y[1200:-1200] - ideal[1200:-1200]
    snr = 10 * np.log10(np.sum(ideal[1200:-1200] ** 2) / np.sum(err**2))
    assert snr > 80  # limited by 16-bit quantisation (~90 dB), not by resampling


def test_stereo_and_multichannel_are_averaged(tmp_path: Path) -> None:
    x = sine(PROTOCOL_RATE, 0.2)
    cancel = tmp_path / "cancel.wav"
    sf.write(cancel, np.stack([x, -x], axis=1), PROTOCOL_RATE, subtype="FLOAT")
    audio = load_audio_file(cancel)
    assert audio.source_channels == 2
    assert np.max(np.abs(as_int16(audio.pcm))) <= 1

    half = tmp_path / "half.wav"
    sf.write(half, np.stack([x, np.zeros_like(x), np.zeros_like(x)], axis=1), PROTOCOL_RATE, subtype="FLOAT")
    audio = load_audio_file(half)
    assert audio.source_channels == 3
    np.testing.assert_allclose(as_int16(audio.pcm), np.rint(x / 3 * 32768), atol=1)


def test_clipping_instead_of_wrapping(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([2.0, -2.0, 0.5] * 100, dtype=np.float32), PROTOCOL_RATE, subtype="FLOAT")
    y = as_int16(load_audio_file(path).pcm)
    assert y.max() == 32767 and y.min() == -32768


def test_silent_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(16000, dtype=np.int16), 16000)
    audio = load_audio_file(path)
    assert audio.duration_s == pytest.approx(1.0)
    assert not any(audio.pcm)


def test_truncated_data_decodes_what_is_there(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, sine(24000, 1.0), 24000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:4844])  # 44-byte header + 2400 frames
    audio = load_audio_file(cut)
    assert len(audio.pcm) // 2 == 2400


def assert_file_error(path: object, *words: str) -> AudioFileError:
    with pytest.raises(AudioFileError) as info:
        load_audio_file(path)  # type: ignore[arg-type]
    err = info.value
    assert str(os.fspath(path)) in err.message  # type: ignore[call-overload]
    for word in words:
        assert word in err.message
    assert err.hint
    assert err.exit_code == EXIT_AUDIO
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)  # no chained trace
    assert "\n" not in err.one_line()
    return err


def test_missing_file(tmp_path: Path) -> None:
    assert_file_error(tmp_path / "nope.wav", "does not exist")


def test_directory(tmp_path: Path) -> None:
    assert_file_error(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_file_error(path, "empty")


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    assert_file_error(path, "not a readable audio file", "Format not recognised")


def test_truncated_header(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, sine(24000, 0.1), 24000)
    path = tmp_path / "trunc.wav"
    path.write_bytes(good.read_bytes()[:20])
    assert_file_error(path, "not a readable audio file")


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 24000)
    assert path.stat().st_size > 0
    assert_file_error(path, "0 frames")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, sine(24000, 0.1), 24000)
    path.chmod(0)
    try:
        assert_file_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_load_audio_files_validates_all_before_returning(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, sine(24000, 0.1), 24000)
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    assert [a.path for a in load_audio_files([good, str(good)])] == [str(good)] * 2
    with pytest.raises(AudioFileError, match="bad.wav"):
        load_audio_files([good, good, bad])


def test_silence() -> None:
    assert silence(0) == b""
    assert silence(20) == bytes(960)
    assert silence(10, rate=16000) == bytes(320)
    with pytest.raises(ValueError):
        silence(-1)


def test_chunk_pcm_exact_sizes_and_order() -> None:
    pcm = np.arange(1000, dtype="<i2").tobytes()  # 1000 frames
    chunks = list(chunk_pcm(pcm, 20))  # 480 frames each
    assert [len(c) for c in chunks] == [960, 960, 80]
    assert b"".join(chunks) == pcm
    assert list(chunk_pcm(b"", 20)) == []
    odd = list(chunk_pcm(pcm + b"\x01", 10, rate=8000))  # 80-frame chunks, odd byte dropped
    assert all(len(c) % 2 == 0 for c in odd)
    assert b"".join(odd) == pcm
    with pytest.raises(ValueError):
        list(chunk_pcm(pcm, 0))


def test_a_pipe_is_read_whole_whatever_its_reported_size(tmp_path: Path) -> None:
    import threading
    src = tmp_path / "a.wav"
    sf.write(src, sine(16000, 0.5), 16000, subtype="PCM_16")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()))
    writer.start()
    audio = load_audio_file(fifo)                  # os.path.getsize says 0 for a pipe
    writer.join()
    assert audio.source_rate == 16000 and abs(audio.duration_s - 0.5) < 0.01
    empty = tmp_path / "empty-pipe"
    os.mkfifo(empty)
    closer = threading.Thread(target=lambda: empty.write_bytes(b""))
    closer.start()
    with pytest.raises(AudioFileError, match="is empty"):
        load_audio_file(empty)
    closer.join()


def test_streamed_decode_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Item 8: decoding a 20 min 48 kHz stereo file through AudioSource.chunks holds about one block."""
    import tracemalloc

    from voicecli.audio.files import open_audio_file
    path = tmp_path / "long.wav"
    rate = 48000
    with sf.SoundFile(path, "w", rate, 2, subtype="PCM_16") as fh:
        block = np.repeat(sine(rate, 10.0)[:, None], 2, axis=1)
        for _ in range(120):
            fh.write(block)
    tracemalloc.start()
    try:
        src = open_audio_file(path)
        total = sum(len(c) for c in src.chunks(50))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 1200 * PROTOCOL_RATE * 2             # 20 min of PCM16 came out
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"   # the whole file would be > 200 MiB


@pytest.mark.parametrize("rate", [1, 999, 768001, 10_000_000])
def test_absurd_header_rate_is_refused_naming_the_file(tmp_path: Path, rate: int) -> None:
    import struct
    path = tmp_path / "r.wav"
    sf.write(path, sine(16000, 0.2), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioFileError, match=f"{rate} Hz") as info:
        load_audio_file(path)
    assert str(path) in str(info.value) and info.value.exit_code == EXIT_AUDIO


def test_non_finite_samples_become_silence_and_full_scale(tmp_path: Path) -> None:
    x = np.zeros(2400, dtype=np.float32)
    x[10], x[20], x[30] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, PROTOCOL_RATE, subtype="FLOAT")
    y = as_int16(load_audio_file(path).pcm)
    assert (y[10], y[20], y[30]) == (0, 32767, -32768)
