"""Speech over the agent decided by its words (serve_app/conversation/barge.py), in-process: words
stop the agent as soon as they are heard, a backchannel or noise does not, and no verdict in
time stops it at the deadline."""

from __future__ import annotations

import asyncio

from serve_app.conversation.barge import BargeIn
from tests.call_fakes import FakeClock


class FakeSpeaker:
    def __init__(self):
        self.cut_at_s = None
        self.cleared_at: float | None = None
        self.clock = None

    def speaking(self) -> bool:
        return self.cut_at_s is None

    async def barge_in(self) -> None:
        self.cut_at_s = 1.0
        self.cleared_at = self.clock()


def asr(text: str | None, gate: asyncio.Event | None = None):
    """A transcriber answering `text` (None: never answering) once `gate` opens."""
    asked = []

    async def transcribe(audio: bytes, end_sample: int) -> dict:
        asked.append(len(audio))
        if gate is not None:
            await gate.wait()
        if text is None:
            await asyncio.Event().wait()
        return {"text": text, "confidence": 0.9}

    transcribe.asked = asked
    return transcribe


async def speak_over(barge: BargeIn, clock: FakeClock, ms: float, heard: float = 0.0, step: float = 20) -> None:
    """Frames of caller speech from `heard` to `ms` into it, `step` ms apart, the clock (which
    started with the speech) moving with them."""
    while heard < ms:
        heard += step
        clock.t += step / 1000
        await barge.on_speech(heard)
        await asyncio.sleep(0)  # the check's transcript lands between frames


def barge_of(text, confirm_ms=450, gate=None):
    clock, speaker = FakeClock(0.0), FakeSpeaker()
    speaker.clock = clock
    transcribe = asr(text, gate)
    barge = BargeIn(speaker, lambda: (b"\0" * 640, 320), transcribe, 250, confirm_ms, "s1", clock)
    return barge, speaker, clock, transcribe


async def test_words_stop_the_agent_as_soon_as_they_are_heard():
    barge, speaker, clock, transcribe = barge_of("Wait, that's not my order.")
    await speak_over(barge, clock, 300)
    assert transcribe.asked, "the speech was never transcribed"
    assert speaker.cut_at_s is not None and speaker.cleared_at < 0.3  # at once, before the deadline


async def test_a_backchannel_or_a_noise_lets_the_agent_speak_on():
    for said in ("Mm-hmm.", "(coughs)", "Uh-huh, uh-huh."):
        barge, speaker, clock, transcribe = barge_of(said)
        await speak_over(barge, clock, 800)
        assert speaker.cut_at_s is None, said
        assert len(transcribe.asked) >= 2, said  # long enough to be asked again


async def test_no_verdict_in_time_stops_the_agent_at_the_deadline():
    barge, speaker, clock, _ = barge_of(None)
    await speak_over(barge, clock, 250)
    assert speaker.cut_at_s is None  # still waiting for the words
    await speak_over(barge, clock, 550, heard=250)  # the clock moves past 450 ms from the speech's start
    assert speaker.cut_at_s is not None and 0.44 <= speaker.cleared_at <= 0.56


async def test_nothing_heard_yet_decides_nothing():
    barge, speaker, clock, _ = barge_of("")
    await speak_over(barge, clock, 400)
    assert speaker.cut_at_s is None
    await speak_over(barge, clock, 520, heard=400)
    assert speaker.cut_at_s is not None  # the deadline, not the empty transcript


async def test_confirm_off_stops_at_the_minimum_without_asking():
    barge, speaker, clock, transcribe = barge_of("Mm-hmm.", confirm_ms=0)
    await speak_over(barge, clock, 260)
    assert speaker.cut_at_s is not None and not transcribe.asked


async def test_a_new_utterance_starts_a_new_check():
    gate = asyncio.Event()
    barge, speaker, clock, transcribe = barge_of("Mm-hmm.", gate=gate)
    await speak_over(barge, clock, 260)
    barge.reset()  # the caller stopped; the pending check is dropped
    gate.set()
    await asyncio.sleep(0)
    assert barge.words is None and len(transcribe.asked) == 1
