"""Retention, forgetting a customer and the audit listing (deployments/state/governance.py) on
SQLite and on a real redis-server, through the state store's parts as the CLI opens them."""

from __future__ import annotations

import json
import time

import pytest
import redis

from deployments.session.engine import SessionEngine
from deployments.session.redis_store import RedisSessionStore
from deployments.session.store import SessionStore
from deployments.state.governance import FORGOTTEN, audit_entries, forget, purge
from deployments.state.parts import subject
from deployments.state.redis_audit import AUDIT_KEY
from models.dialogue import TurnSummary
from models.session import TurnRecord


@pytest.fixture
def state(make_state, tmp_path):
    """The state store's parts with its sessions part, on the backend `make_state` runs."""
    state = make_state()
    redis_backed = make_state.backend == "redis"
    state.sessions = RedisSessionStore(make_state.where) if redis_backed else SessionStore(tmp_path / "sessions.db")
    state.backend, state.where = make_state.backend, make_state.where
    return state


def call(state, session_id: str, caller_id: str, words: str, customer_id: str | None = None) -> SessionEngine:
    """A call with one caller turn (signed in as `customer_id` when given), checkpointed."""
    engine = SessionEngine(state.sessions, max_turns=50)
    engine.start(session_id, caller_id, "en-US")
    memory = {"customer_id": customer_id, "authenticated": True} if customer_id else None
    engine.record_turn(TurnRecord(turn_id=0, source="text", transcript=words, summary=TurnSummary(memory=memory)))
    return engine


def tick() -> int:
    time.sleep(0.01)
    now = int(time.time() * 1000)
    time.sleep(0.01)
    return now


def test_purge_deletes_calls_and_audit_entries_older_than_the_retention(state):
    call(state, "old-call", "demo-alice", "where is my order")
    state.audit.record("old-call", "tool", "order_status", "ok", 3.0, {"attempts": 1})
    cutoff = tick()
    call(state, "new-call", "demo-bob", "what are your hours")
    state.audit.record("new-call", "tool", "order_status", "ok", 3.0, {"attempts": 1})
    assert purge(state, retention_s=0, now_ms=cutoff).sessions == 1  # before the cutoff: gone
    assert state.sessions.load("old-call") is None and state.sessions.load("new-call") is not None
    assert [e["session_id"] for e in state.audit.read()] == ["new-call"]
    assert purge(state, retention_s=3600) == purge(state, retention_s=3600)  # nothing newer is touched
    assert state.sessions.load("new-call") is not None and len(state.audit.read()) == 1


def test_forget_deletes_the_customers_calls_and_anonymises_their_audit_entries(state):
    call(state, "alice-1", "demo-alice", "where is my order", customer_id="cust-demo-alice")
    call(state, "alice-2", "+15550001111", "my email is jane@example.com", customer_id="cust-demo-alice")  # other line
    call(state, "bob-1", "demo-bob", "what are your hours")
    state.audit.link("alice-gone", "demo-alice", "cust-demo-alice")  # a call whose state has already expired
    state.audit.link("alice-1", "demo-alice", "cust-demo-alice")
    for session in ("alice-1", "alice-gone", "bob-1"):
        state.audit.record(session, "tool", "order_status", "ok", 2.0, {"attempts": 1, "order": "10042"})
    state.audit.record("cli:ops", "security", "pin_unlock", "unlocked", 0.0, {"customer_id": "cust-demo-alice"})
    state.customers.remember("cust-demo-alice", last_order="10042")

    done = forget(state, "demo-alice", "cust-demo-alice", by="cli:test")

    assert (done.sessions, done.audit_entries, done.customer_state) == (2, 3, True)
    assert state.sessions.load("alice-1") is None and state.sessions.load("alice-2") is None
    assert state.sessions.load("bob-1") is not None
    assert state.customers.get("cust-demo-alice") is None
    entries = state.audit.read()
    assert [e["at_ms"] for e in entries] == sorted(e["at_ms"] for e in entries)  # times and order kept
    by_session = [(e["session_id"], e["name"], e["detail"]) for e in entries]
    assert by_session[:4] == [
        (FORGOTTEN, "order_status", "{}"),
        (FORGOTTEN, "order_status", "{}"),
        ("bob-1", "order_status", json.dumps({"attempts": 1, "order": "10042"})),
        ("cli:ops", "pin_unlock", "{}"),  # matched by the customer it named; the operator stays
    ]
    (forgotten,) = [e for e in entries if e["kind"] == "governance"]  # audited itself
    assert forgotten["session_id"] == "cli:test" and "cust-demo-alice" not in forgotten["detail"]
    assert json.loads(forgotten["detail"]) == {"subject": subject("cust-demo-alice"), "sessions": 2, "audit_entries": 3}
    assert state.audit.sessions_of("demo-alice", "cust-demo-alice") == set()
    assert audit_entries(state, "demo-alice", "cust-demo-alice") == []  # nothing ties an entry to them now
    assert forget(state, "demo-alice", "cust-demo-alice", by="cli:test").sessions == 0


