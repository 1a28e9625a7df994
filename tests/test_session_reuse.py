"""An ended call's session actor serves the next call instead of a new process: the real actor
class (no Ray) is reset with nothing of its last call left, and the pool (fake actors) takes it
back, or kills it when it cannot be reset. The platform test is in tests/test_call.py."""

from __future__ import annotations

import asyncio

import pytest

from deployments.session.actor import SessionActor
from models.dialogue import TurnSummary
from models.session import SessionSettings, StartSession, TurnRecord
from serve_app.session_api import SessionLine
from serve_app.session_pool import SessionPool
from serve_app.warm_sizing import WarmSizer


def _actor(tmp_path, max_calls: int = 3):
    settings = SessionSettings(
        store_path=tmp_path / "sessions.db",
        state_ttl_s=3600,
        max_turns=20,
        resume_window_s=10,
        session_lease_s=3,
        session_actor_max_calls=max_calls,
    )
    return SessionActor.__ray_actor_class__(settings)


def _signed_in_turn(actor, turn_id: int = 1) -> None:
    summary = TurnSummary(intent="pin", memory={"authenticated": True, "customer_id": "C-7"})
    actor.record_turn(TurnRecord(turn_id=turn_id, source="text", transcript="one two three four", summary=summary))


async def test_an_ended_call_is_reset_and_the_next_call_starts_with_nothing_of_it(tmp_path):
    actor = _actor(tmp_path)
    first = actor.start(StartSession(session_id="call-a", caller_id="alice"))
    assert first.context.memory["authenticated"] is False
    _signed_in_turn(actor)
    assert actor.current_call() == "call-a" and actor.recycle() is False  # a live call is never reset
    await actor.reply("tell them about the warranty")  # in flight when the call ends
    await actor.say("queued for call a", session_id="call-a")  # never read by a Gateway
    stream = actor.commands()
    assert (await anext(stream)).op == "reply"
    actor.finalize("hangup")

    assert actor.recycle() is True and actor.current_call() is None and actor.idle()
    with pytest.raises(LookupError):  # between calls nothing is queued, session id or not
        await actor.say("to whoever calls next")
    with pytest.raises(StopAsyncIteration):  # the old call's command stream ends
        await asyncio.wait_for(anext(stream), 1)
    opened = actor.start(StartSession(session_id="call-b", caller_id="bob"))
    assert opened.state.caller_id == "bob" and opened.context.memory["authenticated"] is False
    assert opened.context.history == [] and opened.context.next_turn_id == 0
    await actor.reply("a reply for call b")  # the old call's reply in flight does not block it
    with pytest.raises(LookupError, match="call-a"):
        await actor.say("late for call a", session_id="call-a")
    await actor.say("for call b", session_id="call-b")
    received = [c async for c in _take(actor.commands(), 2)]
    assert [(c.op, c.text) for c in received] == [("reply", "a reply for call b"), ("say", "for call b")]
    late = TurnRecord(
        turn_id=1, source="text", transcript="my pin is 1234", summary=TurnSummary(memory={"authenticated": True})
    )
    for stale in (lambda: actor.record_turn(late, session_id="call-a"), lambda: actor.finalize("hangup", "call-a")):
        with pytest.raises(LookupError, match="call-a"):  # a late message of the old call's Gateway
            stale()
    assert actor.current_call() == "call-b" and not actor._engine.state.authenticated
    assert actor._engine.state.turns == []
    stored_a = actor._store.load("call-a")
    assert stored_a.authenticated and stored_a.end_reason == "hangup"  # the first call's record is its own


async def _take(stream, n: int):
    for _ in range(n):
        yield await asyncio.wait_for(anext(stream), 1)


def test_an_actor_is_not_reset_past_its_calls_or_while_a_call_is_held(tmp_path):
    actor = _actor(tmp_path, max_calls=2)
    assert actor.recycle() is True  # a warm actor that never had a call
    actor.start(StartSession(session_id="call-a", caller_id="alice"))
    actor.hold()  # dropped: waits for a resume
    assert actor.recycle() is False and actor.current_call() == "call-a"
    actor.finalize("caller_dropped")
    assert actor.recycle() is True
    actor.start(StartSession(session_id="call-b", caller_id="bob"))
    actor.finalize("hangup")
    assert actor.recycle() is False  # its second call: replaced by a fresh process


