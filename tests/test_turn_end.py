"""The end-of-turn decision at a pause (deployments/vad/turn_end.py), the endpointer taking its
verdict for the pause, and a call (in-process, fakes) answering early or waiting on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from deployments.vad.engine import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed
from deployments.vad.turn_end import decide
from serve_app.conversation.pauses import Pauses
from tests.call_fakes import FRAME, LOUD, FakeDialogue, FakeWS, LoudVAD, handler, session_actor, settings
from tests.test_conversation_parts import asr, hours


@pytest.mark.parametrize(
    "text",
    [
        "Could you tell me when my parcel will get here?",
        "I'd like to cancel the subscription.",
        "That's all, thank you!",
        "Okay.",
        "No, I don't think so.",
        "Which warehouse does it ship from?",
    ],
)
def test_a_finished_sentence_is_complete(text):
    end = decide(text)
    assert end.verdict == "complete" and end.endpoint_ms(200, 1500) == 200, end


@pytest.mark.parametrize(
    "text",
    [
        "I got charged twice for the...",  # Whisper's ellipsis
        "The courier left it with a",  # an article
        "I tried to log in and",  # a conjunction
        "Can you send it to my",  # a possessive
        "It was supposed to come by",  # a preposition
        "I'm calling because, um",  # a filler
        "So the thing is,",  # a trailing comma
        "My reference number is four seven",  # a number still being said
        "My account number is",  # the thing about to be given
        "I was wondering",  # a verb waiting for what follows
        "zero seven seven",  # a code read out in groups, no lead-in
        "Somebody else logged into mine",  # several words and no stop: a fragment Whisper misheard
    ],
)
def test_a_sentence_left_open_is_unfinished(text):
    end = decide(text)
    assert end.verdict == "unfinished" and end.endpoint_ms(200, 1500) == 1500, end


def test_awaited_digits_wait_for_all_of_them():
    assert decide("five nine", awaiting="pin").verdict == "unfinished"
    assert decide("five nine two", awaiting="pin").cue == "digits_short"
    assert decide("five nine two seven", awaiting="pin").verdict == "complete"
    assert decide("It's 3 8 1", awaiting="order_id").verdict == "unfinished"
    assert decide("It's 3 8 1 7 7", awaiting="order_id").verdict == "complete"
    # Not digits at all while digits are awaited: the other cues decide.
    assert decide("Sorry, I don't remember it.", awaiting="pin").verdict == "complete"
    # Only a number said at the end is one being given: one earlier in a sentence, or "one"
    # standing for a thing, leaves the sentence to the other cues.
    assert decide("I bought 3 lamps and they arrived broken.", awaiting="order_id").verdict == "complete"
    assert decide("This jacket is too tight, I want a larger one.", awaiting="order_id").verdict == "complete"
    assert decide("The number is one", awaiting="order_id").cue == "digits_short"


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("I bought 15.", "unfinished"),  # a figure or a code read out in groups: a stop at the breath
        ("The last digits are 38.", "unfinished"),
        ("It came to 7-4.", "unfinished"),
        ("The bill was $60.", "complete"),  # an amount is whole
        ("They took 129.50 from my account.", "complete"),
        ("It went up by 10%.", "complete"),
        ("Can I get 2?", "complete"),  # a question
        ("Yes, 3.", "complete"),  # a short answer
        ("I moved here in 2019.", "complete"),  # four digits or more: a year, a card's last four
        ("I have been waiting for 6 days.", "complete"),  # the number is not last
    ],
)
def test_a_short_number_at_the_end_is_still_being_said(text, verdict):
    assert decide(text).verdict == verdict, decide(text)


def test_no_cue_keeps_the_fixed_endpoint():
    for text in ("", "   ", "yes it is", "Wait.", "Actually.", "Yeah...", "Seven."):
        assert decide(text).endpoint_ms(200, 1500) is None, text


def feed(ep: Endpointer, frames: list[bytes]) -> list:
    events = []
    for f in frames:
        events.extend(ep.feed(f))
    return events


def test_the_endpointer_takes_the_verdict_for_this_pause_only():
    ep = Endpointer(LoudVAD(), preemptive_ms=100, end_silence_ms=500)
    assert isinstance(feed(ep, [LOUD] * 15 + [FRAME] * 8)[-1], SpeechPaused)
    ep.end_after(1500)  # unfinished: the fixed 500 ms no longer ends it
    assert not any(isinstance(e, SpeechEnded) for e in feed(ep, [FRAME] * 40))  # 0.8 s more
    assert isinstance(feed(ep, [LOUD] * 5)[0], SpeechResumed)  # the caller went on: the verdict is spent
    events = feed(ep, [FRAME] * 40)
    ended = next(e for e in events if isinstance(e, SpeechEnded))
    assert 480 <= ended.trailing_silence_ms <= 560  # the fixed endpoint again
    feed(ep, [LOUD] * 15 + [FRAME] * 8)
    ep.end_after(200)  # complete: ends at the next frame past 200 ms
    ended = next(e for e in feed(ep, [FRAME] * 5) if isinstance(e, SpeechEnded))
    assert 190 <= ended.trailing_silence_ms <= 260


async def pause_then(ws, h, silent_frames: int) -> None:
    """Speech, a pause long enough for the run-ahead, its transcript decided; then more silence
    a frame at a time, as a caller's microphone sends it."""
    for f in [LOUD] * 15 + [FRAME] * 8:
        ws.bytes(f)
    await ws.drain()
    for _ in range(50):  # the run-ahead's transcript, then its decision
        await asyncio.sleep(0.01)
        if h.pauses.decision is not None:
            break
    for _ in range(silent_frames):
        ws.bytes(FRAME)
        await ws.drain()