def test_anonymised_entries_still_leave_at_their_retention(state):
    state.audit.record("alice-1", "tool", "verify_pin", "ok", 1.0, {})
    cutoff = tick()
    state.audit.record("bob-1", "tool", "verify_pin", "ok", 1.0, {})
    state.audit.link("alice-1", "demo-alice")
    forget(state, "demo-alice", None, by="cli:test")
    assert purge(state, retention_s=0, now_ms=cutoff).audit_entries == 1  # the anonymised copy, by its own time
    assert [e["session_id"] for e in state.audit.read()] == ["bob-1", "cli:test"]
    if state.backend == "redis":
        assert redis.Redis.from_url(state.where).xlen(AUDIT_KEY) == 2


def test_audit_entries_by_customer_and_since(state):
    call(state, "alice-1", "demo-alice", "where is my order", customer_id="cust-demo-alice")
    state.audit.record("alice-1", "tool", "verify_pin", "ok", 1.0, {"attempts": 1})
    since = tick()
    state.audit.record("alice-1", "escalation", "caller_request", "escalated", 0.0, {"email": "a@b.com"})
    state.audit.record("bob-1", "tool", "order_status", "ok", 1.0, {})
    assert [e["name"] for e in audit_entries(state, "demo-alice", "cust-demo-alice")] == [
        "verify_pin",
        "caller_request",
    ]
    assert [e["session_id"] for e in audit_entries(state, since_ms=since)] == ["alice-1", "bob-1"]
    mine = audit_entries(state, "demo-alice", "cust-demo-alice", since_ms=since)
    assert [e["name"] for e in mine] == ["caller_request"] and "a@b.com" not in mine[0]["detail"]


def test_the_retention_setting_has_one_name_and_the_old_one_still_works(monkeypatch):
    from common.config import Settings

    monkeypatch.setenv("VOICE_RETENTION_DAYS", "7")
    assert Settings(_env_file=None).retention_days == 7
    monkeypatch.delenv("VOICE_RETENTION_DAYS")
    monkeypatch.setenv("VOICE_AUDIT_RETENTION_DAYS", "3")
    assert Settings(_env_file=None).retention_days == 3


def _stored_text(state, session_id: str) -> str:
    """The call's stored state as raw text, as a reader of the file or the server would find it."""
    if state.backend == "redis":
        return redis.Redis.from_url(state.where).hget(f"voice:session:{session_id}", "state").decode()
    return state.sessions._conn.execute("SELECT state FROM sessions WHERE session_id=?", (session_id,)).fetchone()[0]


@pytest.mark.parametrize("declined_at", [1, 2])
def test_a_declined_consent_keeps_the_calls_words_out_of_the_store(state, declined_at):
    """Declined right after the notice, or later: no word of the call is stored, earlier turns'
    included; the call's own memory (what the next turn reads) keeps them."""
    engine = SessionEngine(state.sessions, max_turns=50)
    engine.start("s-declined", "demo-alice", "en-US")
    notice = TurnSummary(intent="greeting", memory={"consent": "pending"})
    engine.record_turn(TurnRecord(turn_id=0, source="greeting", sentences=["This call is recorded."], summary=notice))
    said = ["where is my parcel", "please do not record this", "tell me the warranty"]
    for turn_id, words in enumerate(said, start=1):
        consent = "declined" if turn_id == declined_at + 1 else "given" if turn_id == 1 else None
        summary = TurnSummary(memory={"consent": consent} if consent else None)
        engine.record_turn(
            TurnRecord(turn_id=turn_id, source="text", transcript=words, sentences=["Sure."], summary=summary)
        )
        engine.finish_turn(engine_finish(turn_id))
    stored = _stored_text(state, "s-declined")
    assert not any(w in stored for w in ("parcel", "record this", "warranty", "Sure."))
    loaded = state.sessions.load("s-declined")
    assert loaded.consent == "declined" and [t.turn_id for t in loaded.turns] == [0, 1, 2, 3]
    assert all(t.transcript == "" and t.reply == [] for t in loaded.turns)
    assert [e.user for e in engine.context().history] == said  # the live call still remembers
    engine.close("caller_hangup")
    assert "warranty" not in _stored_text(state, "s-declined")


def test_a_consenting_call_is_stored_as_before(state):
    engine = call(state, "s-given", "demo-bob", "where is my parcel")
    engine.state.consent = "given"
    engine.checkpoint()
    assert "where is my parcel" in _stored_text(state, "s-given")


def engine_finish(turn_id: int):
    from models.session import TurnFinish

    return TurnFinish(turn_id=turn_id, metrics={"eos_to_first_audio_ms": 500.0})
