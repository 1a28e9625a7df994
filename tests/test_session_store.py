"""The call-state store, both backends through one interface: SQLite (a real file) and Redis (a
real redis-server): round trip, a stale writer refused, expiry after the last write."""

from __future__ import annotations

import time

import pytest
import redis

from common.config import Settings
from deployments.session.redis_store import RedisSessionStore
from deployments.session.store import SessionStore, StaleWrite, open_store
from models.state import SessionState, TurnState


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path, redis_url):
    stores = []

    def make(ttl_s: float = 86400):
        if request.param == "sqlite":
            store = SessionStore(tmp_path / "sessions.db", ttl_s)
        else:
            if not stores:
                redis.Redis.from_url(redis_url).flushdb()
            store = RedisSessionStore(redis_url, ttl_s)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def a_call(session_id: str = "s1") -> SessionState:
    state = SessionState(session_id=session_id, caller_id="caller-1")
    state.turns.append(TurnState(turn_id=0, transcript="where is my order", reply=["Which one?"]))
    return state


def test_what_is_saved_is_loaded_by_another_process_s_store(make_store):
    writer, reader = make_store(), make_store()
    state = a_call()
    writer.save(state)
    state.authenticated = True
    writer.save(state)
    loaded = reader.load("s1")
    assert loaded == state and loaded.revision == 2 and loaded.authenticated
    assert reader.load("nobody") is None


def test_a_writer_that_missed_a_save_is_refused_and_the_newer_state_stays(make_store):
    store = make_store()
    state = a_call()
    store.save(state)
    old = store.load("s1")  # the first actor's copy
    new = store.load("s1")  # its successor's
    new.authenticated = True
    store.save(new)
    old.slots = {"awaiting": "pin"}
    with pytest.raises(StaleWrite):
        store.save(old)
    assert old.revision == 1  # unchanged by the refused write
    assert store.load("s1").authenticated and store.load("s1").slots == {}
    fresh = a_call()
    with pytest.raises(StaleWrite):  # a second "first" write of a call that exists
        store.save(fresh)


def test_state_expires_after_its_last_write(make_store):
    store = make_store(ttl_s=1)
    store.save(a_call())
    assert store.load("s1") is not None
    time.sleep(2.1)
    assert store.load("s1") is None


def test_the_settings_choose_the_backend(tmp_path, redis_url):
    local = open_store(Settings(_env_file=None, store_path=tmp_path / "x.db"))
    shared = open_store(Settings(_env_file=None, store_url=redis_url))
    assert isinstance(local, SessionStore) and isinstance(shared, RedisSessionStore)
    local.close()
    shared.close()
    with pytest.raises(ValueError, match="redis://"):
        Settings(_env_file=None, store_url="http://127.0.0.1:6379")


def test_an_unreachable_redis_fails_at_start_naming_it():
    with pytest.raises(redis.ConnectionError):
        RedisSessionStore("redis://127.0.0.1:1/0", timeout_s=0.5)
