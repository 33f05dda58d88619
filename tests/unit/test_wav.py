"""voicecli.audio.wav: write_wav round trip and SessionRecorder stereo placement."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import voicecli.audio.wav as wavmod
from voicecli.audio.files import load_audio_file
from voicecli.audio.wav import SessionRecorder, write_wav
from voicecli.errors import AudioFileError


def pcm(values: list[int] | np.ndarray) -> bytes:
    return np.asarray(values, dtype="<i2").tobytes()


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    return data, rate


def test_write_wav_round_trip(tmp_path: Path) -> None:
    samples = (np.arange(4800) * 7 % 65536 - 32768).astype(np.int16)
    path = tmp_path / "out.wav"
    write_wav(path, samples.tobytes() + b"\x01")  # trailing partial frame dropped
    with wave.open(str(path), "rb") as wf:
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate(), wf.getnframes()) == (
            1,
            2,
            24000,
            4800,
        )
    data, rate = read(path)
    assert rate == 24000
    np.testing.assert_array_equal(data[:, 0], samples)
    assert load_audio_file(path).pcm == samples.tobytes()  # and our own reader agrees


def test_write_wav_stereo_and_rate(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    write_wav(str(path), pcm([1, 2, 3, 4, 5, 6, 7]), rate=16000, channels=2)
    data, rate = read(path)
    assert rate == 16000 and data.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_write_wav_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.wav"
    with pytest.raises(AudioFileError, match="does not exist") as info:
        write_wav(missing, pcm([1]))
    assert str(missing) in info.value.message and info.value.hint
    with pytest.raises(AudioFileError, match="is a directory"):
        write_wav(tmp_path, pcm([1]))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_write_wav_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(AudioFileError, match="ro"):
            write_wav(locked / "x.wav", pcm([1]))
    finally:
        locked.chmod(0o700)


def test_recorder_places_channels_at_sample_offsets(tmp_path: Path) -> None:
    rec = SessionRecorder()
    rec.add_user(pcm([1, 2, 3]), at_s=0.0)
    rec.add_agent(pcm([10, 20]), at_s=0.5)  # frame 12000
    rec.add_user(pcm([4, 5]), at_s=1.0)  # frame 24000: gap zero-filled
    path = tmp_path / "session.wav"
    rec.write(path)
    data, rate = read(path)
    assert rate == 24000 and data.shape == (24002, 2)
    left, right = data[:, 0], data[:, 1]
    assert left[:3].tolist() == [1, 2, 3] and left[24000:].tolist() == [4, 5]
    assert not left[3:24000].any()
    assert right[12000:12002].tolist() == [10, 20]
    assert not right[:12000].any() and not right[12002:].any()  # agent padded to the same length
    assert rec.duration_s == pytest.approx(24002 / 24000)


def test_recorder_never_overlaps_late_audio(tmp_path: Path) -> None:
    rec = SessionRecorder(rate=1000)
    rec.add_agent(pcm([1] * 100), at_s=0.0)  # frames 0..99
    rec.add_agent(pcm([2] * 10), at_s=0.05)  # would start at 50: appended at 100 instead
    rec.add_agent(pcm([3] * 5), at_s=0.2)  # after a gap: at 200
    rec.add_agent(b"", at_s=0.3)  # nothing
    path = tmp_path / "late.wav"
    rec.write(path)
    data, rate = read(path)
    assert rate == 1000 and len(data) == 205
    right = data[:, 1]
    assert (right[:100] == 1).all() and (right[100:110] == 2).all()
    assert not right[110:200].any() and (right[200:] == 3).all()
    assert not data[:, 0].any()


def test_recorder_segments_spanning_write_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wavmod, "_BLOCK_FRAMES", 7)  # force many blocks and segments crossing them
    rng = np.random.default_rng(3)
    rec = SessionRecorder(rate=8000)
    expect = np.zeros((0, 2), dtype=np.int16)
    placed: list[tuple[int, int, np.ndarray]] = []
    t = 0
    for i in range(30):
        n = int(rng.integers(1, 40))
        seg = rng.integers(-30000, 30000, n).astype(np.int16)
        ch = i % 2
        t += int(rng.integers(0, 20))
        (rec.add_user if ch == 0 else rec.add_agent)(seg.tobytes(), at_s=t / 8000)
        placed.append((ch, t, seg))
    end = max(off + len(s) for _, off, s in placed)
    expect = np.zeros((end, 2), dtype=np.int16)
    ends = [0, 0]
    for ch, off, seg in placed:
        start = max(off, ends[ch])
        expect[start : start + len(seg), ch] = seg
        ends[ch] = start + len(seg)
    expect = expect[: max(ends)]
    path = tmp_path / "blocks.wav"
    rec.write(path)
    data, _ = read(path)
    np.testing.assert_array_equal(data, expect)


def test_empty_recording_writes_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    SessionRecorder().write(path)
    with wave.open(str(path), "rb") as wf:
        assert (wf.getnchannels(), wf.getnframes()) == (2, 0)


def test_recorder_write_error(tmp_path: Path) -> None:
    rec = SessionRecorder()
    rec.add_user(pcm([1]), 0.0)
    with pytest.raises(AudioFileError, match="does not exist"):
        rec.write(tmp_path / "missing" / "s.wav")


def test_recorder_streams_to_disk_with_bounded_memory_and_is_readable_midway(tmp_path: Path) -> None:
    """Issue 12 item 9: 10 min of mic audio (20 ms chunks) plus a 60 s reply placed once heard: memory
    stays about one block, and the file on disk is a valid WAV of everything added, at every moment."""
    import tracemalloc
    path = tmp_path / "s.wav"
    rec = SessionRecorder(path=path)
    chunk = (np.ones(480, dtype="<i2") * 7).tobytes()
    tracemalloc.start()
    try:
        for i in range(30_000):                     # 600 s
            rec.add_user(chunk, at_s=i * 0.02)
        reply = (np.ones(24000 * 60, dtype="<i2") * 9).tobytes()
        rec.add_agent(reply, at_s=100.0)            # placed into what is already on disk
        del reply
        with wave.open(str(path)) as wf:            # readable before close (and so after a kill)
            assert (wf.getnchannels(), wf.getnframes()) == (2, 600 * 24000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rec.close()
    assert peak < 3.5 * 2**20 + 24000 * 60 * 2, f"{peak / 2**20:.1f} MiB"   # the reply itself + ~1 block
    data, _ = read(path)
    assert (data[:, 0] == 7).all()
    assert not data[: 100 * 24000, 1].any() and (data[100 * 24000: 160 * 24000, 1] == 9).all()
    assert not data[160 * 24000:, 1].any()


def test_chat_recorder_spools_a_flood_of_reply_audio(tmp_path: Path) -> None:
    """A reply flooding 10 min of audio before it is played: held in a spooled temporary file (disk), not
    in memory; what was heard (5 s) lands in the streamed WAV."""
    import tracemalloc

    from voicecli.app.recording import ChatRecorder
    rec = ChatRecorder(tmp_path / "rec", t0=0.0)
    chunk = (np.ones(1200, dtype="<i2") * 5).tobytes()        # 50 ms
    tracemalloc.start()
    try:
        for _ in range(12_000):                                 # 600 s
            rec.agent_audio("r1", chunk)
        rec.add_user(bytes(2 * 24000), captured_at=0.0)
        rec.agent_played("r1", heard_at=2.0, played_ms=5000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 2**20, f"{peak / 2**20:.1f} MiB"          # before: the 57 MiB of chunks
    wav, js = rec.write()
    data, _ = read(wav)
    assert len(data) == 7 * 24000 and (data[2 * 24000:, 1] == 5).all() and not data[: 2 * 24000, 1].any()
    assert rec.pending_replies() == [] and js.exists()
