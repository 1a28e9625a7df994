"""Every stage of a call has a deadline: a hung dialogue, greeting, TTS or session actor costs
the caller a fallback sentence or an error event, never the line (in-process, no Ray)."""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_app.conversation.turns import FALLBACK_GREETING, SORRY_DIALOGUE
from serve_app.deadlines import StageTimeout, first_within, within
from serve_app.session_pool import SessionPool
from tests.call_fakes import GREETING, FakeDialogue, FakeWS, fake_tts, handler, session_actor, settings

FAST = dict(
    greeting_timeout_ms=200,
    dialogue_timeout_ms=200,
    tts_first_audio_timeout_ms=200,
    actor_call_timeout_ms=200,
    checkpoint_timeout_ms=200,
)


def hours(text, memory, run_ahead):
    return ["We're open nine to five."], {"intent": "hours", "memory": memory}


async def start(ws, actor, **overrides):
    h = handler(ws, actor, settings(**{**FAST, **overrides}))
    task = asyncio.create_task(h.run())
    await ws.idle()
    return h, task


async def typed(ws, text, timeout=2.0):
    mark = len(ws.events)
    ws.text({"type": "text", "text": text})
    await ws.wait(lambda: any(e["type"] == "agent.state" and e["state"] == "thinking" for e in ws.events[mark:]))
    await ws.idle(mark, timeout)
    return ws.events[mark:]


async def test_a_stuck_dialogue_turn_gets_a_fallback_and_the_call_goes_on(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours, hang_on="stuck"), tmp_path, monkeypatch)
    _, task = await start(ws, actor)
    t0 = time.monotonic()
    events = await typed(ws, "stuck")
    assert time.monotonic() - t0 < 1.0
    assert [e["code"] for e in events if e["type"] == "error"] == ["dialogue_failed"]
    assert [e["text"] for e in events if e["type"] == "agent.text"] == [SORRY_DIALOGUE]
    events = await typed(ws, "when are you open")  # the call goes on
    assert [e["text"] for e in events if e["type"] == "agent.text"] == ["We're open nine to five."]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 1) == "hangup" and ws.close_code == 1000


async def test_hang_up_during_a_stuck_turn_ends_the_call_within_the_checkpoint_deadline(tmp_path, monkeypatch):
    """The whole actor hangs (a stopped or CPU-bound process): the final checkpoint is given
    up after its deadline, so the Gateway's release (which kills the actor) runs at once."""
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    h, task = await start(ws, actor)
    actor.freeze()
    ws.text({"type": "text", "text": "when are you open"})
    await ws.wait(lambda: ws.of("agent.state", state="thinking"))
    await asyncio.sleep(0.1)  # the turn is stuck in the actor
    t0 = time.monotonic()
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"
    assert time.monotonic() - t0 < 0.5  # checkpoint deadline (0.2 s) and a little
    assert not h.finalized and ws.of("session.ended", reason="hangup")
    await h.checkpoint_final("hangup")  # what the Gateway calls before release: tried once, not again
    assert actor.calls.count("finalize") == 1


async def test_a_stuck_greeting_is_replaced_by_a_fallback_greeting(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours, hang_on=GREETING), tmp_path, monkeypatch)
    h = handler(ws, actor, settings(**FAST))
    task = asyncio.create_task(h.run())
    await ws.idle(timeout=1.0)
    assert [e["text"] for e in ws.of("agent.text")] == [FALLBACK_GREETING]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 1) == "hangup"


async def test_a_stuck_session_actor_does_not_hold_up_what_the_caller_hears(tmp_path, monkeypatch):
    """Replies stream from the Dialogue, not through the actor: a frozen actor costs only its
    records (each given up at its deadline), never the greeting or an answer."""
    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    actor.freeze()
    h = handler(ws, actor, settings(**{**FAST, "actor_call_timeout_ms": 50, "checkpoint_timeout_ms": 50}))
    task = asyncio.create_task(h.run())
    await ws.idle(timeout=2.0)
    events = await typed(ws, "when are you open")
    assert [e["text"] for e in ws.of("agent.text")] == ["Hello.", "We're open nine to five."]
    assert not [e for e in events if e["type"] == "error"]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


async def test_tts_without_first_audio_in_time_sends_the_text_and_an_error(tmp_path, monkeypatch):
    async def tts(text, rate, locale="en-US", first=False):
        if text.startswith("We're open"):
            await asyncio.Event().wait()
        async for chunk in fake_tts(text, rate):
            yield chunk

    ws, actor = FakeWS(), session_actor(FakeDialogue(hours), tmp_path, monkeypatch)
    h = handler(ws, actor, settings(**FAST), synthesize=tts)
    task = asyncio.create_task(h.run())
    await ws.idle()
    events = await typed(ws, "when are you open")
    assert [e["code"] for e in events if e["type"] == "error"] == ["tts_failed"]
    assert [e["text"] for e in events if e["type"] == "agent.text"] == ["We're open nine to five."]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 1) == "hangup"


async def test_deadline_helpers():
    with pytest.raises(StageTimeout, match="dialogue took longer than 0.05 s"):
        await within(asyncio.sleep(1), 0.05, "dialogue")
    assert await within(asyncio.sleep(0, "ok"), 0.05, "x") == "ok"

    async def late_first():
        await asyncio.sleep(1)
        yield b"x"

    with pytest.raises(StageTimeout):
        async for _ in first_within(late_first(), 0.05, "tts first audio"):
            pass


async def test_a_session_actor_that_never_starts_is_given_up_and_killed(monkeypatch):
    killed = []
    monkeypatch.setattr("serve_app.warm_supply.ray.kill", lambda actor, no_restart: killed.append(actor))

    class Hung:
        class ping:
            @staticmethod
            def remote():
                return asyncio.Event().wait()

    pool = SessionPool(Hung, warm=0, max_active=2, start_timeout_s=0.05)
    with pytest.raises(StageTimeout):
        await pool.acquire()
    assert pool.active == 0 and len(killed) == 1


async def test_within_never_swallows_a_cancellation_that_races_completion():
    """wait_for (Python 3.11) returns the result when the awaited call completes in the same
    moment as a cancellation; `within` raises the cancellation all the same."""
    import asyncio

    from serve_app.deadlines import within

    fut = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(within(fut, 5, "race"))
    await asyncio.sleep(0)
    fut.set_result(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await within(asyncio.sleep(0, result=2), 5, "plain") == 2
