"""Each part of a call's conversation driven alone, through its hooks and fakes (in-process,
no Ray): the listener's reports, the speaker's barge-in and resume, a run-ahead thrown away
when the caller goes on, and the idle check-in and goodbye."""

from __future__ import annotations

import asyncio

from models.protocol import ConnectParams
from serve_app.conversation.channel import Channel
from serve_app.conversation.listener import Listener
from serve_app.conversation.speaker import Speaker
from serve_app.conversation.timers import CHECK_IN, IDLE_GOODBYE
from serve_app.conversation.turn_parts import aiter_of, orchestration_ms
from serve_app.deadlines import Deadlines
from tests.call_fakes import FRAME, LOUD, RATE, FakeDialogue, FakeWS, LoudVAD, handler, session_actor, settings

PARAMS = ConnectParams(caller_id="tester", sample_rate=RATE, output_sample_rate=RATE)


def hours(text, memory, run_ahead):
    return ["We're open nine to five."], {"intent": "hours", "memory": memory}


def asr(text):
    async def transcribe(request):
        return {"text": text, "confidence": 0.9}

    return transcribe


async def send(ws, chunks, settle: float = 0.02):
    for c in chunks:
        ws.bytes(c)
    await ws.drain()
    await asyncio.sleep(settle)


class Hooks:
    """Records what the listener reports."""

    def __init__(self):
        self.seen: list[tuple] = []

    def on_speech_started(self):
        self.seen.append(("started",))

    def on_paused(self, audio, at_sample):
        self.seen.append(("paused",))

    def on_resumed(self):
        self.seen.append(("resumed",))

    def on_end_of_turn(self, audio, at_sample, trailing_silence_ms):
        self.seen.append(("end", len(audio) > 0))

    async def on_speech(self, speech_ms):
        if not self.seen or self.seen[-1][0] != "speech":
            self.seen.append(("speech",))

    def on_text(self, text):
        self.seen.append(("text", text))

    def on_close(self, reason, close_code):
        self.seen.append(("close", reason, close_code))


async def test_the_listener_reports_speech_pauses_turns_and_text_through_its_hooks():
    ws, hooks, gone = FakeWS(), Hooks(), []
    channel = Channel(ws, lambda: gone.append(True))
    listener = Listener(channel, hooks, PARAMS, "s1", asr(""), LoudVAD(), settings(preemptive_ms=100))
    task = asyncio.create_task(listener.run())
    await send(ws, [LOUD] * 15 + [FRAME] * 8 + [LOUD] * 5 + [FRAME] * 30)
    ws.text({"type": "text", "text": "hello"})
    ws.text({"type": "hangup"})
    await ws.drain()
    kinds = [s[0] for s in hooks.seen if s[0] != "speech"]
    assert kinds[:4] == ["started", "paused", "resumed", "paused"], hooks.seen
    assert ("speech",) in hooks.seen
    assert ("end", True) in hooks.seen and ("text", "hello") in hooks.seen
    assert hooks.seen[-1] == ("close", "hangup", 1000)
    assert [e["state"] for e in ws.of("user.state")] == ["speaking", "silent"]
    ws.inbox.put_nowait({"type": "websocket.disconnect"})
    await asyncio.wait_for(task, 1)
    assert gone == [True] and channel.closed


async def slow_tts(text, rate, locale="en-US", first=False):
    for _ in range(5):
        await asyncio.sleep(0.01)
        yield bytes(rate // 50 * 2)  # 20 ms


def speaker_on(ws):
    finished: list[tuple] = []

    async def finish_turn(turn_id, metrics, interrupted=False, heard_part=None):
        finished.append((turn_id, interrupted, heard_part))

    dl = Deadlines.from_settings(settings())
    return Speaker(Channel(ws, lambda: None), PARAMS, "s1", slow_tts, dl, 0.0, finish_turn), finished


async def barged_in(ws, speaker):
    sentences = ["One.", "Two.", "Three."]
    reply = asyncio.create_task(speaker.reply(7, aiter_of(sentences), {}))
    await ws.wait(lambda: ws.of("agent.text", text="Two."))
    await speaker.barge_in()
    assert await asyncio.wait_for(reply, 1)
    return sentences


async def test_a_barge_in_clears_the_audio_and_keeps_only_what_was_heard():
    ws = FakeWS()
    speaker, finished = speaker_on(ws)
    sentences = await barged_in(ws, speaker)
    assert ws.of("audio.clear", turn_id=7) and ws.of("agent.state")[-1]["state"] == "listening"
    sent = ws.audio_bytes
    await asyncio.sleep(0.05)
    assert ws.audio_bytes == sent  # nothing after audio.clear
    assert finished == []  # the verdict waits for the caller's words
    await speaker.settle(resume=False)
    [(turn_id, interrupted, heard_part)] = finished
    assert turn_id == 7 and interrupted and heard_part and len(heard_part) < len(sentences)
    assert not ws.of("agent.text", text="Three.")


async def test_a_barge_in_is_counted_once_per_cut(tmp_path, monkeypatch):
    ws, actor, counted = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch), []
    cfg = settings(barge_in_confirm_ms=0)  # stopped on VAD alone: tests/test_barge.py has the words' verdict
    h = handler(ws, actor, cfg, synthesize=slow_tts, on_barge_in=lambda: counted.append(1))
    reply = asyncio.create_task(h.speaker.reply(7, aiter_of(["One.", "Two.", "Three."]), {}))
    await ws.wait(lambda: ws.of("agent.text", text="Two."))
    await h.on_speech(100.0)  # under VOICE_BARGE_IN_MIN_MS: not a barge-in yet
    assert counted == []
    for _ in range(3):  # every frame of speech that follows reports again
        await h.on_speech(400.0)
    await asyncio.wait_for(reply, 1)
    assert counted == [1] and len(ws.of("audio.clear", turn_id=7)) >= 1


