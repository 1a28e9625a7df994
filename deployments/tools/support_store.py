"""The support backend: customers (hashed PINs), orders and returns in SQLite, the system of
record a real deployment would reach over its own API.

Seeded with demo customers so a newcomer can try a call (README lists them). What the
agent's calls leave behind (PIN lockout, the audit trail, the last order discussed) is not
kept here but in the state store's parts (`deployments/state/`), which work on a cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path

from common.pii import mask_pii

DEMO_CUSTOMERS = [
    # caller_id, name, pin, orders: (order_id, item, status, eta)
    (
        "demo-alice",
        "Alice",
        "1234",
        [("10042", "running shoes", "shipped", "Thursday"), ("10043", "rain jacket", "processing", "next week")],
    ),
    ("demo-bob", "Bob", "4321", [("20077", "coffee grinder", "delivered", "last Monday")]),
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY, caller_id TEXT UNIQUE, name TEXT, pin_salt BLOB, pin_hash BLOB);
CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, customer_id TEXT, item TEXT, status TEXT, eta TEXT);
CREATE TABLE IF NOT EXISTS returns (
    return_id TEXT PRIMARY KEY, order_id TEXT, customer_id TEXT, reason TEXT, at_ms INTEGER);
"""
_ITERATIONS = 100_000


def hash_pin(pin: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, _ITERATIONS)


class SupportStore:
    def __init__(self, path: Path | str, seed_demo: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            self._db.execute(
                "INSERT INTO customers VALUES (?,?,?,?,?)", (customer_id, caller_id, name, salt, hash_pin(pin, salt))
            )
            for order_id, item, status, eta in orders:
                self._db.execute(
                    "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?)", (order_id, customer_id, item, status, eta)
                )
        return customer_id

    def match_pin(self, caller_id: str, pin: str) -> tuple[dict, bool] | None:
        """The caller's customer and whether `pin` is theirs (constant time); None for an unknown
        caller, after the same work, so timing does not tell who is a customer."""
        with self._lock:
            row = self._db.execute(
                "SELECT customer_id, name, pin_salt, pin_hash FROM customers WHERE caller_id=?", (caller_id,)
            ).fetchone()
        if row is None:
            hash_pin(pin, b"\0" * 16)
            return None
        customer_id, name, salt, stored = row
        return {"customer_id": customer_id, "name": name}, hmac.compare_digest(hash_pin(pin, salt), stored)

    def customer(self, customer_or_caller_id: str) -> dict | None:
        """A customer by customer id or caller id."""
        with self._lock:
            row = self._db.execute(
                "SELECT customer_id, caller_id, name FROM customers WHERE customer_id=? OR caller_id=?",
                (customer_or_caller_id, customer_or_caller_id),
            ).fetchone()
        return dict(zip(("customer_id", "caller_id", "name"), row)) if row else None

    def order(self, customer_id: str, order_id: str) -> dict | None:
        """An order of this customer's, never anybody else's."""
        with self._lock:
            row = self._db.execute(
                "SELECT order_id, item, status, eta FROM orders WHERE order_id=? AND customer_id=?",
                (order_id, customer_id),
            ).fetchone()
        return dict(zip(("order_id", "item", "status", "eta"), row)) if row else None

    def orders(self, customer_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT order_id, item, status, eta FROM orders WHERE customer_id=? ORDER BY order_id", (customer_id,)
            ).fetchall()
        return [dict(zip(("order_id", "item", "status", "eta"), r)) for r in rows]

    def create_return(self, customer_id: str, order_id: str, reason: str) -> dict | None:
        """Open a return for one of the customer's orders (a side effect: never retried).

        One return per order: asked again (a turn cut by its deadline, then a second "yes"),
        it answers with the return already open instead of opening another."""
        if self.order(customer_id, order_id) is None:
            return None
        return_id = f"R{order_id}-{os.urandom(2).hex().upper()}"
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            q = "SELECT return_id FROM returns WHERE order_id=? AND customer_id=?"
            found = self._db.execute(q, (order_id, customer_id)).fetchone()
            if found:
                return {"return_id": found[0], "order_id": order_id, "existing": True}
            self._db.execute(
                "INSERT INTO returns VALUES (?,?,?,?,?)",
                (return_id, order_id, customer_id, mask_pii(reason), int(time.time() * 1000)),
            )
        return {"return_id": return_id, "order_id": order_id}

    def returns(self, customer_id: str) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT return_id, order_id, reason FROM returns WHERE customer_id=? ORDER BY at_ms", (customer_id,)
            ).fetchall()
        return [dict(zip(("return_id", "order_id", "reason"), r)) for r in rows]
