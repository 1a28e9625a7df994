"""The tool router over the state store's parts, on SQLite and on a real redis-server: an
idempotent tool answered from the cache within its TTL (never an error), a side effect run once
per turn through the workflow journal, by one worker or two (two Dialogue replicas sharing the
store), and a retried confirmation turn that opens no second return."""

from __future__ import annotations

import asyncio

import pytest

from deployments.dialogue.support import SupportAgent
from deployments.dialogue.tools import support_router
from deployments.policy.engine import PolicyEngine
from deployments.tools.router import ToolError, ToolRouter, ToolSpec, per_turn
from deployments.tools.support_store import SupportStore
from tests.test_tools import LocalBreaker

ORDER = {"customer_id": "cust-demo-alice", "order_id": "10042"}
RETURN = {**ORDER, "reason": "too small"}


class Backend:
    """A tool that counts its calls; it may take a while, refuse or fail."""

    def __init__(self, delay_s: float = 0.0, refuse: bool = False, fail: bool = False):
        self.calls, self.delay_s, self.refuse, self.fail = 0, delay_s, refuse, fail

    async def __call__(self, **args) -> dict:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.refuse:
            raise ToolError("not_found", {"hint": "check the number"})
        if self.fail:
            raise ConnectionError("backend down")
        return {"call": self.calls, **args}


def lookup(backend: Backend, ttl_s: float = 1.0) -> list[ToolSpec]:
    return [ToolSpec("order_status", backend, idempotent=True, retries=0, cache_ttl_s=ttl_s)]


def side_effect(backend: Backend) -> list[ToolSpec]:
    return [ToolSpec("create_return", backend, idempotent=False, deadline_s=5, idempotency_key=per_turn)]


async def test_a_cached_answer_within_its_ttl_then_live_again(make_state):
    state, backend = make_state(), Backend()
    router = ToolRouter(lookup(backend), LocalBreaker(), state)
    first = await router.call("order_status", ORDER, "s1")
    again = await ToolRouter(lookup(backend), LocalBreaker(), make_state()).call("order_status", ORDER, "s2")
    other = await router.call("order_status", {**ORDER, "order_id": "10043"}, "s1")
    assert (first.source, again.source, other.source) == ("live", "cache", "live")
    assert again.ok and again.output == first.output and again.attempts == 0 and backend.calls == 2
    assert '"source": "cache"' in state.audit.read("s2")[0]["detail"]
    await asyncio.sleep(1.2)
    late = await router.call("order_status", ORDER, "s3")
    assert late.source == "live" and backend.calls == 3


async def test_errors_are_never_cached(make_state):
    state = make_state()
    for backend, error in ((Backend(refuse=True), "not_found"), (Backend(fail=True), "error: ConnectionError")):
        router = ToolRouter(lookup(backend, ttl_s=60), LocalBreaker(), state)
        results = [await router.call("order_status", ORDER, "s1") for _ in range(2)]
        assert [(r.error, r.source) for r in results] == [(error, "live")] * 2 and backend.calls == 2


async def test_a_side_effect_runs_once_per_turn_across_workers(make_state):
    backend = Backend()
    one = ToolRouter(side_effect(backend), LocalBreaker(), make_state())
    other = ToolRouter(side_effect(backend), LocalBreaker(), make_state())  # another Dialogue replica
    first = await one.call("create_return", RETURN, "s1", turn_id=4)
    retried = await other.call("create_return", RETURN, "s1", turn_id=4)  # the turn again: its actor died
    assert first.source == "live" and first.ok and backend.calls == 1
    assert retried.source == "journal" and retried.ok and retried.output == first.output
    next_turn = await other.call("create_return", RETURN, "s1", turn_id=5)
    other_call = await other.call("create_return", RETURN, "s2", turn_id=4)
    assert (next_turn.source, other_call.source, backend.calls) == ("live", "live", 3)


async def test_a_retry_while_the_first_run_is_pending_never_runs_it(make_state):
    backend = Backend(delay_s=1.0)
    one = ToolRouter(side_effect(backend), LocalBreaker(), make_state())
    impatient = ToolRouter(side_effect(backend), LocalBreaker(), make_state(), wait_s=0.2)
    patient = ToolRouter(side_effect(backend), LocalBreaker(), make_state(), wait_s=3.0)
    running = asyncio.ensure_future(one.call("create_return", RETURN, "s1", turn_id=1))
    await asyncio.sleep(0.2)
    waited = asyncio.ensure_future(patient.call("create_return", RETURN, "s1", turn_id=1))
    soon = await impatient.call("create_return", RETURN, "s1", turn_id=1)
    assert (soon.ok, soon.error, soon.source) == (False, "in_progress", "journal")
    first, late = await running, await waited
    assert first.ok and late.ok and late.source == "journal" and late.output == first.output
    assert backend.calls == 1


