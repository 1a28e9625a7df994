"""Calls that survive on the real platform: a session actor killed mid-call is replaced from
its last checkpoint and the caller's next turn is answered with memory intact."""

import time

import pytest
import websockets

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
    ray.kill(first.actor, no_restart=True)  # the Ray handle behind the line

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


async def refused(platform, caller_id: str, token: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as exc:
        await open_call(platform, caller_id, resume=token)
    return exc.value.response.status_code


async def test_a_dropped_call_resumes_with_its_token_and_goes_on_signed_in(platform):
    client = await open_call(platform, "demo-alice")
    await wait_greeting_done(client)
    assert "PIN" in said(await typed(client, "where is my order"))
    assert "Alice" in said(await typed(client, "1234"))
    sid, token = client.session["session_id"], client.session["resume_token"]
    await client.close()  # the network goes away: no hangup
    # dialled at once, before the server noticed the drop: it waits for the hold, then decides
    assert await refused(platform, "demo-bob", token) == 403  # bound to its caller
    assert stored(platform, sid).dropped_at_ms is not None
    assert await refused(platform, "demo-alice", f"{'0' * 32}.{token.split('.')[1]}") == 403  # another session
    back = await open_call(platform, "demo-alice", resume=token)
    started = back.session
    assert started["session_id"] == sid and started["resumed"] is True and started["resume_token"] != token
    reply = said(await typed(back, "where is order 10042"))
    assert "PIN" not in reply and "shipped" in reply, reply  # still signed in
    assert not [e for e in back.events if e["type"] == "agent.text" and e["turn_id"] == 0]  # no second greeting
    assert await refused(platform, "demo-alice", token) == 403  # single use
    await back.hangup()
    state = stored(platform, sid)
    assert [t.turn_id for t in state.turns] == [0, 1, 2, 3] and state.end_reason == "hangup"
    assert [e.kind for e in state.events if e.kind in ("caller.dropped", "session.resumed")] == [
        "caller.dropped",
        "session.resumed",
    ]
