"""Conversation state that a session actor owns and checkpoints after every turn."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field


def now_ms() -> int:
    return int(time.time() * 1000)


class SessionStatus(str, Enum):
    ACTIVE = "active"
    ESCALATED = "escalated"
    ENDED = "ended"


class ToolResult(BaseModel):
    """Outcome of one tool call, kept on the turn that made it."""

    tool: str
    ok: bool
    output: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    latency_ms: float = 0.0
    attempts: int = 1
    # Where the answer came from: the tool itself, the state store's cache (an idempotent tool's
    # recent answer), or the workflow journal (a side effect this turn already ran, or is running).
    source: Literal["live", "cache", "journal"] = "live"


class PolicyDecision(BaseModel):
    """What the policy engine decided before the dialogue engine runs."""

    action: Literal["continue", "authenticate", "escalate", "refuse", "end"] = "continue"
    reason: str = ""


class TurnState(BaseModel):
    """One caller utterance (or typed text) and the agent's answer to it."""

    turn_id: int
    source: Literal["greeting", "speech", "text", "say", "reply", "checkin", "goodbye"] = (
        "speech"  # who started the turn
    )
    transcript: str = ""
    asr_confidence: float | None = None
    intent: str | None = None
    reply: list[str] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    policy: PolicyDecision = Field(default_factory=PolicyDecision)
    interrupted: bool = False
    started_at_ms: int = Field(default_factory=now_ms)
    metrics: dict[str, float] = Field(default_factory=dict)


class CallEvent(BaseModel):
    """Something that happened to a call, for the audit trail and the store."""

    kind: str
    at_ms: int = Field(default_factory=now_ms)
    turn_id: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class SessionState(BaseModel):
    """Everything needed to resume a call: identity, history and counters."""

    session_id: str
    caller_id: str
    locale: str = "en-US"
    status: SessionStatus = SessionStatus.ACTIVE
    authenticated: bool = False
    customer_id: str | None = None
    customer_name: str | None = None
    auth_failures: int = 0
    auth_locked: bool = False
    consecutive_failures: int = 0
    # The caller's answer to the recording notice (deployments/policy/consent.py): None, no notice
    # said; `declined`: the call goes on, and its words are never stored (`recorded_copy`).
    consent: Literal["pending", "given", "declined"] | None = None
    turns: list[TurnState] = Field(default_factory=list)
    events: list[CallEvent] = Field(default_factory=list)
    slots: dict[str, Any] = Field(default_factory=dict)
    # Bumped by every change to the memory or history a turn run ahead may have read; kept with
    # the state so a restored session never matches a version read before its actor died.
    version: int = 0
    resume_hash: str | None = None  # sha256 of the resume token's secret; the token itself is never stored
    dropped_at_ms: int | None = None  # the caller's socket dropped without hang-up: held for resume
    revision: int = 0  # the store's count of this state's writes: a writer that missed one is refused
    actor_id: str | None = None
    actor_name: str | None = None  # the named session actor: serve_app.session_api finds it by this
    started_at_ms: int = Field(default_factory=now_ms)
    updated_at_ms: int = Field(default_factory=now_ms)
    ended_at_ms: int | None = None
    end_reason: str | None = None

    @property
    def next_turn_id(self) -> int:
        return len(self.turns)

    def recorded_copy(self) -> SessionState:
        """The state as it may be stored: as is, or after a declined consent without a word the
        caller or the agent said (turns keep their ids, times, intents and tool outcomes)."""
        if self.consent != "declined":
            return self
        kept = self.model_copy()
        kept.turns = [t.model_copy(update={"transcript": "", "reply": []}) for t in self.turns]
        return kept
