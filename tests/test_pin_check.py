"""The one PIN decision both dialogue engines take (deployments/dialogue/pin_check.py), in-process:
each outcome, the store's lockout over a right PIN, attempts left as the fewer of this call's
and the store's. The stores are the real SQLite ones behind the real tool router."""

import time

import pytest

from deployments.dialogue.pin_check import PinOutcome, PinVerdict, check_pin, judge_pin
from deployments.dialogue.support import MEMORY_DEFAULTS
from deployments.dialogue.tools import support_router
from deployments.state import sqlite_state
from deployments.state.parts import PinLockout
from deployments.tools.pin_guard import PinGuard
from deployments.tools.support_store import SupportStore
from models.state import ToolResult
from tests.test_tools import Clock, LocalBreaker


def new_router(folder, max_failures: int = 3):
    """The router over fresh stores in `folder`, and its PIN guard (on a test clock)."""
    clock = Clock()
    clock.t = time.time()
    store, state = SupportStore(folder / "support.db"), sqlite_state(folder / "state.db")
    pins = PinGuard(store, state.customers, state.audit, PinLockout(max_failures, 900, 900), clock)
    return support_router(store, state, LocalBreaker(), pins), pins


@pytest.fixture
def router_pins(tmp_path):
    return new_router(tmp_path)


@pytest.fixture
def router(router_pins):
    return router_pins[0]


@pytest.fixture
def pins(router_pins):
    return router_pins[1]


def memory(**kw) -> dict:
    return {**MEMORY_DEFAULTS, "slots": {}, **kw}


async def check(router, pin: str, m: dict, results: list | None = None, caller="demo-alice") -> PinOutcome:
    return await check_pin(router, pin, caller, "s1", m, [] if results is None else results, 3)


async def test_the_right_pin_verifies_and_resets_this_calls_count(router):
    m, results = memory(auth_failures=2), []
    outcome = await check(router, "1234", m, results)
    assert outcome == PinOutcome(PinVerdict.VERIFIED, name="Alice")
    assert m["authenticated"] and m["customer_name"] == "Alice" and m["customer_id"] and m["auth_failures"] == 0
    assert [(r.tool, r.ok) for r in results] == [("verify_pin", True)]  # kept on the turn


async def test_wrong_pins_count_down_then_this_calls_limit_locks(tmp_path):
    router, _ = new_router(tmp_path / "lenient", max_failures=10)  # this call's limit (3) comes first
    m = memory()
    first, second = await check(router, "1111", m), await check(router, "2222", m)
    assert (first.verdict, first.attempts_left, second.verdict, second.attempts_left) == (
        PinVerdict.WRONG_PIN,
        2,
        PinVerdict.WRONG_PIN,
        1,
    )
    assert m["auth_failures"] == 2 and not m["auth_locked"] and not m["authenticated"]
    third = await check(router, "3333", m)
    assert third.verdict is PinVerdict.LOCKED and not third.by_store and third.attempts_left == 0
    assert m["auth_locked"] and m["auth_failures"] == 3


async def test_the_stores_lock_at_this_calls_third_wrong_pin_is_the_stores(router):
    m = memory()
    for pin in ("1111", "2222"):
        await check(router, pin, m)
    third = await check(router, "3333", m)  # the store locks the customer with this one
    assert third.verdict is PinVerdict.LOCKED and third.by_store and m["auth_locked"] and m["auth_failures"] == 2


async def test_the_store_lockout_wins_over_a_right_pin(router, pins):
    for pin in ("1111", "2222", "3333"):  # earlier calls used up the customer's tries
        pins.check_pin("demo-alice", pin)
    m, results = memory(), []
    outcome = await check(router, "1234", m, results)
    assert outcome.verdict is PinVerdict.LOCKED and outcome.by_store
    assert m["auth_locked"] and not m["authenticated"] and m["customer_id"] is None
    assert m["auth_failures"] == 0  # not this call's wrong PIN
    assert [(r.tool, r.error) for r in results] == [("verify_pin", "auth_locked")]


async def test_attempts_left_is_the_fewer_of_this_calls_and_the_stores(router, pins):
    pins.check_pin("demo-alice", "9999")  # a wrong PIN in an earlier call, inside the store's window
    m = memory()
    outcome = await check(router, "1111", m)
    assert outcome.verdict is PinVerdict.WRONG_PIN
    assert outcome.attempts_left == 1  # the store has seen two: one left, though this call has had one


def test_attempts_left_falls_back_to_this_calls_count_when_the_store_gives_none():
    m = memory(auth_failures=1)
    outcome = judge_pin(ToolResult(tool="verify_pin", ok=False, error="wrong_pin"), m, 3)
    assert (outcome.verdict, outcome.attempts_left, m["auth_failures"]) == (PinVerdict.WRONG_PIN, 1, 2)
    store_more = ToolResult(tool="verify_pin", ok=False, error="wrong_pin", output={"attempts_left": 5})
    assert judge_pin(store_more, memory(), 3).attempts_left == 2  # never more than this call allows


def test_a_failed_check_is_unavailable_and_changes_nothing():
    m = memory(auth_failures=1)
    before = dict(m)
    outcome = judge_pin(ToolResult(tool="verify_pin", ok=False, error="timeout"), m, 3)
    assert outcome == PinOutcome(PinVerdict.UNAVAILABLE, error="timeout")
    assert m == before


async def test_the_caller_comes_from_the_session_not_from_the_pin_check(router):
    """An unknown caller reads as a wrong PIN, even with another customer's right PIN."""
    m = memory()
    outcome = await check(router, "1234", m, caller="nobody")
    assert outcome.verdict is PinVerdict.WRONG_PIN and not m["authenticated"]
