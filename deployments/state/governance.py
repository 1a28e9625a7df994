"""Retention, the right to be forgotten and the audit listing, over the state store's parts:
plain functions, the same on SQLite and Redis, run by `voice-agent purge|audit|customers forget`
(serve_app/governance_cli.py) and, for retention, by the cluster's retention actor
(`retention_actor.py`).

- `purge`: calls (their transcripts) and audit entries last written more than the retention ago.
- `forget`: a customer's calls deleted, their cross-call state deleted, and their audit entries
  anonymised: kept for the counts (kind, tool, outcome, time) but no longer tied to anyone.
  The forgetting is audited itself, naming the customer only by digest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from deployments.state import State
from deployments.state.parts import subject

FORGOTTEN = "[forgotten]"  # an anonymised entry's session id


@dataclass(frozen=True)
class Purged:
    sessions: int
    audit_entries: int


@dataclass(frozen=True)
class Forgotten:
    sessions: int
    audit_entries: int
    customer_state: bool


def _now_ms() -> int:
    return int(time.time() * 1000)


def purge(state: State, retention_s: float, now_ms: int | None = None) -> Purged:
    """Delete what is older than the retention; `state` opened with its sessions part."""
    before = (now_ms if now_ms is not None else _now_ms()) - int(retention_s * 1000)
    return Purged(state.sessions.purge(before), state.audit.purge(before))


def _detail_customer(entry: dict) -> str | None:
    try:
        detail = json.loads(entry.get("detail") or "{}")
    except ValueError:
        return None
    return detail.get("customer_id") if isinstance(detail, dict) else None


def _concerns(entry: dict, sessions: set[str], customer_id: str | None) -> bool:
    return entry["session_id"] in sessions or (customer_id is not None and _detail_customer(entry) == customer_id)


def sessions_of(state: State, caller_id: str | None, customer_id: str | None) -> set[str]:
    """The customer's calls: those stored, and those the audit links still know after the calls expired."""
    ids = [i for i in (caller_id, customer_id) if i]
    return state.sessions.find(caller_id, customer_id) | state.audit.sessions_of(*ids)


def forget(state: State, caller_id: str | None, customer_id: str | None, by: str) -> Forgotten:
    """Delete the calls of `caller_id` or `customer_id`, the customer's cross-call state, and
    anonymise their audit entries; audited as `governance`/`customer_forget`."""
    sessions = sessions_of(state, caller_id, customer_id)
    deleted = state.sessions.delete(sessions)

    def rewrite(entry: dict) -> dict | None:
        if not _concerns(entry, sessions, customer_id):
            return None
        return {
            **entry,
            "session_id": FORGOTTEN if entry["session_id"] in sessions else entry["session_id"],
            "detail": "{}",
        }

    anonymised = state.audit.anonymise(rewrite)
    state.audit.unlink(*[i for i in (caller_id, customer_id) if i])
    had_state = state.customers.forget(customer_id) if customer_id else False
    detail = {"subject": subject(customer_id or caller_id or ""), "sessions": deleted, "audit_entries": anonymised}
    state.audit.record(by, "governance", "customer_forget", "forgotten", 0.0, detail)
    return Forgotten(deleted, anonymised, had_state)


def audit_entries(
    state: State, caller_id: str | None = None, customer_id: str | None = None, since_ms: int | None = None
) -> list[dict]:
    """Audit entries (masked when written), oldest first; only the customer's when one is named."""
    entries = state.audit.read(since_ms=since_ms)
    if caller_id is None and customer_id is None:
        return entries
    sessions = sessions_of(state, caller_id, customer_id)
    return [e for e in entries if _concerns(e, sessions, customer_id)]
