"""Where call state is checkpointed: one store interface (`save`, `load`, `close`), two backends.

SQLite (this module) is the embedded default for one node; Redis (`redis_store.py`, chosen by
`VOICE_STORE_URL`) lets any node's actor take a call over. Both refuse a stale writer: each
save names the revision it read (`SessionState.revision`), and a save over a newer one (an
actor that was replaced while it still ran) raises `StaleWrite` instead of undoing the newer
state. A call's state expires `VOICE_STATE_TTL_S` after its last write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from models.state import SessionState

if TYPE_CHECKING:  # not at run time: a session actor's process never loads the settings machinery
    from common.config import Settings
    from models.session import SessionSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    caller_id TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
)
"""
DEFAULT_TTL_S = 86400


class StaleWrite(RuntimeError):
    """Someone saved this session since the writer read it: the writer's state is old."""


class Store(Protocol):
    def save(self, state: SessionState) -> None: ...

    def load(self, session_id: str) -> SessionState | None: ...

    def close(self) -> None: ...

    # Governance (deployments/state/governance.py): retention and a customer's right to be forgotten.
    def purge(self, before_ms: int) -> int:
        """Delete the calls last written before `before_ms`; how many."""

    def find(self, caller_id: str | None, customer_id: str | None) -> set[str]:
        """The calls of this caller or signed in as this customer."""

    def delete(self, session_ids: set[str]) -> int: ...


def open_store(settings: Settings | SessionSettings) -> Store:
    """The store the settings name: Redis when `store_url` is set, else the SQLite file."""
    if settings.store_url is not None:
        from deployments.session.redis_store import RedisSessionStore

        return RedisSessionStore(settings.store_url.get_secret_value(), settings.state_ttl_s)
    return SessionStore(settings.store_path, settings.state_ttl_s)


class SessionStore:
    """SQLite, safe for several processes (one actor per call) writing to one file."""

    def __init__(self, path: Path | str, ttl_s: float = DEFAULT_TTL_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ttl_ms = int(ttl_s * 1000)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(sessions)")}
        if "revision" not in columns:  # a file from before revisions
            self._conn.execute("ALTER TABLE sessions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")
        self._conn.execute("DELETE FROM sessions WHERE updated_at_ms < ?", (_now_ms() - self._ttl_ms,))

    def save(self, state: SessionState) -> None:
        read = state.revision
        state.revision = read + 1
        row = (state.caller_id, state.status.value, state.model_dump_json(), _now_ms(), read + 1, state.session_id)
        with self._lock:
            cur = self._conn.execute(
                "UPDATE sessions SET caller_id=?, status=?, state=?, updated_at_ms=?, revision=? "
                "WHERE session_id=? AND revision=?",
                (*row, read),
            )
            if cur.rowcount == 0 and read == 0:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO sessions(caller_id, status, state, updated_at_ms, revision, session_id) "
                    "VALUES (?,?,?,?,?,?)",
                    row,
                )
        if cur.rowcount == 0:
            state.revision = read
            raise StaleWrite(f"session {state.session_id} was saved by another writer since revision {read}")

    def load(self, session_id: str) -> SessionState | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM sessions WHERE session_id=? AND updated_at_ms >= ?",
                (session_id, _now_ms() - self._ttl_ms),
            ).fetchone()
        return SessionState.model_validate_json(row[0]) if row else None

    def purge(self, before_ms: int) -> int:
        with self._lock:
            return self._conn.execute("DELETE FROM sessions WHERE updated_at_ms < ?", (before_ms,)).rowcount

    def find(self, caller_id: str | None, customer_id: str | None) -> set[str]:
        q = "SELECT session_id FROM sessions WHERE caller_id=? OR json_extract(state, '$.customer_id')=?"
        with self._lock:
            return {r[0] for r in self._conn.execute(q, (caller_id or None, customer_id or None))}

    def delete(self, session_ids: set[str]) -> int:
        with self._lock:
            cur = self._conn.executemany("DELETE FROM sessions WHERE session_id=?", [(i,) for i in session_ids])
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _now_ms() -> int:
    return int(time.time() * 1000)
