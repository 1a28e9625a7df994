"""`voice-agent customers unlock ID`: lift a customer's PIN lockout (audited).
`voice-agent customers show ID`: what the customer's calls left behind (lock, failed PINs in
the window, last order, preferred locale), masked, never the PIN.
`voice-agent customers forget ID`: see `governance_cli.py`.

ID is a customer id (`cust-demo-alice`) or a caller id (`demo-alice`). Works on the configured
stores directly (the support backend at VOICE_SUPPORT_DB_PATH, the state store's `customers`
part: SQLite beside VOICE_STORE_PATH or Redis at VOICE_STORE_URL), so the platform need not be
up; every Dialogue replica sees an unlock at the caller's next PIN. Exit codes: 0 done, 1 no
such customer, 2 invalid configuration or an unreachable store.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys

from common.pii import mask_pii
from serve_app import governance_cli


def add_parser(sub) -> None:
    customers = sub.add_parser("customers", help="customer accounts and their cross-call state")
    actions = customers.add_subparsers(dest="action", required=True)
    unlock_p = actions.add_parser("unlock", help="lift a customer's PIN lockout (audited)")
    unlock_p.add_argument("id", help="customer id or caller id")
    unlock_p.set_defaults(func=unlock)
    show_p = actions.add_parser("show", help="a customer's cross-call state (masked, never the PIN)")
    show_p.add_argument("id", help="customer id or caller id")
    show_p.set_defaults(func=show)
    governance_cli.add_forget(actions)


def _guard():
    """The PIN guard over the configured stores, or an exit code."""
    from deployments.state.parts import PinLockout
    from deployments.tools.pin_guard import PinGuard
    from deployments.tools.support_store import SupportStore

    opened = governance_cli.open_configured(sessions=False)
    if isinstance(opened, int):
        return opened
    settings, state = opened
    if not settings.support_db_path.exists():
        print(f"voice-agent: no support store at {settings.support_db_path} (VOICE_SUPPORT_DB_PATH)", file=sys.stderr)
        return 1
    lockout = PinLockout(settings.pin_max_failures, settings.pin_failure_window_s, settings.pin_lockout_s)
    return PinGuard(SupportStore(settings.support_db_path, seed_demo=False), state.customers, state.audit, lockout)


def unlock(args: argparse.Namespace) -> int:
    guard = _guard()
    if isinstance(guard, int):
        return guard
    found = guard.unlock(args.id, by=f"cli:{getpass.getuser()}")
    if found is None:
        return _no_such(args.id)
    state = "unlocked" if found["was_locked"] else "was not locked; failed PIN attempts cleared"
    print(mask_pii(f"{found['customer_id']} (caller id {found['caller_id']}): {state}"))
    return 0


def show(args: argparse.Namespace) -> int:
    guard = _guard()
    if isinstance(guard, int):
        return guard
    found = guard.customer(args.id)
    if found is None:
        return _no_such(args.id)
    lines = [
        mask_pii(f"customer     {found['customer_id']} (caller id {found['caller_id']})"),  # a caller id may be a phone
        f"PIN lock     {'until ' + _when(found['locked_until']) if found['locked_until'] else 'none'}",
        f"failed PINs  {found['pin_failures']} in the last {guard.lockout.window_s:g} s",
        f"last order   {found['last_order'] or '-'}",
        f"locale       {found['locale'] or '-'}",
        f"updated      {_when(found['updated_at_ms'] / 1000) if found['updated_at_ms'] else '-'}",
    ]
    print("\n".join(lines))
    return 0


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _no_such(customer: str) -> int:
    print(f"voice-agent: no customer with customer id or caller id {customer!r}", file=sys.stderr)
    return 1
