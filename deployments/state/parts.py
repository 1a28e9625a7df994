"""The state store's parts, one interface each, the same for SQLite (`sqlite.py`) and Redis
(`redis_parts.py`); the README's "State store" section maps each to its pattern.

- `workflow`: a journal of side-effecting tool calls by idempotency key, pending before the
  call and done (with its result) after, so a retried turn never repeats the side effect.
- `cache`: answers of idempotent tools for a few seconds, keyed by tool and arguments.
- `customers`: state that outlives a call, per customer: PIN failures and lockout, the last
  order discussed, the preferred locale; it expires some time after its last write.
- `audit`: the trail of tool calls, escalations and security events, kept for a retention.

The PIN decision itself (`decide_pin`) is pure and shared; each backend runs it atomically
(SQLite: one `BEGIN IMMEDIATE` transaction; Redis: the same rules in one Lua script).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class JournalEntry:
    status: Literal["pending", "done"]
    result: dict | None = None  # done: {"ok", "output", "error"} as the tool answered
    at_ms: int = 0


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


@dataclass(frozen=True)
class PinAttempt:
    """One PIN attempt as the customer's state judged it."""

    outcome: Literal["ok", "wrong", "locked"]
    failures: int = 0  # wrong: failures in the window, this one included; locked_now: the count that locked
    locked_until: float | None = None
    locked_now: bool = False  # this attempt locked the customer (audited), not an earlier one


@dataclass(frozen=True)
class CustomerState:
    """What a customer's calls leave behind, raw: times are the PIN clock's (wall) seconds."""

    customer_id: str
    locked_until: float | None = None  # may lie in the past: a lock that has ended
    pin_failures: tuple[float, ...] = field(default_factory=tuple)
    last_order: str | None = None
    locale: str | None = None
    updated_at_ms: int = 0


def decide_pin(
    failures: list[float], locked_until: float | None, matched: bool, now: float, policy: PinLockout
) -> tuple[PinAttempt, list[float], float | None]:
    """The attempt's verdict and the customer's failures and lock after it. While locked no PIN
    counts, a right one clears the failures, `max_failures` wrong ones in `window_s` lock."""
    if locked_until is not None and locked_until > now:
        return PinAttempt("locked", locked_until=locked_until), failures, locked_until
    if matched:
        return PinAttempt("ok"), [], locked_until
    kept = [t for t in failures if t > now - policy.window_s] + [now]
    if len(kept) < policy.max_failures:
        return PinAttempt("wrong", failures=len(kept)), kept, locked_until
    until = now + policy.lockout_s
    return PinAttempt("locked", failures=len(kept), locked_until=until, locked_now=True), [], until


class Workflow(Protocol):
    def begin(self, key: str) -> JournalEntry | None:
        """Claim `key` (written pending): None. Already claimed: the entry found."""

    def get(self, key: str) -> JournalEntry | None: ...

    def finish(self, key: str, result: dict) -> None: ...

    def abandon(self, key: str) -> None:
        """The call failed before any side effect: the key may be claimed again."""


class Cache(Protocol):
    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, value: dict, ttl_s: float) -> None: ...


class Customers(Protocol):
    def pin_attempt(self, customer_id: str, matched: bool, now: float, policy: PinLockout) -> PinAttempt:
        """`decide_pin` on the stored state, atomically across processes and nodes."""

    def get(self, customer_id: str) -> CustomerState | None: ...

    def unlock(self, customer_id: str) -> CustomerState | None:
        """Lift the lock and forget the failures; the state as it was before, None if none."""

    def remember(self, customer_id: str, last_order: str | None = None, locale: str | None = None) -> None: ...

    def forget(self, customer_id: str) -> bool:
        """Delete the customer's cross-call state; whether there was any."""


class Audit(Protocol):
    def record(self, session_id: str, kind: str, name: str, outcome: str, latency_ms: float, detail: dict) -> None:
        """Masked before it is stored."""

    def read(self, session_id: str | None = None, since_ms: int | None = None) -> list[dict]:
        """Oldest first: at_ms, session_id, kind, name, outcome, latency_ms, detail (JSON text)."""

    def link(self, session_id: str, *identities: str) -> None:
        """This audited session is these callers' or customers' (kept hashed, as long as the entries):
        their entries can be found once the call state itself has expired."""

    def sessions_of(self, *identities: str) -> set[str]: ...

    def unlink(self, *identities: str) -> None: ...

    def anonymise(self, rewrite: Callable[[dict], dict | None]) -> int:
        """Replace each entry `rewrite` answers for (time and order kept); how many."""

    def purge(self, before_ms: int) -> int:
        """Delete entries (and links) older than `before_ms`; how many entries."""


AUDIT_FIELDS = ("at_ms", "session_id", "kind", "name", "outcome", "latency_ms", "detail")


def subject(identity: str) -> str:
    """A caller's or customer's id as the audit links keep it: a digest, never the id itself."""
    return hashlib.sha256(f"voice-subject:{identity}".encode()).hexdigest()[:32]
