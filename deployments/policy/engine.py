"""The policy engine: checks that run, in this order, before any dialogue engine sees a turn.

1. authentication gate   2. explicit escalation   3. consecutive failures
4. content safety (prompt injection is refused here, so it never reaches an LLM)   5. continue
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.state import PolicyDecision

ESCALATION_PATTERNS = [
    r"\b(speak|talk|chat)\s+(to|with)\s+(a|an|the|some)?\s*(real\s+|live\s+|actual\s+)?(person|human|agent|representative|operator|someone|somebody|manager|supervisor)\b",
    r"\b(transfer|connect|put)\s+me\s+(through\s+)?(to|with)\b",
    r"\b(human|real person|live agent|operator|representative)\s*(please|now)?\s*$",
    r"\bescalate\b",
    r"\bget\s+me\s+(a|an)\s+(human|person|agent|manager|supervisor)\b",
]
INJECTION_PATTERNS = [
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions|rules|prompt|guidelines|above|previous)\b",
    r"\b(system|developer)\s+(prompt|message|instructions)\b",
    r"\byou\s+are\s+now\b",
    r"\b(pretend|act)\s+(to\s+be|as\s+if|as)\b",
    r"\b(jailbreak|dan\s+mode|developer\s+mode)\b",
    r"\b(reveal|show|print|repeat)\b.{0,30}\b(prompt|instructions|rules)\b",
    r"\bnew\s+instructions\b",
]
_ESCALATION = [re.compile(p, re.I) for p in ESCALATION_PATTERNS]
_INJECTION = [re.compile(p, re.I) for p in INJECTION_PATTERNS]


@dataclass
class PolicyContext:
    authenticated: bool
    auth_locked: bool
    needs_auth: bool  # the turn's intent touches account or order data
    consecutive_failures: int


class PolicyEngine:
    def __init__(self, max_consecutive_failures: int = 3):
        self.max_consecutive_failures = max_consecutive_failures

    @staticmethod
    def wants_human(text: str) -> bool:
        return any(p.search(text) for p in _ESCALATION)

    @staticmethod
    def is_injection(text: str) -> bool:
        return any(p.search(text) for p in _INJECTION)

    def decide(self, text: str, ctx: PolicyContext) -> PolicyDecision:
        if ctx.needs_auth and not ctx.authenticated:
            if ctx.auth_locked:
                return PolicyDecision(action="escalate", reason="auth_locked")
            return PolicyDecision(action="authenticate", reason="account_data_needs_pin")
        if self.wants_human(text):
            return PolicyDecision(action="escalate", reason="caller_request")
        if ctx.consecutive_failures >= self.max_consecutive_failures:
            return PolicyDecision(action="escalate", reason="consecutive_failures")
        if self.is_injection(text):
            return PolicyDecision(action="refuse", reason="prompt_injection")
        return PolicyDecision(action="continue")
