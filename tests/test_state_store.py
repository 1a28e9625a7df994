"""The state store's parts, each on both backends through one interface: SQLite (a real file)
and Redis (a real redis-server). Journal claims, cache expiry, the customers part's PIN rules
and their atomicity across processes, remembered fields and expiry, the audit trail's masking
and retention, and the settings choosing the backend."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import redis

from common.config import Settings
from deployments.session.redis_store import RedisSessionStore
from deployments.session.store import SessionStore
from deployments.state import open_state, state_path
from deployments.state.parts import PinLockout
from deployments.state.redis_audit import AUDIT_KEY
from deployments.state.redis_parts import RedisCustomers
from deployments.state.sqlite import Db, SqliteCustomers

POLICY = PinLockout(max_failures=3, window_s=900, lockout_s=900)


# --- workflow: the journal of side effects -------------------------------------------------


def test_a_key_is_claimed_once_then_done_with_its_result(make_state):
    first, second = make_state().workflow, make_state().workflow  # two workers
    assert first.begin("create_return:k1") is None  # claimed: run it
    seen = second.begin("create_return:k1")
    assert seen.status == "pending" and seen.result is None
    first.finish("create_return:k1", {"ok": True, "output": {"return_id": "R1"}})
    done = second.begin("create_return:k1")
    assert done.status == "done" and done.result == {"ok": True, "output": {"return_id": "R1"}}
    assert second.get("create_return:k1") == done
    assert second.get("create_return:other") is None


def test_an_abandoned_claim_may_be_claimed_again_but_a_done_one_stays(make_state):
    wf = make_state().workflow
    assert wf.begin("k") is None
    wf.abandon("k")
    assert wf.get("k") is None and wf.begin("k") is None
    wf.finish("k", {"ok": False, "error": "not_found", "output": {}})
    wf.abandon("k")  # a late abandon never drops an answer
    assert wf.get("k").status == "done"


def test_journal_entries_expire(make_state):
    wf = make_state(journal_ttl_s=1).workflow
    wf.begin("k")
    wf.finish("k", {"ok": True, "output": {}})
    time.sleep(2.1)
    assert wf.get("k") is None and wf.begin("k") is None


# --- cache -----------------------------------------------------------------------------------


def test_cache_hits_within_its_ttl_and_misses_after(make_state):
    writer, reader = make_state().cache, make_state().cache
    writer.put("order_status:abc", {"status": "shipped"}, ttl_s=1)
    writer.put("order_status:long", {"status": "delivered"}, ttl_s=60)
    assert reader.get("order_status:abc") == {"status": "shipped"}
    time.sleep(1.2)
    assert reader.get("order_status:abc") is None
    assert reader.get("order_status:long") == {"status": "delivered"}
    assert reader.get("order_status:never") is None


# --- customers: PIN lockout and what calls leave behind -----------------------------------


def test_pin_rules(make_state):
    c = make_state().customers
    now = time.time()
    assert c.pin_attempt("cust-1", True, now, POLICY).outcome == "ok"
    assert c.get("cust-1") is None  # a right PIN with no history writes nothing
    first = c.pin_attempt("cust-1", False, now, POLICY)
    assert (first.outcome, first.failures) == ("wrong", 1)
    assert c.pin_attempt("cust-1", True, now + 1, POLICY).outcome == "ok"  # clears the failures
    assert c.get("cust-1").pin_failures == ()
    for i, expected in enumerate(("wrong", "wrong")):
        assert c.pin_attempt("cust-1", False, now + 2 + i, POLICY).outcome == expected
    locking = c.pin_attempt("cust-1", False, now + 5, POLICY)
    assert locking.outcome == "locked" and locking.locked_now and locking.locked_until == now + 5 + 900
    again = c.pin_attempt("cust-1", True, now + 6, POLICY)  # a right PIN while locked
    assert again.outcome == "locked" and not again.locked_now and again.locked_until == now + 5 + 900
    assert c.pin_attempt("cust-1", True, now + 5 + 901, POLICY).outcome == "ok"  # the lock ended


def test_failures_leave_the_window(make_state):
    c = make_state().customers
    now = time.time()
    c.pin_attempt("cust-1", False, now, POLICY)
    c.pin_attempt("cust-1", False, now + 10, POLICY)
    third = c.pin_attempt("cust-1", False, now + 900, POLICY)  # the first is out of the window (900 s old)
    assert (third.outcome, third.failures) == ("wrong", 2)
    assert c.get("cust-1").pin_failures == (now + 10, now + 900)


def test_unlock_answers_the_state_it_found(make_state):
    c = make_state().customers
    now = time.time()
    for i in range(3):
        c.pin_attempt("cust-1", False, now + i, POLICY)
    was = c.unlock("cust-1")
    assert was.locked_until == now + 2 + 900
    assert c.get("cust-1").locked_until is None and c.pin_attempt("cust-1", True, now + 3, POLICY).outcome == "ok"
    assert c.unlock("nobody") is None and c.get("nobody") is None


def test_remembered_fields_survive_pin_attempts_and_expire_after_the_last_write(make_state):
    c = make_state(customer_ttl_s=2).customers
    c.remember("cust-1", last_order="10042", locale="en-GB")
    c.remember("cust-1", last_order="10043")  # the locale stays
    c.pin_attempt("cust-1", False, time.time(), POLICY)
    kept = c.get("cust-1")
    assert (kept.last_order, kept.locale, len(kept.pin_failures)) == ("10043", "en-GB", 1)
    time.sleep(1.2)
    c.remember("cust-1", locale="de-DE")  # a write renews the whole record
    time.sleep(1.2)
    assert c.get("cust-1").last_order == "10043"
    time.sleep(1.1)
    assert c.get("cust-1") is None


def _attempt_in_process(backend: str, where: str, start_at: float, results) -> None:
    """One process's wrong PIN, fired with the others' at `start_at`."""
    if backend == "sqlite":
        customers = SqliteCustomers(Db(where), 3600)
    else:
        customers = RedisCustomers(redis.Redis.from_url(where), 3600)
    time.sleep(max(0.0, start_at - time.time()))
    a = customers.pin_attempt("cust-race", False, time.time(), PinLockout(5, 900, 900))
    results.put((a.outcome, a.failures, a.locked_now))


def test_counting_and_locking_are_atomic_across_processes(make_state):
    """8 processes send a wrong PIN at once, 5 lock: each failure is counted once, exactly one
    attempt locks, and the three after it find the lock."""
    make_state()  # the file, or the flushed server
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 4  # spawned interpreters need a moment to import
    args = (make_state.backend, make_state.where, start_at, results)
    procs = [ctx.Process(target=_attempt_in_process, args=args) for _ in range(8)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    assert [o for o in outcomes if o[0] == "wrong"] == [("wrong", n, False) for n in (1, 2, 3, 4)]
    assert [o for o in outcomes if o[2]] == [("locked", 5, True)]
    assert [o for o in outcomes if o[0] == "locked" and not o[2]] == [("locked", 0, False)] * 3


def test_counting_is_atomic_across_threads(make_state):
    customers = make_state().customers
    barrier, outcomes = threading.Barrier(6), []

    def attempt():
        barrier.wait()
        outcomes.append(customers.pin_attempt("cust-t", False, time.time(), PinLockout(10, 900, 900)).failures)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [1, 2, 3, 4, 5, 6]


# --- audit -----------------------------------------------------------------------------------


def test_audit_is_masked_and_read_by_session(make_state):
    audit, reader = make_state().audit, make_state().audit
    audit.record("s1", "tool", "order_status", "ok", 3.5, {"attempts": 1})
    audit.record("s2", "escalation", "human", "caller said 4111 1111 1111 1111", 0.0, {"email": "a@b.com"})
    first, second = reader.read()
    assert (first["session_id"], first["name"], first["latency_ms"]) == ("s1", "order_status", 3.5)
    assert "4111" not in second["outcome"] and "a@b.com" not in second["detail"]
    assert [r["session_id"] for r in reader.read("s2")] == ["s2"]


def test_audit_keeps_its_retention_only(make_state, tmp_path):
    audit = make_state(audit_retention_s=1).audit
    audit.record("old", "tool", "order_status", "ok", 1.0, {})
    time.sleep(1.2)
    assert audit.read() == []
    audit.record("new", "tool", "order_status", "ok", 1.0, {})
    assert [r["session_id"] for r in audit.read()] == ["new"]
    if make_state.backend == "redis":  # trimmed at the add, not only hidden
        assert redis.Redis.from_url(make_state.where).xlen(AUDIT_KEY) == 1
    else:  # deleted when a process opens the file (and each minute of writes)
        make_state(audit_retention_s=1)
        assert Db(tmp_path / "state.db").one("SELECT COUNT(*) FROM audit")[0] == 1


# --- choosing the backend --------------------------------------------------------------------


def test_the_settings_choose_the_backend(tmp_path, redis_url):
    local = open_state(Settings(_env_file=None, store_path=tmp_path / "x.db"), sessions=True)
    shared = open_state(Settings(_env_file=None, store_url=redis_url), sessions=True)
    assert isinstance(local.customers, SqliteCustomers) and isinstance(local.sessions, SessionStore)
    assert isinstance(shared.customers, RedisCustomers) and isinstance(shared.sessions, RedisSessionStore)
    assert state_path(Settings(_env_file=None, store_path=tmp_path / "x.db")) == tmp_path / "state.db"
    assert (tmp_path / "state.db").exists() and local.sessions.path == tmp_path / "x.db"
    local.close()
    shared.close()
    with pytest.raises(ValueError, match="VOICE_CUSTOMER_STATE_TTL_S"):
        Settings(_env_file=None, customer_state_ttl_s=3600, pin_lockout_s=7200)
