"""ASR across calls (issue 14, point 3): utterances decoded in one batch say what they say one by
one; a loaded replica serves turns first and sheds partials (fake clock); a call never has more
than one partial in flight and skips the ones due meanwhile. In-process, no Ray."""

from __future__ import annotations

import asyncio

import pytest

from deployments.asr.gate import AsrGate
from models.asr import AsrRequest, AsrShed
from models.protocol import ConnectParams
from serve_app.conversation.channel import Channel
from serve_app.conversation.listener import Listener
from tests.call_fakes import (
    FRAME,
    LOUD,
    RATE,
    FakeClock,
    FakeDialogue,
    FakeWS,
    LoudVAD,
    handler,
    session_actor,
    settings,
)
from tests.conftest import noise, silence
from tests.test_conversation_parts import Hooks, hours, send

LINES = [
    "What are your opening hours?",
    "I want to check the status of my order.",
    "Where is my order?",
    "I want to return an item, it arrived broken and the box was open.",
]


@pytest.fixture(scope="module")
def whisper():
    from deployments.asr.engine import WhisperEngine

    return WhisperEngine()


def test_a_batch_of_utterances_says_what_each_says_alone(whisper, speak):
    long = speak(LINES[1]) + silence(1.5) + speak(LINES[3]) + silence(1.0) + speak(LINES[0])  # a wider window
    audio = [speak(line) for line in LINES] + [long, silence(1.0), noise(1.5), b"\x00\x00" * 100]
    alone = [whisper.transcribe(pcm) for pcm in audio]
    together = whisper.decode([whisper.prepare(pcm) for pcm in audio])
    assert [(t.text, t.confidence) for t in together] == [(t.text, t.confidence) for t in alone]
    assert alone[0].text and alone[len(LINES)].text.count(" ") > 20  # real words, not empty agreement
    assert len({whisper.prepare(pcm).frames for pcm in audio[: len(LINES) + 1]}) == 2  # two windows, one call each


def test_a_partial_is_decoded_only_while_no_turn_waits():
    clock = FakeClock()
    gate = AsrGate(max_wait_s=0.3, clock=clock)
    partial = gate.admit("partial", "a")
    assert partial is not None and gate.keep(partial)
    final = gate.admit("final", "b")
    assert final is not None
    assert not gate.keep(partial), "a queued partial gives way to a turn's final"
    assert gate.admit("partial", "c") is None, "and none is let in while the final waits"
    assert gate.keep(final) and gate.shed == 2
    gate.done(partial)
    gate.done(final)
    later = gate.admit("partial", "c")
    assert later is not None and gate.keep(later)


def test_a_run_ahead_is_turn_work_never_shed():
    gate = AsrGate(max_wait_s=0.3, clock=FakeClock())
    ahead = gate.admit("ahead", "a")
    assert gate.admit("partial", "b") is None
    assert gate.keep(ahead) and gate.admit("ahead", "b") is not None
    gate.done(ahead)
    assert gate.admit("partial", "b") is None  # b's run-ahead still pending


def test_a_partial_queued_past_its_wait_is_dropped_undecoded():
    clock = FakeClock()
    gate = AsrGate(max_wait_s=0.3, clock=clock)
    early = gate.admit("partial", "a")
    clock.t += 0.2
    fresh = gate.admit("partial", "b")
    clock.t += 0.15
    assert not gate.keep(early) and gate.keep(fresh)


def test_one_partial_per_call_at_the_replica():
    gate = AsrGate(max_wait_s=0.3, clock=FakeClock())
    first = gate.admit("partial", "a")
    assert gate.admit("partial", "a") is None
    assert gate.admit("partial", "b") is not None
    gate.done(first)
    assert gate.admit("partial", "a") is not None


