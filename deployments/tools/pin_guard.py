"""PIN checks under a lockout per customer, across calls: the support backend says whether a PIN
is right, the state store's `customers` part decides what the attempt counts for.

`max_failures` wrong PINs within `window_s` lock that customer's phone authentication for
`lockout_s`, whatever PIN comes next (a call's own memory is gone when the caller redials).
The count and the lock are one atomic step in the customers part, so every Dialogue replica,
on any node sharing the store, sees the same lock. A lock, and an operator's unlock, are audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from deployments.state.parts import Audit, Customers, PinLockout
from deployments.tools.support_store import SupportStore


@dataclass
class PinCheck:
    """`ok` (customer set), `wrong`, `locked` (this attempt or an earlier one locked it), `unknown` caller."""

    outcome: str
    customer: dict | None = None
    attempts_left: int | None = None
    locked_until: float | None = None


class PinGuard:
    def __init__(
        self,
        store: SupportStore,
        customers: Customers,
        audit: Audit,
        lockout: PinLockout | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """`lockout`: None reads the VOICE_PIN_* settings. `clock`: wall time, shared by every process."""
        self.store, self._customers, self._audit = store, customers, audit
        self.lockout = lockout or PinLockout.from_settings()
        self._clock = clock

    def check_pin(self, caller_id: str, pin: str, session_id: str = "") -> PinCheck:
        """While the customer is locked no attempt counts, a right PIN included. A verified
        customer comes with what earlier calls left (`last_order`, `locale`) to offer."""
        found = self.store.match_pin(caller_id, pin)
        if found is None:
            return PinCheck("unknown")
        customer, matches = found
        customer_id = customer["customer_id"]
        attempt = self._customers.pin_attempt(customer_id, matches, self._clock(), self.lockout)
        if attempt.outcome == "ok":
            kept = self._customers.get(customer_id)
            remembered = {"last_order": kept.last_order, "locale": kept.locale} if kept else {}
            return PinCheck("ok", {**customer, **{k: v for k, v in remembered.items() if v}})
        if attempt.outcome == "wrong":
            return PinCheck("wrong", attempts_left=self.lockout.max_failures - attempt.failures)
        if attempt.locked_now:
            detail = {"customer_id": customer_id, "failures": attempt.failures, "window_s": self.lockout.window_s}
            detail["lockout_s"] = self.lockout.lockout_s
            self._audit.record(session_id, "security", "pin_lockout", "locked", 0.0, detail)
        return PinCheck("locked", locked_until=attempt.locked_until)

    def verify_pin(self, caller_id: str, pin: str) -> dict | None:
        """The customer if `pin` is theirs and they are not locked out (counts like check_pin)."""
        return self.check_pin(caller_id, pin).customer

    def customer(self, customer_or_caller_id: str) -> dict | None:
        """A customer by customer id or caller id, with their cross-call state: the end of any
        PIN lock in force, failed PINs in the window, last order, locale. Never the PIN."""
        found = self.store.customer(customer_or_caller_id)
        if found is None:
            return None
        kept, now = self._customers.get(found["customer_id"]), self._clock()
        locked = kept.locked_until if kept and kept.locked_until and kept.locked_until > now else None
        failures = sum(1 for t in kept.pin_failures if t > now - self.lockout.window_s) if kept else 0
        return {
            **found,
            "locked_until": locked,
            "pin_failures": failures,
            "last_order": kept.last_order if kept else None,
            "locale": kept.locale if kept else None,
            "updated_at_ms": kept.updated_at_ms if kept else None,
        }

    def unlock(self, customer_or_caller_id: str, by: str = "operator") -> dict | None:
        """Lift a customer's PIN lock and forget their failures (audited). None: no such customer."""
        found = self.customer(customer_or_caller_id)
        if found is None:
            return None
        was = self._customers.unlock(found["customer_id"])  # the state as the unlock found it
        locked = bool(was and was.locked_until and was.locked_until > self._clock())
        outcome = "unlocked" if locked else "not_locked"
        self._audit.record(by, "security", "pin_unlock", outcome, 0.0, {"customer_id": found["customer_id"], "by": by})
        return {**found, "was_locked": locked, "locked_until": None, "pin_failures": 0}
