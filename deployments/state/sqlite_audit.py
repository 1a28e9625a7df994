"""The audit trail in `state.db` (one node): entries masked at write, deleted past the retention
at open, each minute of writes, and by the retention purge (`governance.py`).

Beside the entries, `audit_subjects` links each audited session to its caller's and customer's
digests (`parts.subject`), so `voice-agent customers forget` finds a customer's entries after
the call state that named them has expired.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from common.pii import mask_pii
from deployments.state.parts import AUDIT_FIELDS, subject
from deployments.state.sqlite import Db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    at_ms INTEGER NOT NULL, session_id TEXT, kind TEXT, name TEXT, outcome TEXT, latency_ms REAL, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_ms);
CREATE INDEX IF NOT EXISTS audit_by_session ON audit (session_id);
CREATE TABLE IF NOT EXISTS audit_subjects (
    session_id TEXT NOT NULL, subject TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (session_id, subject));
CREATE INDEX IF NOT EXISTS audit_subjects_by_subject ON audit_subjects (subject);
"""
_PURGE_EVERY_MS = 60_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteAudit:
    def __init__(self, db: Db, retention_s: float):
        self._db, self._retention_ms = db, int(retention_s * 1000)
        with db.lock:
            db.conn.executescript(_SCHEMA)
        self._purged_at = 0
        self._purge_expired(_now_ms())

    def _purge_expired(self, now: int) -> None:
        self._purged_at = now
        self.purge(now - self._retention_ms)

    def record(self, session_id: str, kind: str, name: str, outcome: str, latency_ms: float, detail: dict) -> None:
        now = _now_ms()
        row = (now, session_id, kind, name, mask_pii(outcome), latency_ms, mask_pii(json.dumps(detail)))
        self._db.run("INSERT INTO audit VALUES (?,?,?,?,?,?,?)", row)
        if now - self._purged_at > _PURGE_EVERY_MS:
            self._purge_expired(now)

    def read(self, session_id: str | None = None, since_ms: int | None = None) -> list[dict]:
        q = "SELECT at_ms, session_id, kind, name, outcome, latency_ms, detail FROM audit WHERE at_ms >= ?"
        args: tuple = (max(_now_ms() - self._retention_ms, since_ms or 0),)
        if session_id:
            q, args = q + " AND session_id=?", (*args, session_id)
        with self._db.lock:
            rows = self._db.conn.execute(q + " ORDER BY rowid", args).fetchall()
        return [dict(zip(AUDIT_FIELDS, r)) for r in rows]

    def link(self, session_id: str, *identities: str) -> None:
        rows = [(session_id, subject(i), _now_ms()) for i in identities if i]
        with self._db.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO audit_subjects VALUES (?,?,?)", rows)

    def sessions_of(self, *identities: str) -> set[str]:
        digests = [subject(i) for i in identities if i]
        marks = ",".join("?" * len(digests))
        with self._db.lock:
            rows = self._db.conn.execute(f"SELECT session_id FROM audit_subjects WHERE subject IN ({marks})", digests)
            return {r[0] for r in rows}

    def unlink(self, *identities: str) -> None:
        for digest in (subject(i) for i in identities if i):
            self._db.run("DELETE FROM audit_subjects WHERE subject=?", (digest,))

    def anonymise(self, rewrite: Callable[[dict], dict | None]) -> int:
        """In place, in one transaction: every entry keeps its rowid, so its time and order."""
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT rowid, {', '.join(AUDIT_FIELDS)} FROM audit").fetchall()
            changed = [(rowid, new) for rowid, *r in rows if (new := rewrite(dict(zip(AUDIT_FIELDS, r)))) is not None]
            for rowid, new in changed:
                conn.execute(
                    "UPDATE audit SET session_id=?, detail=? WHERE rowid=?", (new["session_id"], new["detail"], rowid)
                )
        return len(changed)

    def purge(self, before_ms: int) -> int:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM audit_subjects WHERE at_ms < ?", (before_ms,))
            return conn.execute("DELETE FROM audit WHERE at_ms < ?", (before_ms,)).rowcount
