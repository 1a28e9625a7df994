"""The support backend: customers (hashed PINs) and orders in SQLite, plus the audit trail.

Seeded with demo customers so a newcomer can try a call (README lists them).

PIN lockout lives here, per customer and across calls (a call's own memory is gone when the
caller redials): `max_failures` wrong PINs within `window_s` lock that customer's phone
authentication for `lockout_s`, whatever PIN comes next. Every process sharing the file
sees the same lock: the check and the count run in one write transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
CREATE TABLE IF NOT EXISTS audit (
    at_ms INTEGER, session_id TEXT, kind TEXT, name TEXT, outcome TEXT, latency_ms REAL, detail TEXT);
CREATE TABLE IF NOT EXISTS pin_failures (customer_id TEXT, at_s REAL);
CREATE INDEX IF NOT EXISTS pin_failures_by_customer ON pin_failures (customer_id);
CREATE TABLE IF NOT EXISTS pin_locks (customer_id TEXT PRIMARY KEY, until_s REAL);
"""
_ITERATIONS = 100_000


def hash_pin(pin: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, _ITERATIONS)


@dataclass(frozen=True)
class PinLockout:
    max_failures: int = 3
    window_s: float = 900.0
    lockout_s: float = 900.0

    @classmethod
    def from_settings(cls) -> PinLockout:
        """VOICE_PIN_MAX_FAILURES, VOICE_PIN_FAILURE_WINDOW_S, VOICE_PIN_LOCKOUT_S."""
        from common.config import get_settings

        s = get_settings()
        return cls(s.pin_max_failures, s.pin_failure_window_s, s.pin_lockout_s)


@dataclass
class PinCheck:
    """`ok` (customer set), `wrong`, `locked` (this attempt or an earlier one locked it), `unknown` caller."""

    outcome: str
    customer: dict | None = None
    attempts_left: int | None = None
    locked_until: float | None = None


class SupportStore:
    def __init__(
        self,
        path: Path | str,
        seed_demo: bool = True,
        lockout: PinLockout | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """`lockout`: None reads the VOICE_PIN_* settings. `clock`: wall time, shared by every process."""
        self.lockout = lockout or PinLockout.from_settings()
        self._clock = clock
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
            self._db.execute(
                "INSERT INTO customers VALUES (?,?,?,?,?)", (customer_id, caller_id, name, salt, hash_pin(pin, salt))
            )
            for order_id, item, status, eta in orders:
                self._db.execute(
                    "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?)", (order_id, customer_id, item, status, eta)
                )
        return customer_id

    def verify_pin(self, caller_id: str, pin: str) -> dict | None:
        """The customer if `pin` is theirs and they are not locked out (counts like check_pin)."""
        return self.check_pin(caller_id, pin).customer

    def check_pin(self, caller_id: str, pin: str, session_id: str = "") -> PinCheck:
        """Check a PIN against the stored hash (constant time, same work for unknown callers),
        under the customer's lockout: while locked, no PIN is even compared."""
        with self._lock:
            row = self._db.execute(
                "SELECT customer_id, name, pin_salt, pin_hash FROM customers WHERE caller_id=?", (caller_id,)
            ).fetchone()
        if row is None:
            hash_pin(pin, b"\0" * 16)
            return PinCheck("unknown")
        customer_id, name, salt, stored = row
        matches = hmac.compare_digest(hash_pin(pin, salt), stored)
        policy, now = self.lockout, self._clock()
        with self._lock, self._db:  # one write transaction: check and count atomically, across processes too
            self._db.execute("BEGIN IMMEDIATE")
            q = "SELECT until_s FROM pin_locks WHERE customer_id=? AND until_s>?"
            until = self._db.execute(q, (customer_id, now)).fetchone()
            if until:
                return PinCheck("locked", locked_until=until[0])
            if matches:
                self._db.execute("DELETE FROM pin_failures WHERE customer_id=?", (customer_id,))
                return PinCheck("ok", {"customer_id": customer_id, "name": name})
            old = now - policy.window_s
            self._db.execute("DELETE FROM pin_failures WHERE customer_id=? AND at_s<=?", (customer_id, old))
            self._db.execute("INSERT INTO pin_failures VALUES (?,?)", (customer_id, now))
            q = "SELECT COUNT(*) FROM pin_failures WHERE customer_id=?"
            failures = self._db.execute(q, (customer_id,)).fetchone()[0]
            if failures < policy.max_failures:
                return PinCheck("wrong", attempts_left=policy.max_failures - failures)
            self._db.execute("DELETE FROM pin_failures WHERE customer_id=?", (customer_id,))
            self._db.execute("INSERT OR REPLACE INTO pin_locks VALUES (?,?)", (customer_id, now + policy.lockout_s))
        detail = {"customer_id": customer_id, "failures": failures, "window_s": policy.window_s}
        detail["lockout_s"] = policy.lockout_s
        self.record(session_id, "security", "pin_lockout", "locked", 0.0, detail)
        return PinCheck("locked", locked_until=now + policy.lockout_s)

    def customer(self, customer_or_caller_id: str) -> dict | None:
        """A customer by customer id or caller id, with the end of any PIN lock in force."""
        with self._lock:
            row = self._db.execute(
                "SELECT c.customer_id, c.caller_id, c.name, l.until_s FROM customers c LEFT JOIN pin_locks l"
                " ON l.customer_id=c.customer_id AND l.until_s>? WHERE c.customer_id=? OR c.caller_id=?",
                (self._clock(), customer_or_caller_id, customer_or_caller_id),
            ).fetchone()
        return dict(zip(("customer_id", "caller_id", "name", "locked_until"), row)) if row else None

    def unlock(self, customer_or_caller_id: str, by: str = "operator") -> dict | None:
        """Lift a customer's PIN lock and forget their failures (audited). None: no such customer."""
        found = self.customer(customer_or_caller_id)
        if found is None:
            return None
        with self._lock:
            self._db.execute("DELETE FROM pin_locks WHERE customer_id=?", (found["customer_id"],))
            self._db.execute("DELETE FROM pin_failures WHERE customer_id=?", (found["customer_id"],))
        outcome = "unlocked" if found["locked_until"] else "not_locked"
        self.record(by, "security", "pin_unlock", outcome, 0.0, {"customer_id": found["customer_id"], "by": by})
        return {**found, "was_locked": found["locked_until"] is not None, "locked_until": None}

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

    def record(self, session_id: str, kind: str, name: str, outcome: str, latency_ms: float, detail: dict) -> None:
        """Audit trail: every tool call and escalation, masked."""
        with self._lock:
            self._db.execute(
                "INSERT INTO audit VALUES (?,?,?,?,?,?,?)",
                (
                    int(time.time() * 1000),
                    session_id,
                    kind,
                    name,
                    mask_pii(outcome),
                    latency_ms,
                    mask_pii(json.dumps(detail)),
                ),
            )

    def audit(self, session_id: str | None = None) -> list[dict]:
        with self._lock:
            q = "SELECT at_ms, session_id, kind, name, outcome, latency_ms, detail FROM audit"
            rows = self._db.execute(
                q + (" WHERE session_id=?" if session_id else "") + " ORDER BY rowid",
                (session_id,) if session_id else (),
            ).fetchall()
        return [dict(zip(("at_ms", "session_id", "kind", "name", "outcome", "latency_ms", "detail"), r)) for r in rows]
