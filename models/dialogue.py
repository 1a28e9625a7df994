"""What the Gateway and the Dialogue deployment say to each other: a turn's request, then a
stream of sentences closed by one summary (typed, so no one recognises an item by its keys)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from models.state import PolicyDecision, ToolResult


class Exchange(BaseModel):
    """One earlier turn as the dialogue sees it: what the caller said, what the agent said."""

    user: str
    agent: str


class DialogueRequest(BaseModel):
    transcript: str
    memory: dict[str, Any]
    session_id: str = ""
    caller_id: str = ""
    history: list[Exchange] = Field(default_factory=list)
    turn_id: int | None = None  # the Gateway's number for the turn: a retried turn runs no side effect twice
    run_ahead: bool = False  # the caller may not have finished: refuse anything that cannot be taken back
    from_caller: bool = True  # the caller's words (not a session-API instruction): may answer the recording notice


class Sentence(BaseModel):
    """One sentence of the reply, streamed as soon as the engine has it."""

    text: str
    engine_ms: float | None = None  # on the first: the engine's own time to it, hops excluded


class TurnSummary(BaseModel):
    """The close of a reply stream: the engine's verdict on the turn."""

    intent: str | None = None
    score: float = 0.0
    end_call: bool = False
    escalate: str | None = None
    memory: dict[str, Any] | None = None  # the caller's memory after the turn; None: unchanged
    policy: PolicyDecision | None = None
    tool_results: list[ToolResult] = Field(default_factory=list)
    sensitive: bool = False  # the caller said a secret (a PIN): keep the transcript out of the store
    kb_confidence: float | None = None
    refused: bool = False  # a turn run ahead that needs a tool or a human: run it at the endpoint
    model: str | None = None  # the language model that answered (the OpenAI engine), for the trace
    usage: dict[str, int] | None = None  # its tokens over the turn: input, output, total

    @property
    def end_reason(self) -> Literal["escalated", "max_turns", "agent_hangup"] | None:
        if self.escalate:
            return "escalated"
        if self.end_call:
            return "max_turns" if self.intent == "max_turns" else "agent_hangup"
        return None
