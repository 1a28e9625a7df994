"""Call state in Redis, for a cluster: any node's session actor can take a call over.

One hash per call (`voice:session:<id>`: state JSON, revision, caller, status), written by a
Lua script that compares the revision the writer read, so a stale writer is refused
atomically, and that renews the key's expiry (the state lives `ttl_s` after its last write).
"""

from __future__ import annotations

import redis

from deployments.session.store import StaleWrite
from models.state import SessionState

KEY = "voice:session:{}"
# KEYS[1]: the call's key. ARGV: revision read, revision written, state JSON, caller, status, ttl s.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'revision')
if (current or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'state', ARGV[3], 'caller_id', ARGV[4], 'status', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""


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
        if not self._save(keys=[KEY.format(state.session_id)], args=args):
            state.revision = read
            raise StaleWrite(f"session {state.session_id} was saved by another writer since revision {read}")

    def load(self, session_id: str) -> SessionState | None:
        raw = self._redis.hget(KEY.format(session_id), "state")
        return SessionState.model_validate_json(raw) if raw else None

    def close(self) -> None:
        self._redis.close()
