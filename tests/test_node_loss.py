"""A lost node takes its session actors with it, the warm ones and any replacement placed on it
before Ray knows it is gone (in-process: the real actor class behind a shim that can die; the
platform on a real multi-node Ray is tests/test_two_nodes.py)."""

from __future__ import annotations

import asyncio

from ray.exceptions import ActorDiedError

from models.dialogue import TurnSummary
from models.session import TurnRecord
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines
from serve_app.session_pool import SessionPool
from tests.call_fakes import FakeDialogue, fresh_actor, session_actor


class WarmActor:
    """A pre-started actor as the pool sees it: `live`, `dead` (its node gone) or `silent`
    (its node going, not yet known to be gone)."""

    def __init__(self, state: str):
        self.state = state
        outer = self

        class _Ping:
            @staticmethod
            def remote():
                async def answer():
                    if outer.state == "dead":
                        raise ActorDiedError()
                    if outer.state == "silent":
                        await asyncio.Event().wait()
                    return 1

                return asyncio.ensure_future(answer())

        self.ping = _Ping


def _pool(monkeypatch, warm: list) -> tuple[SessionPool, list, list]:
    killed, spawned = [], []
    monkeypatch.setattr("serve_app.warm_supply.ray.kill", lambda actor, no_restart: killed.append(actor))
    pool = SessionPool(lambda: None, warm=0, max_active=5, start_timeout_s=0.2)

    async def spawn():
        spawned.append(WarmActor("live"))
        return spawned[-1]

    pool._spawn = spawn
    pool._warm = list(warm)
    return pool, killed, spawned


async def test_warm_actors_lost_with_their_node_are_dropped_not_handed_to_a_call(monkeypatch):
    live, dead, silent = WarmActor("live"), WarmActor("dead"), WarmActor("silent")
    pool, killed, spawned = _pool(monkeypatch, [live, silent, dead])
    assert await pool.acquire() is live  # the dead one (no answer) and the silent one (2 s at most) dropped
    assert killed == [dead, silent] and not spawned and pool.warm == 0
    fresh = await pool.replace(live)  # none warm left: a new one
    assert fresh is spawned[0] and killed == [dead, silent, live] and pool.active == 1
    pool._renew_task.cancel()
    pool._refill_task.cancel()


def _record(turn_id: int) -> TurnRecord:
    return TurnRecord(turn_id=turn_id, source="text", transcript="hello", summary=TurnSummary(intent="greeting"))


def _client(first, respawn) -> SessionClient:
    return SessionClient(first, first.dialogue, first.obj._engine.context(), Deadlines(actor_start_s=1.0), respawn)


def _bank(text, memory, run_ahead):
    return ["Hello."], {"intent": "greeting", "memory": memory}


async def test_a_replacement_placed_on_the_dying_node_is_handed_back_and_another_placed(tmp_path, monkeypatch):
    first = session_actor(FakeDialogue(_bank), tmp_path, monkeypatch)
    doomed, good = fresh_actor(tmp_path, monkeypatch), fresh_actor(tmp_path, monkeypatch)
    doomed.kill()  # placed on the node being removed: dies at its first call
    given, handed_back = iter([doomed, good]), []

    async def respawn(dead):  # the pool's replace: kills what it is handed, gives a live actor
        handed_back.append(dead)
        return next(given)

    client = _client(first, respawn)
    first.kill()
    recorded = await client.record(_record(1))
    assert recorded is not None and not recorded.stale
    assert handed_back == [first, doomed] and client.actor is good and client.restored
    assert [t.turn_id for t in good.obj._engine.state.turns] == [1]


async def test_placing_goes_on_while_no_actor_can_be_placed_then_gives_up(tmp_path, monkeypatch):
    first = session_actor(FakeDialogue(_bank), tmp_path, monkeypatch)
    good = fresh_actor(tmp_path, monkeypatch)
    tries = []

    async def respawn(dead):
        tries.append(dead)
        if len(tries) < 3:
            raise TimeoutError("session actor start took longer than 1 s")
        return good

    client = _client(first, respawn)
    first.kill()
    assert await client.record(_record(1)) is not None and client.actor is good and len(tries) == 3

    client.place_s = 0.2  # a cluster with nowhere to place one: the call's records fail, it is not held forever
    tries.clear()
    good.kill()
    assert await client.record(_record(2)) is None and len(tries) >= 1
    given_up_after = len(tries)
    assert await client.record(_record(3)) is None and len(tries) == given_up_after  # one revive per death


async def test_a_restore_that_fails_is_not_retried_and_its_actor_is_killed(tmp_path, monkeypatch):
    killed = []
    monkeypatch.setattr("serve_app.conversation.session_client.ray.kill", lambda a, no_restart: killed.append(a))
    first = session_actor(FakeDialogue(_bank), tmp_path, monkeypatch)
    elsewhere = fresh_actor(tmp_path / "other", monkeypatch)  # its store has no checkpoint of this call
    handed_back = []

    async def respawn(dead):
        handed_back.append(dead)
        return elsewhere

    client = _client(first, respawn)
    first.kill()
    assert await client.record(_record(1)) is None
    assert handed_back == [first] and killed == [elsewhere] and client.actor is elsewhere
    elsewhere.kill()
    assert await client.record(_record(2)) is None and handed_back == [first]  # no second revive


async def test_a_call_released_during_its_revive_is_not_revived_again(tmp_path, monkeypatch):
    first = session_actor(FakeDialogue(_bank), tmp_path, monkeypatch)
    good = fresh_actor(tmp_path, monkeypatch)
    placing, handed_back = asyncio.Event(), []

    async def respawn(dead):
        handed_back.append(dead)
        await placing.wait()
        return good

    discarded = []
    client = SessionClient(first, first.dialogue, first.obj._engine.context(), Deadlines(), respawn, discarded.append)
    first.kill()
    recording = asyncio.create_task(client.record(_record(1)))
    await asyncio.sleep(0.05)
    client.close()  # the line is given back (with the dead actor) while the replacement is being placed
    placing.set()
    assert await recording is None
    assert discarded == [good] and client.actor is first  # the new one does not outlive the call
    assert await client.record(_record(2)) is None and handed_back == [first]
