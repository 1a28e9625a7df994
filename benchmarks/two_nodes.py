"""Two nodes, for real: calls on a multi-node Ray (benchmarks/multi_node.py) outlive the node
that holds their session actor, are steered from another driver, and a PIN lockout holds
across nodes.

    .venv/bin/python benchmarks/two_nodes.py [--json PATH]

1. demo-alice signs in; the node of her session actor is removed mid-call; her next turn is
   answered signed in (`turn.metrics.restored`) by an actor restored on the other session node.
2. `voice-agent session say` and `session close`, each a separate process attached to the
   cluster, reach that call: the caller hears the words, then gets `session.ended`.
3. A third session node joins. demo-bob is locked out by wrong PINs on a call whose actor is on
   one node; that node is removed; his next call, its actor on another node, is refused as
   locked; `voice-agent customers unlock` (outside the cluster, on the store) finds the lock and
   lifts it, and Bob signs in.

Any check that fails stops the run with an AssertionError (exit 1). Starts its own cluster,
Redis and platform on free loopback ports and stops them after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve_app import local_ray  # noqa: E402

# Before Ray is imported (it reads both once): token auth as `voice-agent up` runs Ray, and every
# node on 127.0.0.1 (the loopback switch makes Ray keep a 127.0.0.1 address as it is).
os.environ["RAY_AUTH_MODE"] = "token"
local_ray.cli_env()

from benchmarks.multi_node import Platform, multi_node_platform  # noqa: E402
from models.state import now_ms  # noqa: E402
from serve_app.call import CallClient  # noqa: E402

SAID = "Your refund has been approved."


async def typed(client: CallClient, text: str) -> list[dict]:
    mark = len(client.events)
    await client.send_json({"type": "text", "text": text})
    await client.wait_for(lambda: client.agent_idle_since(mark) or client.closed, 60)
    return client.events[mark:]


def said(events) -> str:
    return " ".join(e["text"] for e in events if e["type"] == "agent.text")


async def call(platform: Platform, caller_id: str) -> CallClient:
    client = CallClient(platform.ws, caller_id)
    await client.connect()
    await client.wait_for(lambda: any(e.get("state") == "listening" for e in client.events), 60)
    return client


def stored(platform: Platform, session_id: str):
    from deployments.session.redis_store import RedisSessionStore

    store = RedisSessionStore(platform.store_url)
    try:
        return store.load(session_id)
    finally:
        store.close()


def shared_lock(platform: Platform, customer_id: str) -> float | None:
    """The customer's lock as the Redis store's customers part holds it (what every node reads)."""
    from deployments.state import redis_state

    state = redis_state(platform.store_url)
    try:
        customer = state.customers.get(customer_id)
        return None if customer is None else customer.locked_until
    finally:
        state.close()


async def cli(platform: Platform, *args: str) -> tuple[int, str]:
    """`voice-agent ARGS` in a process of its own (its own Ray driver, when it needs one)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "serve_app",
        *args,
        cwd=ROOT,
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode()


async def node_lost(platform: Platform, figures: dict) -> CallClient:
    client = await call(platform, "demo-alice")
    assert "PIN" in said(await typed(client, "where is my order"))
    assert "Alice" in said(await typed(client, "1234"))
    sid = client.session["session_id"]
    first = platform.actor_node(sid)
    other = next(n for n in platform.session_nodes if n != first)
    t0, wall0 = time.monotonic(), now_ms()
    platform.remove(first)
    figures["remove_node_s"] = round(time.monotonic() - t0, 2)
    mark = len(client.events)
    await client.send_json({"type": "text", "text": "where is order 10042"})
    await client.wait_for(lambda: any(e["type"] == "agent.text" for e in client.events[mark:]), 60)
    figures["removed_to_next_turn_answered_s"] = round(time.monotonic() - t0, 2)
    await client.wait_for(lambda: client.agent_idle_since(mark), 60)
    events = client.events[mark:]
    reply = said(events)
    assert "PIN" not in reply and "shipped" in reply, reply  # still signed in: memory intact
    assert [e for e in events if e["type"] == "turn.metrics"][-1].get("restored") is True, events
    assert not client.closed and not client.of_type("session.ended")
    assert platform.actor_node(sid) == other, "the restored actor is not on the other session node"
    state = stored(platform, sid)
    restored_at = next(e.at_ms for e in state.events if e.kind == "session.restored")
    figures["removed_to_actor_restored_s"] = round((restored_at - wall0) / 1000, 2)
    assert state.authenticated and [t.turn_id for t in state.turns][:4] == [0, 1, 2, 3], state.turns
    return client


