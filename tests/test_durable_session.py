"""A call outlives its session actor: a new one takes over from the last checkpoint and the
call goes on with its memory (in-process: the real actor class behind a shim that can die)."""

from __future__ import annotations

import asyncio

import pytest

from deployments.session.engine import SessionEngine
from deployments.session.store import SessionStore
from models.dialogue import TurnSummary
from models.session import TurnRecord
from tests.call_fakes import FakeDialogue, FakeWS, fresh_actor, handler, session_actor, settings


def bank(text, memory, run_ahead):
    if text == "my pin is 1234":
        return ["Thanks, you're signed in."], {"intent": "pin", "memory": {**memory, "authenticated": True}}
    answer = "Your balance is ten dollars." if memory["authenticated"] else "Please sign in first."
    return [answer], {"intent": "balance", "memory": memory}


async def say(ws, text):
    mark = len(ws.events)
    ws.text({"type": "text", "text": text})
    await ws.wait(lambda: any(e["type"] == "turn.metrics" for e in ws.events[mark:]))
    await ws.idle(mark)
    return ws.events[mark:]


async def test_a_killed_session_actor_is_replaced_and_the_caller_stays_signed_in(tmp_path, monkeypatch):
    dialogue = FakeDialogue(bank)
    ws, first = FakeWS(), session_actor(dialogue, tmp_path, monkeypatch)
    successors = []

    async def respawn(dead):
        successors.append(fresh_actor(tmp_path, monkeypatch))
        return successors[-1]

    h = handler(ws, first, settings(), respawn=respawn)
    task = asyncio.create_task(h.run())
    await ws.idle()
    await say(ws, "my pin is 1234")
    first.kill()
    await asyncio.wait_for(_until(lambda: h.session.actor is not first), 1)  # noticed on a silent line
    events = await say(ws, "what's my balance")
    assert [e["text"] for e in events if e["type"] == "agent.text"] == ["Your balance is ten dollars."]
    metrics = [e for e in events if e["type"] == "turn.metrics"][-1]
    assert metrics["restored"] is True and metrics["turn_id"] == 2  # turn numbers go on
    assert not ws.of("session.ended") and ws.close_code is None
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"
    state = successors[-1].obj._engine._store.load("s1")
    assert [t.source for t in state.turns] == ["greeting", "text", "text"] and state.authenticated
    assert "session.restored" in [e.kind for e in state.events] and state.end_reason == "hangup"


async def test_without_a_way_to_respawn_a_dead_actor_only_costs_its_records(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(bank), tmp_path, monkeypatch)
    h = handler(ws, actor, settings(actor_call_timeout_ms=100, checkpoint_timeout_ms=100))
    task = asyncio.create_task(h.run())
    await ws.idle()
    actor.kill()
    events = await say(ws, "what's my balance")
    assert [e["text"] for e in events if e["type"] == "agent.text"] == ["Please sign in first."]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


def test_restore_goes_on_from_the_checkpoint_and_refuses_what_was_read_before(tmp_path):
    store = SessionStore(tmp_path / "s.db")
    old = SessionEngine(store, max_turns=10)
    old.start("s1", "tester", "en-US")
    signed_in = TurnSummary(memory={**old.memory(), "authenticated": True})
    old.record_turn(TurnRecord(turn_id=0, source="text", transcript="1234", summary=signed_in))
    read = old.version
    new = SessionEngine(store, max_turns=10)
    new.restore("s1", "actor-2")
    assert new.state.authenticated and new.state.actor_id == "actor-2" and new.context().next_turn_id == 1
    ahead = TurnRecord(turn_id=1, source="speech", transcript="hi", sentences=["Hello."], read_version=read)
    assert new.record_turn(ahead).stale  # run ahead on the dead actor's version
    again = TurnRecord(turn_id=0, source="text", transcript="1234", summary=signed_in)
    assert not new.record_turn(again).stale and len(new.state.turns) == 1  # a record sent twice is kept once
    new.close("hangup")
    with pytest.raises(LookupError, match="ended"):
        SessionEngine(store, max_turns=10).restore("s1")
    with pytest.raises(LookupError, match="no checkpoint"):
        SessionEngine(store, max_turns=10).restore("nobody")


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.01)


def test_a_resume_token_is_single_use_bound_to_its_caller_and_window(tmp_path, monkeypatch):
    from deployments.session import engine as engine_module

    engine = SessionEngine(SessionStore(tmp_path / "s.db"), max_turns=10)
    engine.start("a" * 32, "caller-1", "en-US")
    token = engine.issue_token()
    assert engine.resume(token, "caller-1", 30) is None  # not dropped: nothing to resume
    engine.hold()
    assert engine.resume(token, "caller-2", 30) is None  # another caller's
    assert engine.resume(token[:-1] + ("x" if token[-1] != "x" else "y"), "caller-1", 30) is None
    fresh = engine.resume(token, "caller-1", 30)
    assert fresh is not None and fresh != token and engine.state.dropped_at_ms is None
    engine.hold()
    assert engine.resume(token, "caller-1", 30) is None  # used: rotated on resume
    later = engine.state.dropped_at_ms + 31_000
    monkeypatch.setattr(engine_module, "now_ms", lambda: later)
    assert engine.resume(fresh, "caller-1", 30) is None  # the window passed
    stored = SessionStore(tmp_path / "s.db").load("a" * 32)
    assert fresh not in stored.model_dump_json() and token not in stored.model_dump_json()  # only hashes
    refusals = [e.detail["reason"] for e in engine.state.events if e.kind == "resume.refused"]
    assert refusals == [
        "session not dropped",
        "another caller",
        "token used or wrong",
        "token used or wrong",
        "resume window passed",
    ]
