"""Hearing a phone line (in-process, real silero VAD, piper's voice through a phone line): a call of
8 kHz input gets the phone profile, its μ-law speech is heard whole with its onset and end where
they are, and a 16 kHz call is heard exactly as before. benchmarks/phone_hearing.py has the figures."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from benchmarks.phone_hearing import trimmed as clip_of  # speech cut to its voiced span
from benchmarks.phone_wer import band_limit
from common.audio import resample
from common.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from deployments.vad.engine import CONTEXT_SAMPLES, FRAME_SAMPLES, Endpointer, SileroVAD, SpeechEnded
from deployments.vad.hearing_profile import hearing_profile
from models.protocol import ConnectParams
from serve_app.conversation.channel import Channel
from serve_app.conversation.listener import Listener
from tests.call_fakes import FakeWS, settings
from tests.test_conversation_parts import Hooks, asr


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


def phone(pcm16k: bytes) -> bytes:
    """16 kHz speech as a carrier delivers it: 300-3400 Hz, 8 kHz, through μ-law (PCM16 at 8 kHz)."""
    return ulaw_to_pcm16(pcm16_to_ulaw(resample(band_limit(pcm16k, 16000), 16000, 8000)))


def test_the_call_rate_picks_the_profile():
    s = settings()
    for rate in (16000, 24000, 48000):
        wide = hearing_profile(s, rate)
        assert (wide.vad_rate, wide.vad_threshold, wide.vad_release) == (16000, s.vad_threshold, None)
    narrow = hearing_profile(s, 8000)
    assert (narrow.vad_rate, narrow.vad_threshold, narrow.vad_release) == (8000, 0.5, 0.4)
    assert hearing_profile(settings(phone_vad_rate=16000), 8000).vad_rate == 16000


def test_a_phone_release_over_its_threshold_fails_at_start():
    with pytest.raises(ValueError, match="VOICE_PHONE_VAD_RELEASE"):
        settings(phone_vad_threshold=0.3, phone_vad_release=0.4)


def test_the_16k_stream_is_silero_as_before(vad, speak):
    """The wideband path: the same probabilities as the model called as before the phone profile."""
    x = np.frombuffer(speak("Do you ship to Canada?"), np.int16).astype(np.float32) / 32768
    stream, state, context = vad.stream(), np.zeros((2, 1, 128), np.float32), np.zeros(CONTEXT_SAMPLES, np.float32)
    sr = np.array(16000, dtype=np.int64)
    for i in range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = x[i : i + FRAME_SAMPLES]
        out, state = vad._session.run(None, {"input": np.concatenate([context, frame])[None], "state": state, "sr": sr})
        context = frame[-CONTEXT_SAMPLES:]
        assert stream.prob(frame) == float(out[0][0])
    with pytest.raises(ValueError):
        vad.stream(11025)


async def hear_call(vad, pcm: bytes, rate: int, s=None) -> list:
    """`pcm` at `rate` through a real Listener in 20 ms frames, its VAD stream made as the Gateway makes it."""
    s = s or settings()
    ws, hooks = FakeWS(), Hooks()
    ends: list[tuple[bytes, int]] = []
    hooks.on_end_of_turn = lambda audio, at_sample, trailing: ends.append((audio, at_sample))
    params = ConnectParams(caller_id="tester", sample_rate=rate, output_sample_rate=rate)
    stream = vad.stream(hearing_profile(s, rate).vad_rate)
    listener = Listener(Channel(ws, lambda: None), hooks, params, "s1", asr(""), stream, s)
    task = asyncio.create_task(listener.run())
    frame = rate * 20 // 1000 * 2
    for i in range(0, len(pcm), frame):
        ws.bytes(pcm[i : i + frame])
    await ws.drain()
    ws.inbox.put_nowait({"type": "websocket.disconnect"})
    await asyncio.wait_for(task, 5)
    return [h for h in hooks.seen if h[0] == "started"], ends, listener


async def test_a_phone_utterance_is_heard_with_its_onset_and_end(vad, speak):
    speech = clip_of(speak("I want to return an item because it arrived damaged last week."))
    line = phone(bytes(16000) + speech + bytes(48000))  # 0.5 s before, 1.5 s after
    started, ends, listener = await hear_call(vad, line, 8000)
    assert listener.hearing_profile.name == "phone" and listener.endpointer.stream.rate == 8000
    assert len(started) == 1 and len(ends) == 1
    audio, at = ends[0]
    onset, end = 0.5, 0.5 + len(speech) / 32000
    assert 0.5 - 0.3 <= at / 16000 - len(audio) / 32000 <= onset  # the turn's audio starts before the speech
    assert 0.5 <= at / 16000 - end <= 0.5 + 0.25  # ended at the 500 ms endpoint, within 250 ms


async def test_a_phrase_after_a_pause_on_a_quiet_line_is_not_lost(vad, speak):
    """After a short, uncertain opener and a pause on a quiet phone line, silero's 16 kHz model (fed
    the upsampled audio) stayed deaf to the rest: the turn ended at "Do you" and "ship to Canada?"
    never reached the ASR. The phone profile's 8 kHz model hears it (benchmarks/phone_hearing.py)."""
    first, second = clip_of(speak("Do you")), clip_of(speak("ship to Canada?"))
    pcm = bytes(16000) + first + bytes(int(0.45 * 16000) * 2) + second + bytes(48000)
    second_start, second_end = (len(pcm) - 48000 - len(second)) / 32000, (len(pcm) - 48000) / 32000
    _, ends, listener = await hear_call(vad, phone(pcm), 8000)
    assert listener.hearing_profile.name == "phone"
    assert len(ends) == 1
    audio, at = ends[0]
    # the phrase is in the turn (its first 150 ms may go: the "sh" is mostly above the line's 3.4 kHz)
    assert at / 16000 - len(audio) / 32000 < second_start + 0.15 and at / 16000 > second_end

    before = settings(phone_vad_rate=16000, phone_vad_threshold=0.5, phone_vad_release=0.35)  # the 16 kHz settings
    _, ends, _ = await hear_call(vad, phone(pcm), 8000, before)
    middle = (second_start + second_end) / 2  # the one turn ended inside the phrase, and no turn heard the rest
    assert [at / 16000 < middle for _, at in ends] == [True]


async def test_a_16k_call_is_heard_as_before(vad, speak):
    speech = speak("Hello, I would like to check the status of my order please.")
    pcm = bytes(16000) + speech + bytes(32000)
    _, ends, listener = await hear_call(vad, pcm, 16000)
    s = settings()
    assert listener.hearing_profile.name == "wideband" and listener.endpointer.stream.rate == 16000
    before = Endpointer(vad.stream(), threshold=s.vad_threshold, min_speech_ms=s.min_speech_ms, preemptive_ms=0)
    expected = [e for e in before.feed(pcm) if isinstance(e, SpeechEnded)]
    assert [(a, at) for a, at in ends] == [(e.audio, e.at_sample) for e in expected]