async def test_a_refusal_is_journaled_and_a_failure_gives_the_key_back(make_state):
    refusing, failing = Backend(refuse=True), Backend(fail=True)
    router = ToolRouter(side_effect(refusing), LocalBreaker(), make_state())
    answers = [await router.call("create_return", RETURN, "s1", turn_id=1) for _ in range(2)]
    assert [(r.error, r.source) for r in answers] == [("not_found", "live"), ("not_found", "journal")]
    assert answers[1].output == {"hint": "check the number"} and refusing.calls == 1
    router = ToolRouter(side_effect(failing), LocalBreaker(), make_state())
    answers = [await router.call("create_return", RETURN, "s2", turn_id=1) for _ in range(2)]
    assert [r.source for r in answers] == ["live", "live"] and failing.calls == 2  # nothing was changed: again


async def test_a_cancelled_turn_still_journals_its_side_effect(make_state):
    backend = Backend(delay_s=0.5)
    state = make_state()
    router = ToolRouter(side_effect(backend), LocalBreaker(), state)
    turn = asyncio.ensure_future(router.call("create_return", RETURN, "s1", turn_id=2))
    await asyncio.sleep(0.1)
    turn.cancel()  # the turn's deadline, or the caller hung up
    with pytest.raises(asyncio.CancelledError):
        await turn
    await asyncio.sleep(0.8)
    retried = await ToolRouter(side_effect(backend), LocalBreaker(), make_state()).call(
        "create_return", RETURN, "s1", turn_id=2
    )
    assert retried.ok and retried.source == "journal" and backend.calls == 1


async def test_without_the_journal_a_side_effect_is_refused(tmp_path):
    from deployments.state import sqlite_state

    backend, state = Backend(), sqlite_state(tmp_path / "state.db")
    router = ToolRouter(side_effect(backend), LocalBreaker(), state)
    state.close()  # the store is gone
    result = await router.call("create_return", RETURN, "s1", turn_id=1)
    assert (result.ok, result.error, backend.calls) == (False, "journal_unavailable", 0)


class CountingStore(SupportStore):
    """The support backend, counting the returns it is asked to open (slowly)."""

    opened, delay_s = 0, 0.3

    def create_return(self, *args, **kwargs):
        import time

        CountingStore.opened += 1
        time.sleep(self.delay_s)
        return super().create_return(*args, **kwargs)


async def test_a_confirmation_turn_retried_after_its_actor_died_opens_one_return(make_state, tmp_path):
    """Two Dialogue replicas get the same turn (same session, same turn id, the memory of the
    checkpoint before it): the second says the first's reference, or that it is being opened."""

    async def classify(text):
        return "returns", 0.9

    store = CountingStore(tmp_path / "support.db")
    CountingStore.opened = 0
    agents = [SupportAgent(classify, support_router(store, make_state(), LocalBreaker()), None, PolicyEngine(3))]
    agents.append(SupportAgent(classify, support_router(store, make_state(), LocalBreaker()), None, PolicyEngine(3)))
    workflow = {"name": "return", "step": "confirm", "order_id": "10042", "item": "running shoes", "reason": "small"}
    memory = {"authenticated": True, "customer_id": "cust-demo-alice", "customer_name": "Alice"}
    memory["slots"] = {"workflow": workflow}
    first = await agents[0].respond("yes please", memory, "s8", "demo-alice", turn_id=6)
    retried = await agents[1].respond("yes please", memory, "s8", "demo-alice", turn_id=6)
    assert "return reference" in " ".join(first.sentences) and first.sentences == retried.sentences
    assert [t.source for t in retried.tool_results] == ["journal"] and CountingStore.opened == 1
    store.delay_s = 1.5  # longer than a retry waits (1 s): it hears that the return is being opened
    racing = [agents[0].respond("yes", memory, "s9", "demo-alice", turn_id=3)]
    racing.append(agents[1].respond("yes", memory, "s9", "demo-alice", turn_id=3))
    both = await asyncio.gather(*racing)
    said = sorted(" ".join(r.sentences) for r in both)
    assert "return reference" in said[0] and "being opened right now" in said[1], said
    assert CountingStore.opened == 2  # one per session: s8, s9
