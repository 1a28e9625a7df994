"""Voice-to-voice as the callers measure it (`voice-call`'s speak_turn, the Locust callers):
from the last voiced sample, so a clip's trailing silence, which the caller waits through,
counts; and the Locust caller's barge-in verdicts. Against tests/fake_agent.py, which answers
as soon as it has heard 500 ms of silence."""

import numpy as np
import pytest

from common.audio import trailing_silence_s
from loadtests.caller import Call, NotABargeIn, TurnFailed
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


def test_locust_caller_voice_turn_measures_from_the_last_voiced_sample():
    with FakeAgent() as agent:
        line = Call(agent.url)
        assert line.connect(timeout=10) >= 0
        ms = line.voice_turn(voice_then_silence(1.0, 0.5), timeout=10)
        typed = line.typed_turn("hello", timeout=10)
        line.hangup()
    assert ms >= 490  # the old figure, from the last frame sent, was loopback time only
    assert 0 <= typed < ms


def test_locust_caller_times_a_barge_in_and_hears_the_answer_to_its_words():
    with FakeAgent(reply_s=3.0) as agent:
        line = Call(agent.url)
        line.connect(timeout=10)
        stop_ms, answer = line.barge_in("tell me everything", voice_then_silence(1.0, 0.5), timeout=10)
        line.hangup()
    assert stop_ms >= 260  # the agent stops at the 15th frame of speech over it, sent 280 ms after the first
    assert isinstance(answer, float) and answer >= 490


@pytest.mark.parametrize(
    "agent, verdict",
    [
        (dict(stops=False), "talked over the caller"),
        (dict(audio_after_clear=True), "after audio.clear"),
    ],
)
def test_locust_caller_fails_a_barge_in_the_agent_did_not_honour(agent, verdict):
    with FakeAgent(reply_s=3.0, **agent) as fake:
        line = Call(fake.url)
        line.connect(timeout=10)
        with pytest.raises(TurnFailed, match=verdict):
            line.barge_in("tell me everything", voice_then_silence(1.0, 0.5), timeout=10)
        line.hangup()


def test_a_reply_that_ended_before_the_caller_cut_in_is_no_barge_in():
    with FakeAgent(reply_s=0.2) as agent:
        line = Call(agent.url)
        line.connect(timeout=10)
        with pytest.raises(NotABargeIn):
            line.barge_in("short one", voice_then_silence(1.0, 0.5), timeout=10)
        line.hangup()
