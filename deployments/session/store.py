"""Where session state is checkpointed: a SQLite file by default (WAL, one row per call)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from models.state import SessionState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    caller_id TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
)
"""


class SessionStore:
    """Safe for several processes (one actor per call) writing to one file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def save(self, state: SessionState) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO sessions(session_id, caller_id, status, state, updated_at_ms) VALUES (?,?,?,?,?) "
                "ON CONFLICT(session_id) DO UPDATE SET status=excluded.status, state=excluded.state, "
                "updated_at_ms=excluded.updated_at_ms",
                (state.session_id, state.caller_id, state.status.value, state.model_dump_json(), state.updated_at_ms),
            )

    def load(self, session_id: str) -> SessionState | None:
        with self._lock:
            row = self._conn.execute("SELECT state FROM sessions WHERE session_id=?", (session_id,)).fetchone()
        return SessionState.model_validate_json(row[0]) if row else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
