"""`voice-agent purge`: delete calls (their transcripts) and audit entries older than
VOICE_RETENTION_DAYS now (the cluster's retention actor does it every
VOICE_RETENTION_PURGE_INTERVAL_S). `voice-agent audit [--customer ID] [--since T]`: the audit
trail, masked, oldest first. `voice-agent customers forget ID`: a customer's calls and
cross-call state deleted and their audit entries anonymised (audited).

Like `customers unlock`, they work on the configured stores directly (SQLite beside
VOICE_STORE_PATH, or Redis at VOICE_STORE_URL), so the platform need not be up. Exit codes: 0
done, 1 no such customer (forget) or nothing matched (audit --customer), 2 invalid configuration,
a bad argument or an unreachable store.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys

from common.pii import mask_pii


def add_parsers(sub) -> None:
    sub.add_parser("purge", help="delete calls and audit entries older than VOICE_RETENTION_DAYS").set_defaults(
        func=purge
    )
    audit_p = sub.add_parser("audit", help="list audit entries (masked), oldest first")
    audit_p.add_argument("--customer", help="only this customer's (customer id or caller id)")
    audit_p.add_argument("--since", help="ISO time (2026-12-01 or 2026-12-01T10:00) or an age: 90m, 24h, 7d")
    audit_p.set_defaults(func=audit)


def add_forget(actions) -> None:
    forget_p = actions.add_parser("forget", help="delete a customer's calls and anonymise their audit entries")
    forget_p.add_argument("id", help="customer id or caller id")
    forget_p.set_defaults(func=forget)


def open_configured(sessions: bool = True):
    """(settings, the configured state store), or an exit code (2) with the reason printed."""
    from common.config import ConfigError, load_settings
    from deployments.state import open_state

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    try:
        return settings, open_state(settings, sessions=sessions)
    except Exception as exc:  # Redis unreachable: name it, no traceback
        print(f"voice-agent: the state store is unreachable: {exc}", file=sys.stderr)
        return 2


def _on_state(work) -> int:
    """`work(settings, state)`'s exit code, on the configured store (closed after)."""
    opened = open_configured()
    if isinstance(opened, int):
        return opened
    settings, state = opened
    try:
        return work(settings, state)
    finally:
        state.close()


def _identities(settings, given: str) -> tuple[str | None, str | None, bool]:
    """(caller id, customer id, known to the support backend) for a customer id or caller id."""
    from deployments.tools.support_store import SupportStore

    if settings.support_db_path.exists():
        found = SupportStore(settings.support_db_path, seed_demo=False).customer(given)
        if found is not None:
            return found["caller_id"], found["customer_id"], True
    return given, given, False  # a caller who never signed in, or a customer the backend has dropped


def purge(args: argparse.Namespace) -> int:
    from deployments.state.governance import purge as run_purge

    def work(settings, state) -> int:
        done = run_purge(state, settings.retention_days * 86400)
        days = f"{settings.retention_days:g}"
        print(f"purged {done.sessions} calls and {done.audit_entries} audit entries older than {days} days")
        return 0

    return _on_state(work)


def forget(args: argparse.Namespace) -> int:
    from deployments.state.governance import forget as run_forget

    def work(settings, state) -> int:
        caller_id, customer_id, known = _identities(settings, args.id)
        done = run_forget(state, caller_id, customer_id, by=f"cli:{getpass.getuser()}")
        if not known and not (done.sessions or done.audit_entries or done.customer_state):
            print(f"voice-agent: nothing stored for customer id or caller id {args.id!r}", file=sys.stderr)
            return 1
        kept = "deleted" if done.customer_state else "none"
        forgotten = f"deleted {done.sessions} calls, anonymised {done.audit_entries} audit entries"
        print(mask_pii(f"{args.id}: {forgotten}, cross-call state {kept}"))
        return 0

    return _on_state(work)


def audit(args: argparse.Namespace) -> int:
    from deployments.state.governance import audit_entries

    try:
        since_ms = _since_ms(args.since) if args.since else None
    except ValueError as exc:
        print(f"voice-agent: --since: {exc}", file=sys.stderr)
        return 2

    def work(settings, state) -> int:
        caller_id, customer_id = _identities(settings, args.customer)[:2] if args.customer else (None, None)
        entries = audit_entries(state, caller_id, customer_id, since_ms)
        for e in entries:
            when = datetime.datetime.fromtimestamp(e["at_ms"] / 1000).astimezone().isoformat(timespec="seconds")
            ms = f"{float(e['latency_ms']):g}ms"
            print(
                mask_pii(
                    "  ".join(map(str, (when, e["session_id"], e["kind"], e["name"], e["outcome"], ms, e["detail"])))
                )
            )
        if args.customer and not entries:
            print(f"voice-agent: no audit entries for {args.customer!r}", file=sys.stderr)
            return 1
        return 0

    return _on_state(work)


def _since_ms(value: str) -> int:
    """An ISO time (local unless it names its zone) or an age before now (90m, 24h, 7d)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    now = datetime.datetime.now().astimezone()
    if value[-1:] in units and value[:-1].isdigit():
        return int((now.timestamp() - int(value[:-1]) * units[value[-1]]) * 1000)
    try:
        when = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO time nor an age such as 24h or 7d") from None
    return int((when if when.tzinfo else when.astimezone()).timestamp() * 1000)
