"""The state parts in one SQLite file (`state.db` beside the session store): one node.

Every process opens the file itself (WAL, so readers never wait for the writer); a write
that reads first (a PIN attempt, a journal claim) runs in one `BEGIN IMMEDIATE` transaction,
which SQLite serialises across processes. Expired rows are skipped on read and deleted at
open and now and then on write.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from deployments.state.parts import CustomerState, JournalEntry, PinAttempt, PinLockout, decide_pin

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (key TEXT PRIMARY KEY, status TEXT NOT NULL, result TEXT, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY, locked_until REAL, pin_failures TEXT NOT NULL DEFAULT '[]',
    last_order TEXT, locale TEXT, updated_at_ms INTEGER NOT NULL);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Db:
    """One connection to the state file, shared by the parts of one process."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)

    def run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, args)

    def one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self.lock:
            return self.conn.execute(sql, args).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken before the first read: atomic across processes."""
        with self.lock, self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            yield self.conn

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class SqliteWorkflow:
    def __init__(self, db: Db, ttl_s: float):
        self._db, self._ttl_ms = db, int(ttl_s * 1000)
        db.run("DELETE FROM journal WHERE at_ms < ?", (_now_ms() - self._ttl_ms,))

    def begin(self, key: str) -> JournalEntry | None:
        now = _now_ms()
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM journal WHERE key=? AND at_ms < ?", (key, now - self._ttl_ms))
            claimed = conn.execute("INSERT OR IGNORE INTO journal VALUES (?, 'pending', NULL, ?)", (key, now))
            if claimed.rowcount == 1:
                return None
            return _entry(conn.execute("SELECT status, result, at_ms FROM journal WHERE key=?", (key,)).fetchone())

    def get(self, key: str) -> JournalEntry | None:
        q = "SELECT status, result, at_ms FROM journal WHERE key=? AND at_ms >= ?"
        return _entry(self._db.one(q, (key, _now_ms() - self._ttl_ms)))

    def finish(self, key: str, result: dict) -> None:
        row = (json.dumps(result), _now_ms(), key)
        self._db.run("UPDATE journal SET status='done', result=?, at_ms=? WHERE key=?", row)

    def abandon(self, key: str) -> None:
        self._db.run("DELETE FROM journal WHERE key=? AND status='pending'", (key,))


def _entry(row: tuple | None) -> JournalEntry | None:
    if row is None:
        return None
    return JournalEntry(row[0], json.loads(row[1]) if row[1] else None, row[2])


class SqliteCache:
    def __init__(self, db: Db):
        self._db = db
        db.run("DELETE FROM cache WHERE expires_ms < ?", (_now_ms(),))

    def get(self, key: str) -> dict | None:
        row = self._db.one("SELECT value FROM cache WHERE key=? AND expires_ms > ?", (key, _now_ms()))
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict, ttl_s: float) -> None:
        expires = _now_ms() + int(ttl_s * 1000)
        self._db.run("INSERT OR REPLACE INTO cache VALUES (?,?,?)", (key, json.dumps(value), expires))


class SqliteCustomers:
    def __init__(self, db: Db, ttl_s: float):
        self._db, self._ttl_ms = db, int(ttl_s * 1000)
        db.run("DELETE FROM customers WHERE updated_at_ms < ?", (_now_ms() - self._ttl_ms,))

    def _load(self, conn: sqlite3.Connection, customer_id: str) -> CustomerState | None:
        q = "SELECT locked_until, pin_failures, last_order, locale, updated_at_ms FROM customers"
        row = conn.execute(f"{q} WHERE customer_id=? AND updated_at_ms >= ?", (customer_id, _now_ms() - self._ttl_ms))
        row = row.fetchone()
        if row is None:
            return None
        return CustomerState(customer_id, row[0], tuple(json.loads(row[1])), row[2], row[3], row[4])

    def pin_attempt(self, customer_id: str, matched: bool, now: float, policy: PinLockout) -> PinAttempt:
        with self._db.transaction() as conn:
            was = self._load(conn, customer_id) or CustomerState(customer_id)
            attempt, failures, until = decide_pin(list(was.pin_failures), was.locked_until, matched, now, policy)
            if (failures, until) != (list(was.pin_failures), was.locked_until) or was.updated_at_ms:
                self._write(conn, was, locked_until=until, pin_failures=tuple(failures))
        return attempt

    def get(self, customer_id: str) -> CustomerState | None:
        with self._db.lock:
            return self._load(self._db.conn, customer_id)

    def unlock(self, customer_id: str) -> CustomerState | None:
        with self._db.transaction() as conn:
            was = self._load(conn, customer_id)
            if was is not None:
                self._write(conn, was, locked_until=None, pin_failures=())
        return was

    def remember(self, customer_id: str, last_order: str | None = None, locale: str | None = None) -> None:
        with self._db.transaction() as conn:
            was = self._load(conn, customer_id) or CustomerState(customer_id)
            self._write(conn, was, last_order=last_order or was.last_order, locale=locale or was.locale)

    def forget(self, customer_id: str) -> bool:
        return self._db.run("DELETE FROM customers WHERE customer_id=?", (customer_id,)).rowcount > 0

    def _write(self, conn: sqlite3.Connection, was: CustomerState, **changes) -> None:
        new = replace(was, **changes)
        row = (new.customer_id, new.locked_until, json.dumps(list(new.pin_failures)), new.last_order, new.locale)
        conn.execute("INSERT OR REPLACE INTO customers VALUES (?,?,?,?,?,?)", (*row, _now_ms()))
