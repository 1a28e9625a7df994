"""The end-of-turn decision at a pause (deployments/vad/turn_end.py), the endpointer taking its
verdict for the pause, and a call (in-process, fakes) answering early or waiting on it."""

from __future__ import annotations

import asyncio

import pytest

from deployments.vad.engine import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed
from deployments.vad.turn_end import decide
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
        if h._turn_end is not None:
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
