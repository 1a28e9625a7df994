"""One PIN decision for both dialogue engines: the store's verdict, this call's count, the memory.

The local agent speaks the outcome and the LLM engine tells it to the model, each in its own
words; what a PIN check *means* (locked, how many tries are left, who the caller is) is decided
only here, so the two engines cannot drift apart on security.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from models.state import ToolResult


class PinVerdict(enum.Enum):
    VERIFIED = "verified"
    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"  # the call goes to a human: by the store (across calls) or this call's own count
    UNAVAILABLE = "unavailable"  # the check itself failed: nothing is known about the PIN


@dataclass(frozen=True)
class PinOutcome:
    verdict: PinVerdict
    attempts_left: int = 0  # WRONG_PIN: the fewer of this call's and the store's (across calls); LOCKED: 0
    by_store: bool = False  # LOCKED: the store refused the PIN unchecked, a right one too
    name: str | None = None  # VERIFIED: the customer's name
    error: str | None = None  # UNAVAILABLE: the tool's error


def judge_pin(result: ToolResult, memory: dict, max_failures: int) -> PinOutcome:
    """Decide from the `verify_pin` tool result and update the authentication fields of `memory`
    (authenticated, customer_id, customer_name, auth_failures, auth_locked, and the remembered
    `last_order` slot) in place."""
    if result.error == "auth_locked":  # the store's lockout, across calls: even a right PIN is refused
        memory["auth_locked"] = True
        return PinOutcome(PinVerdict.LOCKED, by_store=True)
    if result.ok:
        memory.update(
            authenticated=True,
            customer_id=result.output["customer_id"],
            customer_name=result.output["name"],
            auth_failures=0,
        )
        if last := result.output.get("last_order"):  # from the customer's earlier calls: offered once
            memory["slots"]["last_order"] = last
        return PinOutcome(PinVerdict.VERIFIED, name=result.output["name"])
    if result.error != "wrong_pin":
        return PinOutcome(PinVerdict.UNAVAILABLE, error=result.error)
    memory["auth_failures"] += 1  # this call's count, for "N attempts left"; the store decides the lock
    here = max(0, max_failures - memory["auth_failures"])
    if memory["auth_failures"] >= max_failures:
        memory["auth_locked"] = True
        return PinOutcome(PinVerdict.LOCKED)
    stored = result.output.get("attempts_left")
    return PinOutcome(PinVerdict.WRONG_PIN, here if stored is None else min(here, stored))


async def check_pin(
    tools, pin: str, caller_id: str, session_id: str, memory: dict, results: list, max_failures: int
) -> PinOutcome:
    """Ask the store through the tool router (the caller's identity from the session, never the
    model), keep the tool result on the turn, and judge it."""
    args = {"caller_id": caller_id, "pin": pin, "session_id": session_id}
    result = await tools.call("verify_pin", args, session_id)
    results.append(result)
    return judge_pin(result, memory, max_failures)
