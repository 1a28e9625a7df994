import asyncio

import pytest

from deployments.state import sqlite_state
from deployments.tools.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from deployments.tools.router import ToolError, ToolRouter, ToolSpec
from deployments.tools.support_store import SupportStore


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_breaker_state_machine():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, recovery_s=30, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record(False)
    assert b.state == CLOSED
    b.record(False)
    assert b.state == OPEN and not b.allow()
    clock.t = 29.9
    assert not b.allow()
    clock.t = 30
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # one trial at a time
    b.record(False)
    assert b.state == OPEN and b.snapshot()["retry_in_s"] == 30
    clock.t = 60
    assert b.allow()
    b.record(True)
    assert b.state == CLOSED and b.failures == 0 and b.allow()


class LocalBreaker:
    def __init__(self, **kw):
        self.b = CircuitBreaker(**kw)

    async def allow(self, tool):
        return self.b.allow()

    async def record(self, tool, ok):
        self.b.record(ok)


class FlakyBackend:
    def __init__(self, fail_times=0, hang=False, refuse=False):
        self.calls, self.fail_times, self.hang, self.refuse = 0, fail_times, hang, refuse

    async def __call__(self, **kw):
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        if self.refuse:
            raise ToolError("not_found")
        if self.calls <= self.fail_times:
            raise ConnectionError("backend down")
        return {"ok": True, **kw}


@pytest.fixture
def store(tmp_path):
    return SupportStore(tmp_path / "support.db")


@pytest.fixture
def state(tmp_path):
    return sqlite_state(tmp_path / "state.db")


async def test_idempotent_tool_is_retried_until_it_answers(state):
    backend = FlakyBackend(fail_times=2)
    router = ToolRouter(
        [ToolSpec("lookup", backend, idempotent=True, retries=2, backoff_s=0.01)], LocalBreaker(), state
    )
    result = await router.call("lookup", {"order_id": "1"}, "s1")
    assert result.ok and result.attempts == 3 and backend.calls == 3
    assert state.audit.read("s1")[0]["outcome"] == "ok"


async def test_side_effecting_tool_is_never_retried(state):
    backend = FlakyBackend(fail_times=1)
    router = ToolRouter(
        [ToolSpec("refund", backend, idempotent=False, retries=5, backoff_s=0.01)], LocalBreaker(), state
    )
    result = await router.call("refund", {}, "s2")
    assert not result.ok and backend.calls == 1 and result.error.startswith("error")


async def test_deadline_cuts_a_hanging_tool(state):
    router = ToolRouter(
        [ToolSpec("slow", FlakyBackend(hang=True), idempotent=True, deadline_s=0.05, retries=1, backoff_s=0.01)],
        LocalBreaker(),
        state,
    )
    t0 = asyncio.get_running_loop().time()
    result = await router.call("slow", {}, "s3")
    assert result.error == "deadline_exceeded" and result.attempts == 2
    assert asyncio.get_running_loop().time() - t0 < 1.0


async def test_a_tool_saying_no_is_not_a_failure(state):
    breaker = LocalBreaker(failure_threshold=1)
    router = ToolRouter([ToolSpec("lookup", FlakyBackend(refuse=True), idempotent=True)], breaker, state)
    result = await router.call("lookup", {}, "s4")
    assert result.error == "not_found" and result.attempts == 1 and breaker.b.state == CLOSED


async def test_open_breaker_short_circuits(state):
    backend = FlakyBackend(fail_times=100)
    breaker = LocalBreaker(failure_threshold=2, recovery_s=60)
    router = ToolRouter([ToolSpec("lookup", backend, idempotent=True, retries=5, backoff_s=0.0)], breaker, state)
    first = await router.call("lookup", {}, "s5")
    assert first.error == "circuit_open" and backend.calls == 2
    second = await router.call("lookup", {}, "s5")
    assert second.error == "circuit_open" and second.attempts == 0 and backend.calls == 2
    assert [a["outcome"] for a in state.audit.read("s5")] == ["circuit_open", "circuit_open"]


def test_pins_are_hashed_and_checked(store, tmp_path):
    import sqlite3

    assert store.match_pin("demo-alice", "1234") == ({"customer_id": "cust-demo-alice", "name": "Alice"}, True)
    assert store.match_pin("demo-alice", "1235")[1] is False
    assert store.match_pin("nobody", "1234") is None
    raw = sqlite3.connect(tmp_path / "support.db").execute("SELECT pin_hash FROM customers").fetchall()
    assert all(b"1234" not in r[0] and len(r[0]) == 32 for r in raw)


