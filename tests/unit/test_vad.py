"""EnergyTurnDetector on synthetic signals and on real espeak speech."""

from __future__ import annotations

import numpy as np
import pytest

from voicecli.server.engines import RATE, TurnDetector, TurnEvent
from voicecli.server.tts import EspeakTTS
from voicecli.server.vad import EnergyTurnDetector, frame_levels_db

RNG_SEED = 1234


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000))


def tone(ms: float, dbfs: float = -20.0, freq: float = 300.0) -> np.ndarray:
    """Sine with RMS ``dbfs``."""
    t = np.arange(int(RATE * ms / 1000)) / RATE
    return np.sqrt(2) * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)


def noise(ms: float, dbfs: float, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 10 ** (dbfs / 20), int(RATE * ms / 1000))


def pcm(*parts: np.ndarray) -> bytes:
    x = np.concatenate(parts) if parts else np.zeros(0)
    return np.rint(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def add_noise(b: bytes, dbfs: float) -> bytes:
    x = np.frombuffer(b, dtype="<i2").astype(np.float64) / 32768
    return pcm(x + noise(len(x) * 1000 / RATE, dbfs))


def kinds(evs: list[TurnEvent]) -> list[str]:
    return [e.kind for e in evs]


def test_protocol() -> None:
    assert isinstance(EnergyTurnDetector(), TurnDetector)


def test_levels() -> None:
    lv = frame_levels_db(pcm(silence(10), tone(10, -20), noise(10, -60)) + b"\x01")
    assert lv.shape == (3,)
    assert lv[0] == -120.0
    assert lv[1] == pytest.approx(-20, abs=0.3)
    assert lv[2] == pytest.approx(-60, abs=1.0)


def test_tone_burst_start_and_stop() -> None:
    d = EnergyTurnDetector()
    evs = d.feed(pcm(silence(500), tone(1000)))
    assert evs == [TurnEvent("started", 500.0)]
    assert d.in_speech
    assert d.speech_ms == pytest.approx(1000, abs=10)
    assert d.feed(pcm(silence(590))) == []  # not yet 600 ms of silence
    assert d.in_speech
    evs = d.feed(pcm(silence(10)))
    assert evs == [TurnEvent("stopped", 1500.0)]
    assert not d.in_speech
    assert d.speech_ms == pytest.approx(1000, abs=10)
    assert d.position_ms == 2100


@pytest.mark.parametrize("onset_ms", [503.7, 517.2, 1234.5])
def test_unaligned_onset(onset_ms: float) -> None:
    d = EnergyTurnDetector()
    evs = d.feed(pcm(silence(onset_ms), tone(700), silence(700)))
    assert kinds(evs) == ["started", "stopped"]
    assert evs[0].at_ms == pytest.approx(onset_ms, abs=10)
    assert evs[1].at_ms == pytest.approx(onset_ms + 700, abs=10)


@pytest.mark.parametrize("vad_threshold", [0.0, 0.5, 1.0])
def test_silence_and_low_noise_never_start(vad_threshold: float) -> None:
    for signal in (silence(5000), noise(5000, -60), noise(5000, -65), pcm_free_hum()):
        d = EnergyTurnDetector({"vad_threshold": vad_threshold})
        assert d.feed(pcm(signal)) == []
        assert not d.in_speech


def pcm_free_hum() -> np.ndarray:
    return tone(5000, -62, 50) + noise(5000, -70)


def test_short_click_does_not_start() -> None:
    d = EnergyTurnDetector()
    assert d.feed(pcm(silence(300), tone(50, -10), silence(1000), tone(60, -10), silence(1000))) == []


def test_start_needs_about_80ms() -> None:
    d = EnergyTurnDetector()
    assert d.feed(pcm(silence(200), tone(70))) == []
    evs = d.feed(pcm(tone(10)))
    assert evs == [TurnEvent("started", 200.0)]


def test_short_gap_does_not_split_turn() -> None:
    d = EnergyTurnDetector()
    evs = d.feed(pcm(silence(200), tone(400), silence(500), tone(400), silence(700)))
    assert evs == [TurnEvent("started", 200.0), TurnEvent("stopped", 1500.0)]
    assert d.speech_ms == pytest.approx(1300, abs=10)


def test_min_silence_honoured() -> None:
    d = EnergyTurnDetector()
    d.configure({"min_silence": 200, "max_silence": 1000})
    assert d.feed(pcm(silence(100), tone(500), silence(190))) == [TurnEvent("started", 100.0)]
    assert d.feed(pcm(silence(10))) == [TurnEvent("stopped", 600.0)]
    # two turns separated by 300 ms are two turns now
    d.reset()
    evs = d.feed(pcm(tone(300), silence(300), tone(300), silence(300)))
    assert evs == [
        TurnEvent("started", 0.0),
        TurnEvent("stopped", 300.0),
        TurnEvent("started", 600.0),
        TurnEvent("stopped", 900.0),
    ]


def test_silence_config_variants() -> None:
    d = EnergyTurnDetector()
    assert d.min_silence_ms == 600
    d.configure({"max_silence": 300})  # only the cap: wait min(600, 300)
    assert d.min_silence_ms == 300
    d.configure({"min_silence": 1500})
    assert d.min_silence_ms == 1500
    d.configure({"min_silence": 5, "vad_threshold": 7})  # clamped
    assert d.min_silence_ms == 50 and d.vad_threshold == 1.0
    d.configure(None)
    assert d.min_silence_ms == 600 and d.vad_threshold == 0.5 and d.max_silence_ms is None
    evs = EnergyTurnDetector({"min_silence": 1500}).feed(pcm(tone(500), silence(1400)))
    assert kinds(evs) == ["started"]


def test_configure_keeps_state() -> None:
    d = EnergyTurnDetector()
    assert kinds(d.feed(pcm(silence(100), tone(300)))) == ["started"]
    d.configure({"min_silence": 100, "max_silence": 500})
    assert d.in_speech
    assert d.feed(pcm(silence(100))) == [TurnEvent("stopped", 400.0)]


def test_vad_threshold_sensitivity() -> None:
    quiet = pcm(silence(300), tone(500, -45), silence(800))
    assert kinds(EnergyTurnDetector({"vad_threshold": 0.0}).feed(quiet)) == ["started", "stopped"]
    assert EnergyTurnDetector({"vad_threshold": 1.0}).feed(quiet) == []
    assert EnergyTurnDetector().feed(pcm(silence(300), tone(500, -53), silence(800))) == []


def test_chunking_invariance() -> None:
    sig = pcm(
        silence(333),
        tone(777, -25),
        silence(250),
        tone(400, -15),
        noise(900, -55),
        tone(1000, -30),
        silence(1200),
    )
    whole = EnergyTurnDetector().feed(sig)
    assert kinds(whole) == ["started", "stopped", "started", "stopped"]
    rng = np.random.default_rng(7)
    for max_chunk in (1, 3, 479, 481, 4801):
        d = EnergyTurnDetector()
        evs: list[TurnEvent] = []
        i = 0
        while i < len(sig):
            n = int(rng.integers(1, max_chunk + 1))
            evs += d.feed(sig[i : i + n])
            i += n
        assert evs == whole, max_chunk
    # an odd byte is kept for the next feed
    d = EnergyTurnDetector()
    evs = d.feed(sig[:12345]) + d.feed(sig[12345:])
    assert evs == whole


def test_reset_restarts_time() -> None:
    d = EnergyTurnDetector()
    d.feed(pcm(silence(1000), tone(300)) + b"\x00")
    d.reset()
    assert not d.in_speech and d.position_ms == 0 and d.speech_ms == 0
    assert d.feed(pcm(silence(250), tone(300), silence(600))) == [
        TurnEvent("started", 250.0),
        TurnEvent("stopped", 550.0),
    ]


def test_adapts_to_steady_noise() -> None:
    """A noisy mic (-40 dBFS hiss) may open one bogus turn, then becomes the floor; speech over it is
    detected with the right times."""
    d = EnergyTurnDetector()
    evs = d.feed(pcm(noise(6000, -40)))
    assert len(evs) <= 2 and not d.in_speech
    assert d.noise_floor_db == pytest.approx(-40, abs=1.5)
    evs = d.feed(pcm(noise(1000, -40, 2) + tone(1000, -12), noise(1000, -40, 3)))
    assert evs == [TurnEvent("started", 6000.0), TurnEvent("stopped", 7000.0)]


def test_long_tone_stays_one_turn() -> None:
    evs = EnergyTurnDetector().feed(pcm(silence(200), tone(4000, -20), silence(700)))
    assert evs == [TurnEvent("started", 200.0), TurnEvent("stopped", 4200.0)]


# ---------------------------------------------------------------------------- real espeak speech


@pytest.fixture(scope="module", params=["alba", "george", "anna", "michael"])
def speech(request: pytest.FixtureRequest) -> tuple[bytes, float, float]:
    """espeak sentence; returns (pcm, first_sound_ms, last_sound_ms)."""
    sp = EspeakTTS().synthesize(
        "Turn on the kitchen lights, then tell me what the weather is like in Paris.", request.param
    )
    x = np.frombuffer(sp.pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(x) > 100)  # -50 dBFS peak
    return sp.pcm, loud[0] * 1000 / RATE, (loud[-1] + 1) * 1000 / RATE


@pytest.mark.parametrize("noise_db", [None, -65, -60])
def test_espeak_speech(speech: tuple[bytes, float, float], noise_db: float | None) -> None:
    s, first, last = speech
    sig = pcm(silence(700)) + s + pcm(silence(400)) + s + pcm(silence(800))
    if noise_db is not None:
        sig = add_noise(sig, noise_db)
    d = EnergyTurnDetector()
    evs = d.feed(sig)
    dur = len(s) / 2 * 1000 / RATE
    second = 700 + dur + 400
    # 400 ms gap < 600 ms min_silence: one turn spanning both sentences
    assert kinds(evs) == ["started", "stopped"]
    assert evs[0].at_ms == pytest.approx(700 + first, abs=30)
    assert evs[1].at_ms == pytest.approx(second + last, abs=30)
    # with min_silence 200 the two sentences are two turns
    d = EnergyTurnDetector({"min_silence": 200, "max_silence": 1000})
    evs = d.feed(sig)
    assert kinds(evs) == ["started", "stopped", "started", "stopped"]
    assert [e.at_ms for e in evs] == pytest.approx(
        [700 + first, 700 + last, second + first, second + last], abs=30
    )
    assert d.speech_ms == pytest.approx(last - first, abs=40)


def test_espeak_speech_sensitivity_range(speech: tuple[bytes, float, float]) -> None:
    s, first, last = speech
    for t in (0.0, 0.25, 0.75, 1.0):
        evs = EnergyTurnDetector({"vad_threshold": t}).feed(pcm(silence(500)) + s + pcm(silence(700)))
        assert kinds(evs) == ["started", "stopped"], t
        assert evs[0].at_ms == pytest.approx(500 + first, abs=30)
        assert evs[1].at_ms == pytest.approx(500 + last, abs=30)
