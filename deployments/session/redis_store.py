"""Call state in Redis, for a cluster: any node's session actor can take a call over.

One hash per call (`voice:session:<id>`: state JSON, revision, caller, customer, status, last
write), written by a
Lua script that compares the revision the writer read, so a stale writer is refused
atomically, and that renews the key's expiry (the state lives `ttl_s` after its last write).
"""

from __future__ import annotations

import time

import redis

from deployments.session.store import StaleWrite
from models.state import SessionState

KEY = "voice:session:{}"
# KEYS[1]: the call's key. ARGV: revision read, revision written, state JSON, caller, status, ttl s,
# customer (empty: not signed in), now ms.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'revision')
if (current or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'state', ARGV[3], 'caller_id', ARGV[4], 'status', ARGV[5],
           'customer_id', ARGV[7], 'updated_at_ms', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""
_FIELDS = ("caller_id", "customer_id", "updated_at_ms", "state")


class RedisSessionStore:
    def __init__(self, url: str, ttl_s: float = 86400, timeout_s: float = 2.0):
        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._ttl_s = max(1, int(ttl_s))
        self._save = self._redis.register_script(_SAVE)
        self._redis.ping()  # fail at start-up, naming the server, not at the first checkpoint

    def save(self, state: SessionState) -> None:
        read = state.revision
        state.revision = read + 1
        args = [read, read + 1, state.model_dump_json(), state.caller_id, state.status.value, self._ttl_s]
        args += [state.customer_id or "", int(time.time() * 1000)]
        if not self._save(keys=[KEY.format(state.session_id)], args=args):
            state.revision = read
            raise StaleWrite(f"session {state.session_id} was saved by another writer since revision {read}")

    def load(self, session_id: str) -> SessionState | None:
        raw = self._redis.hget(KEY.format(session_id), "state")
        return SessionState.model_validate_json(raw) if raw else None

    def _calls(self):
        """(session id, caller, customer, last write ms) of every stored call, scanned in pages."""
        keys = list(self._redis.scan_iter(match=KEY.format("*"), count=1000))
        for start in range(0, len(keys), 500):
            page = keys[start : start + 500]
            with self._redis.pipeline(transaction=False) as pipe:
                for key in page:
                    pipe.hmget(key, *_FIELDS[:3])
                rows = pipe.execute()
            for key, (caller, customer, updated) in zip(page, rows):
                if updated is None:  # written before these fields: read the state itself
                    state = self.load(key.decode().removeprefix(KEY.format("")))
                    if state is None:
                        continue
                    caller, customer, updated = state.caller_id, state.customer_id, state.updated_at_ms
                yield key.decode().removeprefix(KEY.format("")), _text(caller), _text(customer), int(updated)

    def purge(self, before_ms: int) -> int:
        return self.delete({sid for sid, _, _, updated in self._calls() if updated < before_ms})

    def find(self, caller_id: str | None, customer_id: str | None) -> set[str]:
        return {
            sid
            for sid, caller, customer, _ in self._calls()
            if (caller_id and caller == caller_id) or (customer_id and customer == customer_id)
        }

    def delete(self, session_ids: set[str]) -> int:
        return self._redis.delete(*[KEY.format(i) for i in session_ids]) if session_ids else 0

    def close(self) -> None:
        self._redis.close()


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode()
    return value or None