@pytest.mark.parametrize(
    ("mode", "said", "verdict", "endpoint"),
    [
        ("adaptive", "When do you open on Sunday?", "complete", (190, 300)),
        ("adaptive", "yes that is", "complete", (480, 560)),  # a short answer, not sure enough to hurry
        ("fixed", "When do you open on Sunday?", "fixed", (480, 560)),
    ],
)
async def test_a_call_ends_the_turn_where_the_decision_says(tmp_path, monkeypatch, mode, said, verdict, endpoint):
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    h = handler(ws, actor, settings(preemptive_ms=100, turn_end=mode), transcribe=asr(said))
    task = asyncio.create_task(h.run())
    await ws.idle()
    await pause_then(ws, h, 40)
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=1))
    metrics = ws.of("turn.metrics", turn_id=1)[0]
    assert metrics["turn_end"] == verdict, metrics
    assert endpoint[0] <= metrics["endpoint_delay_ms"] <= endpoint[1], metrics
    if mode == "adaptive":  # decided 100 ms into the pause plus the fake ASR's few ms
        assert 100 <= metrics["turn_end_at_ms"] <= metrics["endpoint_delay_ms"], metrics
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


async def test_an_unfinished_sentence_is_waited_for_and_heard_as_one_turn(tmp_path, monkeypatch):
    dialogue = FakeDialogue(hours)
    ws, actor = FakeWS(), session_actor(dialogue, tmp_path, monkeypatch)
    h = handler(ws, actor, settings(preemptive_ms=100), transcribe=asr("I need help with the"))
    task = asyncio.create_task(h.run())
    await ws.idle()
    await pause_then(ws, h, 40)  # 0.9 s of silence: past the fixed 500 ms
    assert not ws.of("turn.metrics", turn_id=1)  # still the caller's turn
    for f in [LOUD] * 10 + [FRAME] * 100:  # they go on, then stop for good
        ws.bytes(f)
    await ws.drain()
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=1))
    assert [t.source for t in actor.obj._engine.state.turns] == ["greeting", "speech"]  # one turn, not two
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pauses_report_how_far_into_the_silence_the_decision_came():
    clock, ep = Clock(), Endpointer(LoudVAD(), preemptive_ms=100, end_silence_ms=500)
    pauses = Pauses(settings(preemptive_ms=100), ep, clock)
    feed(ep, [LOUD] * 15 + [FRAME] * 8)
    pauses.paused()
    clock.now += 0.180  # the run-ahead's transcript took 180 ms
    pauses.heard("When do you open on Sunday?")
    assert pauses.ended(transcript_pending=False) == {
        "turn_end": "complete",
        "turn_end_confidence": 0.8,
        "turn_end_cue": "punctuation",
        "turn_end_at_ms": 280.0,
    }
    pauses.paused()
    clock.now += 0.45
    assert pauses.ended(transcript_pending=True) == {"turn_end": "none", "turn_end_waited_ms": 450.0}
    pauses.paused()
    pauses.heard("I need help with the")
    pauses.resumed()  # the caller went on: that verdict is spent
    assert pauses.decision is None
    assert pauses.ended(transcript_pending=False) == {"turn_end": "none"}