def test_orders_are_only_the_customers_own(store):
    alice = store.customer("demo-alice")["customer_id"]
    assert store.order(alice, "10042")["status"] == "shipped"
    assert store.order(alice, "20077") is None  # Bob's
    assert [o["order_id"] for o in store.orders(alice)] == ["10042", "10043"]


def test_audit_is_masked(state):
    state.audit.record("s6", "escalation", "human", "caller said 4111 1111 1111 1111", 0.0, {"email": "a@b.com"})
    row = state.audit.read("s6")[0]
    assert "4111" not in row["outcome"] and "a@b.com" not in row["detail"]


def test_a_half_open_trial_never_reported_counts_as_a_failure():
    """The trial's call hung up (or its turn was cancelled) before recording: without a
    deadline the tool would stay refused for every call in the cluster."""
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, recovery_s=30, clock=clock, trial_timeout_s=10)
    b.record(False)
    clock.t = 30
    assert b.allow() and b.state == HALF_OPEN  # the trial goes out, and is never reported
    clock.t = 39.9
    assert not b.allow() and b.state == HALF_OPEN
    clock.t = 40
    assert b.snapshot() == {"state": OPEN, "failures": 2, "retry_in_s": 30}  # open again, as /admin/breakers shows
    assert not b.allow()
    clock.t = 70
    assert b.allow() and not b.allow()  # a new trial, one at a time
    b.record(True)
    assert b.state == CLOSED and b.allow()


class SlowStore(SupportStore):
    """A store whose writes take longer than the tool's deadline (a busy disk, a locked file)."""

    def create_return(self, *args, **kwargs):
        import time

        time.sleep(0.4)
        return super().create_return(*args, **kwargs)


def _slow_return_router(tmp_path, deadline_s=0.05):
    from deployments.dialogue.tools import support_router

    store, state = SlowStore(tmp_path / "slow.db"), sqlite_state(tmp_path / "state.db")
    router = support_router(store, state, LocalBreaker())
    router.spec("create_return").deadline_s = deadline_s
    return store, state, router


RETURN_ARGS = {"customer_id": "cust-demo-alice", "order_id": "10042", "reason": "too small"}


async def test_a_side_effect_past_its_deadline_reports_what_happened(tmp_path):
    store, state, router = _slow_return_router(tmp_path)
    result = await router.call("create_return", RETURN_ARGS, "s7")
    rows = store.returns("cust-demo-alice")
    assert result.ok and [r["return_id"] for r in rows] == [result.output["return_id"]]
    assert [(a["name"], a["outcome"]) for a in state.audit.read("s7")] == [("create_return", "ok")]


async def test_the_caller_hears_the_truth_about_a_slow_return(tmp_path):
    from deployments.dialogue.support import SupportAgent
    from deployments.policy.engine import PolicyEngine

    store, _, router = _slow_return_router(tmp_path)

    async def classify(text):
        return "returns", 0.9

    agent = SupportAgent(classify, router, None, PolicyEngine(3))
    workflow = {"name": "return", "step": "confirm", "order_id": "10042", "item": "running shoes"}
    workflow["reason"] = "too small"
    memory = {"authenticated": True, "customer_id": "cust-demo-alice", "customer_name": "Alice"}
    memory["slots"] = {"workflow": workflow}
    r = await agent.respond("yes please", memory, "s8", "demo-alice")
    text = " ".join(r.sentences)
    assert "Nothing was changed" not in text and "return reference" in text
    assert len(store.returns("cust-demo-alice")) == 1


async def test_a_cancelled_turn_still_audits_the_side_effect(tmp_path):
    store, state, router = _slow_return_router(tmp_path, deadline_s=5)
    turn = asyncio.ensure_future(router.call("create_return", RETURN_ARGS, "s9"))
    await asyncio.sleep(0.1)
    turn.cancel()  # the turn's own deadline, or the caller hung up
    with pytest.raises(asyncio.CancelledError):
        await turn
    for _ in range(50):
        if state.audit.read("s9"):
            break
        await asyncio.sleep(0.05)
    assert len(store.returns("cust-demo-alice")) == 1
    assert [(a["name"], a["outcome"]) for a in state.audit.read("s9")] == [("create_return", "ok")]


def test_one_return_per_order(store):
    first = store.create_return("cust-demo-alice", "10042", "too small")
    again = store.create_return("cust-demo-alice", "10042", "too small")
    assert again["return_id"] == first["return_id"] and again["existing"]
    assert len(store.returns("cust-demo-alice")) == 1
    assert store.create_return("cust-demo-alice", "20077", "x") is None  # Bob's order