async def test_a_backchannel_resumes_the_reply_where_it_stopped():
    ws = FakeWS()
    speaker, finished = speaker_on(ws)
    await barged_in(ws, speaker)
    await speaker.settle(resume=True)  # what the turn worker does on an "uh-huh"
    assert ws.of("agent.text", text="Three.")
    assert finished and all(not interrupted for _, interrupted, _ in finished)  # spoken whole: not cut


async def test_a_run_ahead_is_discarded_when_the_caller_goes_on(tmp_path, monkeypatch):
    dialogue = FakeDialogue(hours)
    ws, actor = FakeWS(), session_actor(dialogue, tmp_path, monkeypatch)
    h = handler(ws, actor, settings(preemptive_ms=100), transcribe=asr("when are you open"))
    task = asyncio.create_task(h.run())
    await ws.idle()
    await send(ws, [LOUD] * 15 + [FRAME] * 8)  # a pause: the turn is run ahead
    await asyncio.wait_for(dialogue.prepared.wait(), 1)
    first = h.ahead.task
    assert first is not None
    await send(ws, [LOUD] * 5)  # the caller goes on
    assert h.ahead.task is None and first.done()
    await send(ws, [FRAME] * 50)  # the endpoint, past the 1.5 s an unpunctuated fragment waits
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=1))
    assert ws.of("turn.metrics", turn_id=1)[0]["preempted"] == "reply"  # from the second pause's run-ahead
    assert [e["text"] for e in ws.of("agent.text")].count("We're open nine to five.") == 1
    assert [t.source for t in actor.obj._engine.state.turns] == ["greeting", "speech"]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


async def test_an_idle_caller_is_checked_on_then_told_goodbye(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    h = handler(ws, actor, settings(idle_checkin_s=0.05, idle_max_checkins=1))
    task = asyncio.create_task(h.run())
    assert await asyncio.wait_for(task, 2) == "idle_timeout"
    assert [e["text"] for e in ws.of("agent.text")] == ["Hello.", CHECK_IN, IDLE_GOODBYE]
    assert ws.of("session.ended", reason="idle_timeout") and ws.close_code == 1000
    assert [t.source for t in actor.obj._engine.state.turns] == ["greeting", "checkin", "goodbye"]


async def test_a_loop_stops_when_its_cancellation_was_swallowed():
    """asyncio.wait_for in Python 3.11 can swallow a CancelledError when its inner call completes
    at the same moment; a call's loops then must still stop, or the line is held for ever."""
    import asyncio

    from serve_app.conversation.guards import cancelling

    rounds = 0

    async def loop():
        nonlocal rounds
        while not cancelling():
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass  # what the race does: the cancellation is lost

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait_for(task, 1)
    assert task.done() and rounds >= 1


def test_orchestration_time_is_what_the_stages_do_not_explain():
    run_now = {
        "preempted": "none",
        "endpoint_delay_ms": 300.0,
        "asr_compute_ms": 120.0,
        "dialogue_engine_ms": 40.0,
        "tts_first_audio_ms": 90.0,
        "eos_to_first_audio_ms": 575.0,
    }
    assert orchestration_ms(run_now) == 25.0
    assert orchestration_ms({**run_now, "preempted": "reply"}) is None  # stages overlap the caller's speech
    assert orchestration_ms({k: v for k, v in run_now.items() if k != "dialogue_engine_ms"}) is None


async def test_a_turn_costs_the_session_actor_one_record_and_one_close(tmp_path, monkeypatch):
    """The reply streams from the Dialogue on the context the actor last gave: the actor hears
    of the turn twice (its record when the stream closes, its close when the audio ends), and
    the next turn's request carries what this one changed."""
    remembered = {}

    def learn(text, memory, run_ahead):
        remembered.setdefault(text, memory)
        slots = {"awaiting": "pin"} if text == "where is my order" else {}
        return ["Sure."], {"intent": "x", "memory": {**memory, "slots": slots}}

    dialogue = FakeDialogue(learn)
    ws, actor = FakeWS(), session_actor(dialogue, tmp_path, monkeypatch)
    h = handler(ws, actor, settings())
    task = asyncio.create_task(h.run())
    await ws.idle()
    actor.calls.clear()
    for text in ("where is my order", "never mind"):
        mark = len(ws.events)
        ws.text({"type": "text", "text": text})
        await ws.wait(lambda mark=mark: ws.of("turn.metrics") and ws.events[-1]["type"] == "agent.state")
        await ws.idle(mark)
    assert [c for c in actor.calls if c != "commands"] == ["record_turn", "finish_turn"] * 2
    assert h.listener.awaiting_pin is False  # the second turn cleared what the first asked for
    second = dialogue.requests[-1]
    assert second.memory["slots"] == {"awaiting": "pin"} and [e.user for e in second.history] == ["where is my order"]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


async def test_session_api_commands_reach_the_call_pushed_not_polled(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    h = handler(ws, actor, settings())
    task = asyncio.create_task(h.run())
    await ws.idle()
    await actor.obj.say("Your refund is approved.")
    await ws.wait(lambda: ws.of("agent.text", text="Your refund is approved."))
    await actor.obj.close("operator")
    assert await asyncio.wait_for(task, 2) == "operator"
    assert actor.calls.count("commands") == 1  # one stream for the call's life
    assert [t.source for t in actor.obj._engine.state.turns] == ["greeting", "say"]