class _Remote:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class Reusable:
    """A fake actor whose `recycle` answers `ready`, raises, or never answers."""

    def __init__(self, ready):
        self.ready, self.steered = ready, []
        self.ping = _Remote(lambda: asyncio.sleep(0, 1))
        self.renew = _Remote(lambda: None)
        self.recycle = _Remote(self._recycle)
        self.say = _Remote(lambda text, session_id=None: self.steered.append((text, session_id)))

    async def _recycle(self):
        if self.ready == "hang":
            await asyncio.Event().wait()
        if isinstance(self.ready, Exception):
            raise self.ready
        return self.ready


def _pool(monkeypatch, reuse: bool = True) -> tuple[SessionPool, list]:
    killed = []
    monkeypatch.setattr("serve_app.warm_supply.ray.kill", lambda actor, no_restart: killed.append(actor))
    pool = SessionPool(lambda: None, 0, max_active=10, sizer=WarmSizer(0, 0, pause_s=0.0), wait_s=0.0, reuse=reuse)
    pool._ping_timeout_s = 0.2
    return pool, killed


async def test_the_pool_gives_a_reset_actor_to_the_next_call_and_kills_one_it_cannot_reset(monkeypatch):
    pool, killed = _pool(monkeypatch)
    good, refused, broken, hung = Reusable(True), Reusable(False), Reusable(RuntimeError("gone")), Reusable("hang")
    for actor in (good, refused, broken, hung):
        pool._warm.append(actor)
        assert await pool.acquire() is actor
        pool.release(actor)
        assert pool.active == 0  # the line is free at once, before the reset
    await asyncio.sleep(0.4)
    assert pool.reused == 1 and pool.warm == 1  # only `good` came back (kept: not over the target for long)
    assert killed == [refused, broken, hung]
    saved_not = Reusable(True)
    pool._warm.append(saved_not)
    pool.release(await pool.acquire(), reusable=False)  # its call's last checkpoint failed
    assert killed[-1] is saved_not
    for task in (pool._refill_task, pool._renew_task):
        task.cancel()


async def test_a_released_actor_is_the_next_calls_when_the_pool_wants_one(monkeypatch):
    pool, killed = _pool(monkeypatch)
    pool.sizer = WarmSizer(1, 1, pause_s=0.0)
    pool._spawn = lambda: asyncio.Event().wait()  # a spawn that never ends: any actor is a reused one
    good = Reusable(True)
    pool._warm.append(good)
    assert await pool.acquire() is good
    pool.release(good)
    await asyncio.sleep(0.05)
    assert pool.warm == 1 and not killed
    assert await pool.acquire() is good  # no spawn: the same actor
    pool.release(good)
    for task in (pool._refill_task, pool._renew_task):
        task.cancel()


async def test_only_an_excess_that_lasts_is_trimmed(monkeypatch):
    pool, killed = _pool(monkeypatch)  # target 0
    pool._trim_after_s = 0.3
    good = Reusable(True)
    pool._warm.append(good)
    pool.release(await pool.acquire())
    await asyncio.sleep(0.15)
    assert pool.warm == 1 and not killed  # over the target, not yet for long: kept for the next call
    pool.release(await pool.acquire())
    for _ in range(30):
        if killed:
            break
        await asyncio.sleep(0.05)
    assert killed == [good] and pool.warm == 0
    for task in (pool._refill_task, pool._renew_task):
        task.cancel()


async def test_without_reuse_a_released_actor_is_killed(monkeypatch):
    pool, killed = _pool(monkeypatch, reuse=False)
    good = Reusable(True)
    pool._warm.append(good)
    pool.release(await pool.acquire())
    assert killed == [good] and pool.reused == 0
    for task in (pool._refill_task, pool._renew_task):
        task.cancel()


def test_a_session_line_sends_its_session_id_with_every_steering_command():
    actor = Reusable(True)
    line = SessionLine(actor, "call-a")
    line.say.remote("hello")
    assert actor.steered == [("hello", "call-a")]
    assert line.ping is actor.ping  # the actor's other methods as they are