async def steered_from_another_driver(platform: Platform, client: CallClient, figures: dict) -> None:
    sid, mark, t0 = client.session["session_id"], len(client.events), time.monotonic()
    code, out = await cli(platform, "session", "say", sid, SAID, "--address", platform.address)
    assert code == 0, out
    heard = await client.silence_until(lambda: any(e.get("text") == SAID for e in client.events[mark:]), 30)
    assert heard, f"{out.strip()!r}; the caller got {client.events[mark:]}"
    figures["session_say_heard_s"] = round(time.monotonic() - t0, 2)
    await client.silence_until(lambda: client.agent_idle_since(mark), 30)
    t0 = time.monotonic()
    code, out = await cli(platform, "session", "close", sid, "--address", platform.address)
    assert code == 0, out
    assert await client.silence_until(lambda: client.closed, 30), client.events[mark:]
    figures["session_close_ended_s"] = round(time.monotonic() - t0, 2)
    assert client.of_type("session.ended")[-1]["reason"] == "closed", client.events[-3:]


async def pin_until_locked(client: CallClient) -> list[dict]:
    assert "PIN" in said(await typed(client, "where is my order"))
    for pin in ("1111", "2222", "3333"):
        events = await typed(client, pin)
        if any(e["type"] == "escalation" for e in events):
            return events
    raise AssertionError(f"three wrong PINs did not lock: {said(events)}")


async def lockout_across_nodes(platform: Platform, figures: dict) -> None:
    platform.add_session_node()
    locking = await call(platform, "demo-bob")
    locked_on = platform.actor_node(locking.session["session_id"])
    events = await pin_until_locked(locking)
    assert [e["reason"] for e in events if e["type"] == "escalation"] == ["auth_locked"], events
    await locking.wait_for(lambda: locking.closed, 30)
    lock = shared_lock(platform, "cust-demo-bob")
    assert lock is not None and lock > time.time(), "the lock is in the cluster's Redis store, not a node's file"
    platform.remove(locked_on)  # whatever that node kept is gone with it

    refused = await call(platform, "demo-bob")
    refused_on = platform.actor_node(refused.session["session_id"])
    assert refused_on != locked_on and refused_on in platform.session_nodes
    assert "PIN" in said(await typed(refused, "where is my order"))
    events = await typed(refused, "4321")  # Bob's right PIN: refused unchecked while locked
    assert [e["reason"] for e in events if e["type"] == "escalation"] == ["auth_locked"], said(events)
    assert "Too many wrong PINs" in said(events) and "Bob" not in said(events)
    await refused.wait_for(lambda: refused.closed, 30)

    code, out = await cli(platform, "customers", "unlock", "demo-bob")  # the store, not the cluster
    assert code == 0 and ": unlocked" in out, out  # the lock was in the shared store
    signed_in = await call(platform, "demo-bob")
    assert "PIN" in said(await typed(signed_in, "where is my order"))
    assert "Bob" in said(await typed(signed_in, "4321"))
    await signed_in.hangup()
    figures["lockout_nodes"] = [locked_on[:8], refused_on[:8]]


async def run(platform: Platform) -> dict:
    figures: dict = {}
    client = await node_lost(platform, figures)
    print(f"1. node lost mid-call, the call went on: {figures}", flush=True)
    await steered_from_another_driver(platform, client, figures)
    print("2. say and close reached the call from another driver", flush=True)
    await lockout_across_nodes(platform, figures)
    print("3. the lockout held across nodes", flush=True)
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    t0 = time.monotonic()
    with multi_node_platform(session_nodes=2) as platform:
        up_s = time.monotonic() - t0
        figures = asyncio.run(run(platform))
    figures["platform_up_s"] = round(up_s, 1)
    print(f"platform up on head + 2 session nodes in {up_s:.0f} s")
    print(f"node removed -> next turn answered     {figures['removed_to_next_turn_answered_s']:6.2f} s")
    print(f"node removed -> actor restored         {figures['removed_to_actor_restored_s']:6.2f} s")
    print(f"  (remove_node itself: {figures['remove_node_s']:.2f} s)")
    print(f"session say (another driver) -> heard  {figures['session_say_heard_s']:6.2f} s")
    print(f"session close -> session.ended         {figures['session_close_ended_s']:6.2f} s")
    print(f"lockout made on node {figures['lockout_nodes'][0]}, held on node {figures['lockout_nodes'][1]}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
