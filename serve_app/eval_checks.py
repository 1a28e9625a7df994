"""Scenario schema and expectation checks for `voice-eval`.

Kept strict on purpose: an unknown key or category is an error, because a misspelt
expectation (`expect_tol`) would otherwise be ignored and its turn would silently pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CATEGORIES = (
    "order_status",
    "returns",
    "knowledge",
    "escalation",
    "injection",
    "negation",
    "numbers",
    "small_talk",
    "mid_workflow",
    "lockout",
)
SCENARIO_KEYS = {"name", "category", "caller_id", "turns"}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _reply(result) -> str:
    return " ".join(result.sentences)


def _tool(expected, result, memory) -> list[str]:
    tools = [t.tool for t in result.tool_results]
    if expected in (None, False, "none"):
        return [f"expected no tool, called {tools}"] if tools else []
    return [f"expected tool {t}, called {tools or 'none'}" for t in _as_list(expected) if t not in tools]


def _escalation(expected, result, memory) -> list[str]:
    if expected is False and result.escalate:
        return [f"unexpected escalation ({result.escalate})"]
    if expected is True and not result.escalate:
        return ["expected an escalation, none happened"]
    if isinstance(expected, str) and result.escalate != expected:
        return [f"expected escalation {expected}, got {result.escalate}"]
    return []


def _contains(expected, result, memory) -> list[str]:
    reply = _reply(result)
    return [f"reply lacks {n!r}: {reply!r}" for n in _as_list(expected) if str(n).lower() not in reply.lower()]


def _not_contains(expected, result, memory) -> list[str]:
    reply = _reply(result)
    return [f"reply should not contain {n!r}: {reply!r}" for n in _as_list(expected) if str(n).lower() in reply.lower()]


def answered_from_kb(result) -> bool:
    """The reply carries a knowledge-base answer: the engine says so with intent "knowledge"
    (set only when an answer cleared the confidence bar), never merely because it looked."""
    return result.intent == "knowledge"


def _flag(label: str, actual: Callable[[Any, dict], bool]):
    def check(expected, result, memory) -> list[str]:
        got = actual(result, memory)
        if got == bool(expected):
            return []
        return [f"expected {label}={bool(expected)}, was {got} (reply: {_reply(result)!r})"]

    return check


CHECKS: dict[str, Callable[[Any, Any, dict], list[str]]] = {
    "expect_tool": _tool,
    "expect_escalation": _escalation,
    "expect_reply_contains": _contains,
    "expect_reply_not_contains": _not_contains,
    "expect_authenticated": _flag("authenticated", lambda r, m: bool(m.get("authenticated"))),
    "expect_refused": _flag("refused", lambda r, m: r.policy.action == "refuse"),
    "expect_kb": _flag("kb", lambda r, m: answered_from_kb(r)),
    "expect_asks_pin": _flag("asks_pin", lambda r, m: (m.get("slots") or {}).get("awaiting") == "pin"),
    "expect_end_call": _flag("end_call", lambda r, m: bool(r.end_call)),
}
TURN_KEYS = {"user", "category"} | set(CHECKS)


def check_turn(turn: dict, result, memory: dict) -> list[str]:
    """Every expectation of one turn that the agent's result does not meet."""
    return [p for key, check in CHECKS.items() if key in turn for p in check(turn[key], result, memory)]


def scored(turn: dict) -> bool:
    """A turn counts towards accuracy when it expects something (the others only set the scene)."""
    return any(key in turn for key in CHECKS)


def validate(sc: Any, where: str) -> dict:
    """The scenario as given, or a ValueError that names the file, scenario and bad key."""
    if not isinstance(sc, dict) or not sc.get("name") or not isinstance(sc.get("turns"), list) or not sc["turns"]:
        raise ValueError(f"{where}: every scenario needs a name and a list of turns: {sc!r:.120}")
    where = f"{where}: scenario {sc['name']!r}"
    if unknown := set(sc) - SCENARIO_KEYS:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SCENARIO_KEYS)}")
    for n, turn in enumerate(sc["turns"], 1):
        if not isinstance(turn, dict) or not isinstance(turn.get("user"), str):
            raise ValueError(f"{where}, turn {n}: needs a 'user' line")
        if unknown := set(turn) - TURN_KEYS:
            raise ValueError(f"{where}, turn {n}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TURN_KEYS)}")
        category = turn.get("category", sc.get("category"))
        if category not in CATEGORIES:
            raise ValueError(f"{where}, turn {n}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    return sc
