"""`voicecli chat --local` with the offline speech engines on the PulseAudio virtual devices: a spoken
question (examples/weather.wav played into the virtual mic) is transcribed by Whisper and answered
(the no-LLM brain repeats what it heard)."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, unit
from tests.e2e.conftest import ChatProc
from tests.e2e.pulse import VirtualAudio
from voicecli.speech.available import detect

ENGINES = detect()
pytestmark = pytest.mark.skipif(ENGINES.stt != "whisper" or ENGINES.vad != "silero",
                                reason="the speech extra is not installed (pip install 'voicecli[speech]')")


def test_chat_local_transcribes_and_answers_a_spoken_question(vaudio: VirtualAudio) -> None:
    chat = ChatProc(vaudio.env, "--local", "--no-ui", "--json")
    try:
        chat.wait_for(lambda e: e["type"] == "session.ready", timeout=unit(40), what="session.ready")
        vaudio.play(EXAMPLES / "weather.wav").wait(unit(10))
        user = chat.wait_for(lambda e: e["type"] == "transcript.user", timeout=unit(20), what="transcript.user")
        heard = chat.wait_for(lambda e: e["type"] == "voicecli.reply.heard", timeout=unit(30), what="reply heard")
        code = chat.interrupt()
    finally:
        chat.kill()
    assert code == 130, chat.stderr
    assert "weather" in user["text"].lower() and "paris" in user["text"].lower()
    assert heard["text"].startswith("I heard: ") and "Paris" in heard["text"]
