"""VAD endpointing on real (synthesized) speech, silence and noise."""

import pytest

from deployments.vad.engine import Endpointer, SileroVAD, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted
from tests.conftest import noise, silence


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


def run(vad, pcm: bytes, chunk: int = 640, **kw):
    ep = Endpointer(vad.stream(), **kw)
    events = []
    for i in range(0, len(pcm), chunk):
        events.extend(ep.feed(pcm[i : i + chunk]))
    return events


def test_one_utterance_is_cut_once_with_all_its_speech(vad, speak):
    speech = speak("Hello, I would like to check the status of my order please.")
    events = run(vad, silence(0.5) + speech + silence(1.0), preemptive_ms=0)  # cuts only
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ended = events[1]
    speech_s = len(speech) / 32000
    assert len(ended.audio) / 32000 >= speech_s * 0.9  # nothing of the speech cut off
    assert 0.45 <= ended.trailing_silence_ms / 1000 <= 0.6  # ended at the 500 ms endpoint


def test_silence_and_quiet_noise_make_no_utterance(vad):
    assert run(vad, silence(3.0)) == []
    assert run(vad, noise(3.0, amplitude=0.01)) == []


def test_pause_longer_than_endpoint_splits_short_pause_does_not(vad, speak):
    a, b = speak("What are your opening hours?"), speak("And are you open on Sunday?")
    split = run(vad, a + silence(1.2) + b + silence(1.0))
    assert sum(isinstance(e, SpeechEnded) for e in split) == 2
    joined = run(vad, a + silence(0.2) + b + silence(1.0))
    assert sum(isinstance(e, SpeechEnded) for e in joined) == 1


def test_odd_chunk_sizes_give_the_same_cut(vad, speak):
    pcm = silence(0.3) + speak("Thank you very much.") + silence(1.0)
    a = run(vad, pcm, chunk=640)
    b = run(vad, pcm, chunk=1234)
    assert [type(e) for e in a] == [type(e) for e in b] == [SpeechStarted, SpeechPaused, SpeechEnded]
    assert abs(a[2].at_sample - b[2].at_sample) <= 512


def test_endpoint_silence_is_configurable(vad, speak):
    pcm = speak("Goodbye.") + silence(1.5)
    fast = [e for e in run(vad, pcm, end_silence_ms=300) if isinstance(e, SpeechEnded)][0]
    slow = [e for e in run(vad, pcm, end_silence_ms=900) if isinstance(e, SpeechEnded)][0]
    assert fast.at_sample < slow.at_sample
    assert fast.trailing_silence_ms < 400 <= 900 <= slow.trailing_silence_ms + 40


def test_max_utterance_forces_a_cut(vad, speak):
    long_speech = b"".join(speak(t) for t in ["One two three four five six seven eight nine ten."] * 3)
    events = run(vad, long_speech + silence(1.0), max_utterance_s=2.0)
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert ends[0].forced and len(ends[0].audio) / 32000 <= 2.1


def test_a_pause_mid_sentence_pauses_then_resumes_and_the_final_pause_ends(vad, speak):
    a, b = speak("What are your opening hours"), speak("on Saturday?")
    events = run(vad, silence(0.3) + a + silence(0.35) + b + silence(1.0))
    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded], kinds
    first, last, ended = events[1], events[3], events[4]
    assert len(a) * 0.9 <= len(first.audio) <= len(a) + 32000 * 0.9  # the first half and its pause only
    assert last.audio == ended.audio[: len(last.audio)]  # the run-ahead saw a prefix of the final utterance
    assert len(ended.audio) - len(last.audio) <= 32000 * 0.4  # ...missing only the silence after the pause
    assert ended.at_sample - last.at_sample >= 16000 * 0.25  # paused well before the 500 ms endpoint


def test_preemptive_pause_is_configurable_and_can_be_off(vad, speak):
    pcm = speak("Where is my order?") + silence(1.0)
    assert not any(isinstance(e, SpeechPaused) for e in run(vad, pcm, preemptive_ms=0))
    early = next(e for e in run(vad, pcm, preemptive_ms=150) if isinstance(e, SpeechPaused))
    late = next(e for e in run(vad, pcm, preemptive_ms=400) if isinstance(e, SpeechPaused))
    assert early.at_sample < late.at_sample


def test_speech_ms_and_utterance_audio_follow_the_utterance(vad, speak):
    ep = Endpointer(vad.stream())
    speech = speak("Hello there, how are you doing today?")
    ep.feed(silence(0.3) + speech[: len(speech) // 2])
    assert ep.speaking and 300 <= ep.speech_ms <= len(speech) / 32 / 2 + 100
    assert len(ep.utterance_audio()) > 0
    ep.feed(speech[len(speech) // 2 :] + silence(1.0))
    assert not ep.speaking and ep.speech_ms == 0 and ep.utterance_audio() == b""
