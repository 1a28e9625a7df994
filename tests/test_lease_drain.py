"""A call outlives its Gateway replica and never outlives itself (in-process, the real classes):
the session actor's lease, its command stream across sockets, the drain that moves a call
between turns, and the cluster-wide capacity ledger."""

from __future__ import annotations

import asyncio

import pytest

from deployments.session.lease import Verdict, verdict
from models.session import SessionCommand
from models.state import SessionState, now_ms
from serve_app.capacity import Ledger
from serve_app.drain import DrainWatch
from serve_app.session_pool import SessionPool
from tests.call_fakes import FakeClock, FakeDialogue, FakeWS, handler, session_actor, settings


def state(**fields) -> SessionState:
    return SessionState(session_id="s1", caller_id="c", locale="en-US", **fields)


def test_the_lease_rule():
    now = now_ms()
    assert verdict(None, 1.0, now, 30) is Verdict.KEEP  # warm, renewed
    assert verdict(None, -0.1, now, 30) is Verdict.EXIT  # warm, its Gateway gone
    assert verdict(state(), 1.0, now, 30) is Verdict.KEEP
    assert verdict(state(), -0.1, now, 30) is Verdict.HOLD  # live, its Gateway gone: wait for a resume
    held = state(dropped_at_ms=now - 10_000)
    assert verdict(held, -100, now, 30) is Verdict.KEEP  # held: the lease no longer matters, the window does
    assert verdict(held, -100, now, 5) is Verdict.END
    assert verdict(state(ended_at_ms=now), 1.0, now, 30) is Verdict.KEEP  # ended: the Gateway kills it
    assert verdict(state(ended_at_ms=now), -0.1, now, 30) is Verdict.EXIT  # ... unless it is gone


