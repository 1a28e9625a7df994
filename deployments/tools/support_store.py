"""The support backend: customers (hashed PINs) and orders in SQLite, plus the audit trail.

Seeded with demo customers so a newcomer can try a call (README lists them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from serve_app.pii import mask_pii

DEMO_CUSTOMERS = [
    # caller_id, name, pin, orders: (order_id, item, status, eta)
    ("demo-alice", "Alice", "1234", [("10042", "running shoes", "shipped", "Thursday"), ("10043", "rain jacket", "processing", "next week")]),
    ("demo-bob", "Bob", "4321", [("20077", "coffee grinder", "delivered", "last Monday")]),
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, caller_id TEXT UNIQUE, name TEXT, pin_salt BLOB, pin_hash BLOB);
CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, customer_id TEXT, item TEXT, status TEXT, eta TEXT);
CREATE TABLE IF NOT EXISTS returns (return_id TEXT PRIMARY KEY, order_id TEXT, customer_id TEXT, reason TEXT, at_ms INTEGER);
CREATE TABLE IF NOT EXISTS audit (at_ms INTEGER, session_id TEXT, kind TEXT, name TEXT, outcome TEXT, latency_ms REAL, detail TEXT);
"""
_ITERATIONS = 100_000


def hash_pin(pin: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, _ITERATIONS)


class SupportStore:
    def __init__(self, path: Path | str, seed_demo: bool = True):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        if seed_demo:
            for caller_id, name, pin, orders in DEMO_CUSTOMERS:
                self.add_customer(caller_id, name, pin, orders)

    def add_customer(self, caller_id: str, name: str, pin: str, orders=()) -> str:
        customer_id = f"cust-{caller_id}"
        with self._lock:
            if self._db.execute("SELECT 1 FROM customers WHERE caller_id=?", (caller_id,)).fetchone():
                return customer_id
            salt = os.urandom(16)
            self._db.execute("INSERT INTO customers VALUES (?,?,?,?,?)", (customer_id, caller_id, name, salt, hash_pin(pin, salt)))
            for order_id, item, status, eta in orders:
                self._db.execute("INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?)", (order_id, customer_id, item, status, eta))
        return customer_id

    def verify_pin(self, caller_id: str, pin: str) -> dict | None:
        """The customer if `pin` is theirs; constant-time comparison against the stored hash."""
        with self._lock:
            row = self._db.execute("SELECT customer_id, name, pin_salt, pin_hash FROM customers WHERE caller_id=?", (caller_id,)).fetchone()
        if row is None:
            hash_pin(pin, b"\0" * 16)  # same work whether or not the caller exists
            return None
        customer_id, name, salt, stored = row
        return {"customer_id": customer_id, "name": name} if hmac.compare_digest(hash_pin(pin, salt), stored) else None

    def order(self, customer_id: str, order_id: str) -> dict | None:
        """An order of this customer's, never anybody else's."""
        with self._lock:
            row = self._db.execute(
                "SELECT order_id, item, status, eta FROM orders WHERE order_id=? AND customer_id=?", (order_id, customer_id)
            ).fetchone()
        return dict(zip(("order_id", "item", "status", "eta"), row)) if row else None

    def orders(self, customer_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT order_id, item, status, eta FROM orders WHERE customer_id=? ORDER BY order_id", (customer_id,)).fetchall()
        return [dict(zip(("order_id", "item", "status", "eta"), r)) for r in rows]

    def create_return(self, customer_id: str, order_id: str, reason: str) -> dict | None:
        """Open a return for one of the customer's orders (a side effect: never retried)."""
        if self.order(customer_id, order_id) is None:
            return None
        return_id = f"R{order_id}-{os.urandom(2).hex().upper()}"
        with self._lock:
            self._db.execute("INSERT INTO returns VALUES (?,?,?,?,?)", (return_id, order_id, customer_id, mask_pii(reason), int(time.time() * 1000)))
        return {"return_id": return_id, "order_id": order_id}

    def returns(self, customer_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT return_id, order_id, reason FROM returns WHERE customer_id=? ORDER BY at_ms", (customer_id,)).fetchall()
        return [dict(zip(("return_id", "order_id", "reason"), r)) for r in rows]

    def record(self, session_id: str, kind: str, name: str, outcome: str, latency_ms: float, detail: dict) -> None:
        """Audit trail: every tool call and escalation, masked."""
        with self._lock:
            self._db.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?)",
                (int(time.time() * 1000), session_id, kind, name, mask_pii(outcome), latency_ms, mask_pii(json.dumps(detail))),
            )

    def audit(self, session_id: str | None = None) -> list[dict]:
        with self._lock:
            q = "SELECT at_ms, session_id, kind, name, outcome, latency_ms, detail FROM audit"
            rows = self._db.execute(q + (" WHERE session_id=?" if session_id else "") + " ORDER BY rowid", (session_id,) if session_id else ()).fetchall()
        return [dict(zip(("at_ms", "session_id", "kind", "name", "outcome", "latency_ms", "detail"), r)) for r in rows]