def test_fixed_mode_decides_nothing():
    ep = Endpointer(LoudVAD(), preemptive_ms=100, end_silence_ms=500)
    pauses = Pauses(settings(turn_end="fixed"), ep)
    feed(ep, [LOUD] * 15 + [FRAME] * 8)
    pauses.paused()
    pauses.heard("When do you open on Sunday?")
    assert pauses.decision is None
    assert pauses.ended(transcript_pending=True) == {"turn_end": "fixed"}


def test_a_verdict_on_its_way_holds_the_endpoint_past_the_fixed_silence():
    ep = Endpointer(LoudVAD(), preemptive_ms=100, end_silence_ms=500)
    pauses = Pauses(settings(preemptive_ms=100, turn_end_wait_ms=300), ep)
    assert isinstance(feed(ep, [LOUD] * 15 + [FRAME] * 8)[-1], SpeechPaused)
    pauses.paused()  # no transcript yet
    ended = next(e for e in feed(ep, [FRAME] * 40) if isinstance(e, SpeechEnded))
    assert 780 <= ended.trailing_silence_ms <= 860, ended.trailing_silence_ms
    feed(ep, [LOUD] * 15 + [FRAME] * 8)
    pauses.paused()
    pauses.heard(None)  # the run-ahead failed: no verdict is coming, the fixed silence again
    ended = next(e for e in feed(ep, [FRAME] * 40) if isinstance(e, SpeechEnded))
    assert 480 <= ended.trailing_silence_ms <= 560, ended.trailing_silence_ms


def late_asr(text: str, late: Callable[[], bool]):
    """Whisper whose run-ahead transcript comes only once `late()` (or after 1.5 s)."""

    async def transcribe(request):
        if request.kind == "ahead":
            for _ in range(150):
                if late():
                    break
                await asyncio.sleep(0.01)
        return {"text": text, "confidence": 0.9}

    return transcribe


@pytest.mark.parametrize(("wait_ms", "verdict"), [(300, "complete"), (0, "none")])
async def test_a_run_ahead_transcript_late_past_the_fixed_silence_still_decides(
    tmp_path, monkeypatch, wait_ms, verdict
):
    """The run-ahead's transcript comes when the pause is 600 ms old: past the fixed 500 ms.
    Held for it, the turn ends on its verdict; not held, on the fixed silence with none."""
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    said = "When do you open on Sunday?"
    config = settings(preemptive_ms=100, turn_end_wait_ms=wait_ms)
    h = None
    h = handler(ws, actor, config, transcribe=late_asr(said, lambda: h.listener.endpointer.silence_ms >= 600))
    task = asyncio.create_task(h.run())
    await ws.idle()
    for f in [LOUD] * 15:
        ws.bytes(f)
    await ws.drain()
    for _ in range(40):  # the microphone's silence at real time
        ws.bytes(FRAME)
        await ws.drain()
        await asyncio.sleep(0.032)
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=1))
    metrics = ws.of("turn.metrics", turn_id=1)[0]
    assert metrics["turn_end"] == verdict, metrics
    if verdict == "complete":
        assert 600 <= metrics["endpoint_delay_ms"] < 700, metrics  # at the verdict, not at 800 ms
    else:
        assert metrics["turn_end_waited_ms"] > 300 and metrics["endpoint_delay_ms"] < 560, metrics
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"
