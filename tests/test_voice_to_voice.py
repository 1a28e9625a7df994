"""Voice-to-voice as `voice-call`'s speak_turn measures it: from the last voiced sample, so a
clip's trailing silence, which the caller waits through, counts. Against tests/fake_agent.py,
which answers as soon as it has heard 500 ms of silence."""

import numpy as np
import pytest

from common.audio import trailing_silence_s
from serve_app.call import CallClient, speak_turn
from tests.fake_agent import FakeAgent


def voice_then_silence(voice_s: float = 1.0, silence_s: float = 0.5) -> bytes:
    t = np.arange(int(16000 * voice_s)) / 16000
    voice = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).tobytes()
    return voice + bytes(2 * int(16000 * silence_s))


def test_trailing_silence_is_what_follows_the_last_voiced_sample():
    assert trailing_silence_s(voice_then_silence(1.0, 0.5)) == pytest.approx(0.5, abs=0.01)
    assert trailing_silence_s(voice_then_silence(1.0, 0.0)) == pytest.approx(0.0, abs=0.01)
    assert trailing_silence_s(bytes(32000)) == 0.0  # nothing voiced: no silence to subtract


async def test_speak_turn_measures_from_the_last_voiced_sample():
    with FakeAgent() as agent:
        client = CallClient(agent.url, "v2v", resume_for=0)
        await client.connect()
        await client.silence_until(lambda: any(e.get("state") == "listening" for e in client.events), 10)
        report = await speak_turn(client, voice_then_silence(1.0, 0.5), timeout=10)
        await client.hangup()
        await client.close()
    after_last_frame_ms = (report.first_audio - report.speech_end) * 1000
    assert report.speech_end - report.last_voiced == pytest.approx(0.5, abs=0.01)
    assert report.latency_ms == pytest.approx(after_last_frame_ms + 500, abs=10)
    assert report.latency_ms >= 490  # the agent answered at the last frame: the figure is the silence waited