async def test_a_lapsed_lease_holds_the_call_a_late_renewal_takes_it_back(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_SESSION_LEASE_S", "0.3")
    monkeypatch.setenv("VOICE_RESUME_WINDOW_S", "0.5")
    exits = []
    shim = session_actor(FakeDialogue(lambda *a: None), tmp_path, monkeypatch)
    actor = shim.obj
    actor._exit = lambda: exits.append(True)  # outside Ray: no actor process to end
    await actor.ping()  # starts the watch
    actor.renew()
    await asyncio.sleep(0.2)
    assert actor._engine.state.dropped_at_ms is None  # renewed in time
    await asyncio.sleep(0.4)
    assert actor._engine.state.dropped_at_ms is not None  # lapsed: held for a resume
    actor.renew()  # the Gateway was only slow
    assert actor._engine.state.dropped_at_ms is None
    assert "session.rejoined" in [e.kind for e in actor._engine.state.events]
    for _ in range(40):  # no renewal again, no resume: held, then ended after the window, then gone
        await asyncio.sleep(0.1)
        if exits:
            break
    assert exits and actor._engine.state.end_reason == "caller_dropped"
    assert actor._engine._store.load("s1").end_reason == "caller_dropped"
    await asyncio.sleep(0.3)
    assert actor._watch.done() and exits == [True]  # the watch ended with the call


async def test_a_hold_ends_the_old_command_stream_and_the_next_command_goes_to_the_new_one(tmp_path, monkeypatch):
    actor = session_actor(FakeDialogue(lambda *a: None), tmp_path, monkeypatch).obj
    old = actor.commands()
    old_next = asyncio.ensure_future(old.__anext__())
    await asyncio.sleep(0.01)
    actor.hold()  # the socket that read `old` is gone
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(old_next, 1)
    new = actor.commands()
    await actor.say("Your refund is approved.")
    command = await asyncio.wait_for(new.__anext__(), 1)
    assert command == SessionCommand(op="say", text="Your refund is approved.")


class CountingActor:
    def __init__(self):
        self.renewals = 0
        outer = self

        class _Renew:
            @staticmethod
            def remote():
                outer.renewals += 1

        self.renew = _Renew


async def test_the_pool_renews_its_actors_until_a_call_is_held_elsewhere():
    made = []

    def factory():
        made.append(CountingActor())
        return made[-1]

    pool = SessionPool(factory, warm=0, max_active=2, lease_s=0.06)
    pool._spawn = _ready(factory)  # no ping round trip
    actor = await pool.acquire()
    await asyncio.sleep(0.1)
    assert actor.renewals >= 2
    pool.detach(actor)  # held for a resume: this replica stops vouching for it
    seen = actor.renewals
    await asyncio.sleep(0.1)
    assert actor.renewals <= seen + 1 and pool.active == 0
    pool.adopt(actor)  # resumed here
    await asyncio.sleep(0.1)
    assert actor.renewals >= seen + 2 and pool.active == 1
    pool._renew_task.cancel()
    pool._refill_task.cancel()


def _ready(factory):
    async def spawn():
        return factory()

    return spawn


def test_the_ledger_finds_room_on_another_live_replica_only():
    clock = FakeClock()
    ledger = Ledger(clock)
    ledger.report("a", 2, 2, False)
    assert not ledger.room_elsewhere("a")  # alone and full
    ledger.report("b", 2, 2, False)
    assert not ledger.room_elsewhere("a")  # every replica full: 1013 is right
    ledger.report("c", 1, 2, True)
    assert not ledger.room_elsewhere("a")  # room on a draining replica does not count
    ledger.report("b", 1, 2, False)
    assert ledger.room_elsewhere("a") and not ledger.room_elsewhere("b")
    clock.t += 6  # b stopped reporting (died): its room is gone
    ledger.report("a", 2, 2, False)
    assert not ledger.room_elsewhere("a")


async def test_the_drain_watch_fires_once_when_the_replica_is_stopping():
    answers, fired = [False, False, True, True], []

    async def stopping():
        return answers.pop(0)

    watch = DrainWatch(stopping, lambda: fired.append(True), every_s=0.01)
    watch.start()
    await asyncio.sleep(0.2)
    assert fired == [True] and answers == [True]


def slow_reply(text, memory, run_ahead):
    return ["First part of the answer.", "Second part.", "Third part."], {"intent": "info", "memory": memory}


async def test_a_drain_waits_for_the_turn_then_moves_the_call_with_its_token(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(slow_reply), tmp_path, monkeypatch)

    async def slow_tts(text, rate, locale="en-US", first=False):
        for _ in range(10):
            await asyncio.sleep(0.01)
            yield bytes(rate // 100 * 2)

    h = handler(ws, actor, settings(), synthesize=slow_tts)
    h._resume_token = "s1.secret"
    task = asyncio.create_task(h.run())
    await ws.idle()
    mark = len(ws.events)
    ws.text({"type": "text", "text": "tell me everything"})
    await ws.wait(lambda: any(e["type"] == "agent.text" for e in ws.events[mark:]))
    h.drain(5.0)  # mid-reply: the reply finishes first
    assert await asyncio.wait_for(task, 5) == "draining"
    said = [e["text"] for e in ws.events[mark:] if e["type"] == "agent.text"]
    assert said == ["First part of the answer.", "Second part.", "Third part."]
    ended = ws.of("session.ended")[-1]
    assert ended == {"type": "session.ended", "reason": "draining", "resume_token": "s1.secret"}
    assert ws.close_code == 1012 and h.held
    stored = actor.obj._engine._store.load("s1")
    assert stored.dropped_at_ms is not None and stored.ended_at_ms is None  # held for the resume
    assert [t.reply for t in stored.turns][-1] == said and not stored.turns[-1].interrupted


def test_a_call_moves_only_once_the_caller_has_been_quiet_between_turns():
    from types import SimpleNamespace

    from serve_app.conversation.moving import QUIET_S, mid_turn

    clock = FakeClock()
    listener = SimpleNamespace(heard_at=clock(), endpointer=SimpleNamespace(hearing_voice=False))
    turns = SimpleNamespace(busy=False, queue=asyncio.Queue())
    speaker = SimpleNamespace(speaking=lambda: False)
    assert mid_turn(listener, turns, speaker, clock)  # a typed turn just came in: it may be on its way
    clock.t += QUIET_S
    assert not mid_turn(listener, turns, speaker, clock)
    listener.endpointer.hearing_voice = True  # a voiced frame, not yet an utterance
    assert mid_turn(listener, turns, speaker, clock)
    listener.endpointer.hearing_voice = False
    turns.busy = True
    assert mid_turn(listener, turns, speaker, clock)