class SlowASR:
    """Answers only when released; records every request and the most in flight at once."""

    def __init__(self, shed: bool = False):
        self.requests: list[AsrRequest] = []
        self.in_flight = self.most = 0
        self.release = asyncio.Event()
        self.shed = shed

    async def __call__(self, request: AsrRequest) -> dict:
        self.requests.append(request)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
            if self.shed:
                raise AsrShed("partial shed: turn work pending")
            return {"text": "where is my", "confidence": 0.9}
        finally:
            self.in_flight -= 1


def listener_on(asr, interval_ms: int) -> tuple[Listener, FakeWS]:
    ws = FakeWS()
    params = ConnectParams(caller_id="tester", sample_rate=RATE, output_sample_rate=RATE, locale="en-GB")
    cfg = settings(partial_interval_ms=interval_ms, max_utterance_s=10)
    return Listener(Channel(ws, lambda: None), Hooks(), params, "call-7", asr, LoudVAD(), cfg), ws


async def test_a_call_has_one_partial_in_flight_and_skips_those_due_meanwhile():
    asr = SlowASR()
    listener, ws = listener_on(asr, interval_ms=200)
    task = asyncio.create_task(listener.run())
    await send(ws, [LOUD] * 60)  # 1.2 s of speech: five partials due, the first never answered
    assert asr.most == 1 and len(asr.requests) == 1 and listener.partials_skipped >= 3
    assert asr.requests[0].kind == "partial" and asr.requests[0].call_id == "call-7"
    assert asr.requests[0].language == "en"
    asr.release.set()
    await send(ws, [LOUD] * 5)  # 100 ms: not yet the next interval
    assert len(asr.requests) == 1 and ws.of("transcript") == [
        {"type": "transcript", "turn_id": None, "text": "where is my", "final": False}
    ]
    await send(ws, [LOUD] * 10)
    assert len(asr.requests) == 2 and asr.most == 1
    task.cancel()


async def test_a_shed_partial_sends_nothing_and_the_next_one_goes():
    asr = SlowASR(shed=True)
    asr.release.set()
    listener, ws = listener_on(asr, interval_ms=200)
    task = asyncio.create_task(listener.run())
    await send(ws, [LOUD] * 15)
    await send(ws, [LOUD] * 10)
    assert len(asr.requests) == 2 and not ws.of("transcript")
    task.cancel()


@pytest.mark.parametrize("preemptive_ms, kind", [(100, "ahead"), (0, "final")])
async def test_a_run_ahead_asks_as_ahead_and_an_endpoint_as_final(preemptive_ms, kind, tmp_path, monkeypatch):
    asr = SlowASR()
    asr.release.set()
    ws = FakeWS()
    actor = session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    call = handler(ws, actor, settings(preemptive_ms=preemptive_ms), transcribe=asr)
    task = asyncio.create_task(call.run())
    await ws.idle()
    await send(ws, [LOUD] * 15 + [FRAME] * 50)  # past the 1.5 s an unpunctuated fragment waits
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=1))
    assert [(r.kind, r.call_id) for r in asr.requests] == [(kind, call.session_id)]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


def test_a_partial_that_loops_comes_back_empty_and_a_turns_transcript_is_redone(whisper, speak, monkeypatch):
    """tiny.en loops on "five five five" over the short window: a turn's transcript is worth the
    full-window redo, a partial (a hint shown while the caller speaks) is not."""
    windows = []
    generate = whisper._generate_batch
    monkeypatch.setattr(
        whisper, "_generate_batch", lambda items: windows.append([f for _, f in items]) or generate(items)
    )
    pcm = silence(0.2) + speak("five five five") + silence(0.1)
    partial = whisper.decode([whisper.prepare(pcm, redo_loops=False)])[0]
    assert (partial.text, windows) == ("", [[1000], []])  # one short-window decode, no redo
    windows.clear()
    final = whisper.decode([whisper.prepare(pcm)])[0]
    assert windows == [[1000], [3000]] and final.text.replace(",", "").split() == ["5", "5", "5"], (windows, final)
