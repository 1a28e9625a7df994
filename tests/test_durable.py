"""Calls that survive on the real platform: a session actor killed mid-call is replaced from
its last checkpoint and the caller's next turn is answered with memory intact."""

import time

import pytest

from tests.test_call import open_call, stored, wait_greeting_done

pytestmark = pytest.mark.platform


async def typed(client, text: str) -> list[dict]:
    mark = len(client.events)
    await client.send_json({"type": "text", "text": text})
    await client.wait_for(lambda: client.agent_idle_since(mark), 60)
    return client.events[mark:]


def said(events) -> str:
    return " ".join(e["text"] for e in events if e["type"] == "agent.text")


async def test_a_killed_session_actor_is_replaced_and_the_call_goes_on(platform):
    import ray

    from serve_app.session_api import session_actor

    client = await open_call(platform, "demo-alice")
    await wait_greeting_done(client)
    assert "PIN" in said(await typed(client, "where is my order"))
    assert "Alice" in said(await typed(client, "1234"))
    sid = client.session["session_id"]
    first = session_actor(sid, platform["store"])
    killed_at = time.monotonic()
    ray.kill(first, no_restart=True)

    events = await typed(client, "where is order 10042")
    answered_in = time.monotonic() - killed_at
    reply = said(events)
    assert "PIN" not in reply and "shipped" in reply, reply  # still signed in: no second PIN
    metrics = [e for e in events if e["type"] == "turn.metrics"][-1]
    assert metrics["restored"] is True, metrics
    assert not client.closed and not client.of_type("session.ended")
    state = stored(platform, sid)
    assert state.authenticated and "session.restored" in [e.kind for e in state.events]
    assert [t.turn_id for t in state.turns] == [0, 1, 2, 3]  # nothing lost, nothing twice
    assert session_actor(sid, platform["store"]) is not None  # the session API finds the new actor
    await client.hangup()
    assert answered_in < 10, answered_in
