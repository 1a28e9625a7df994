"""`voice-agent customers unlock ID`: lift a customer's PIN lockout (audited).

ID is a customer id (`cust-demo-alice`) or a caller id (`demo-alice`). Works on the support
store file directly (VOICE_SUPPORT_DB_PATH), so the platform need not be up; every Dialogue
replica sees the change at the caller's next PIN. Exit codes: 0 unlocked (or was not
locked), 1 no such customer, 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import getpass
import sys


def add_parser(sub) -> None:
    customers = sub.add_parser("customers", help="customer accounts in the support store")
    actions = customers.add_subparsers(dest="action", required=True)
    unlock_p = actions.add_parser("unlock", help="lift a customer's PIN lockout (audited)")
    unlock_p.add_argument("id", help="customer id or caller id")
    unlock_p.set_defaults(func=unlock)


def unlock(args: argparse.Namespace) -> int:
    from common.config import ConfigError, load_settings
    from deployments.tools.support_store import PinLockout, SupportStore

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    if not settings.support_db_path.exists():
        print(f"voice-agent: no support store at {settings.support_db_path} (VOICE_SUPPORT_DB_PATH)", file=sys.stderr)
        return 1
    lockout = PinLockout(settings.pin_max_failures, settings.pin_failure_window_s, settings.pin_lockout_s)
    store = SupportStore(settings.support_db_path, seed_demo=False, lockout=lockout)
    found = store.unlock(args.id, by=f"cli:{getpass.getuser()}")
    if found is None:
        print(f"voice-agent: no customer with customer id or caller id {args.id!r}", file=sys.stderr)
        return 1
    state = "unlocked" if found["was_locked"] else "was not locked; failed PIN attempts cleared"
    print(f"{found['customer_id']} (caller id {found['caller_id']}): {state}")
    return 0
