"""Per-call conversation bookkeeping: turns, history, limits and checkpoints.

Pure Python (pydantic + sqlite3); the Ray actor around it adds only the dialogue call.
"""

from __future__ import annotations

from common.pii import mask_pii
from deployments.policy.slots import extract_pin
from deployments.session.store import SessionStore
from models.state import CallEvent, PolicyDecision, SessionState, SessionStatus, ToolResult, TurnState, now_ms

MAX_TURNS_GOODBYE = "We've covered a lot on this call, so I'll end it here. Thanks for calling. Goodbye."
# What the dialogue engine may read and update between turns.
MEMORY_FIELDS = (
    "authenticated",
    "customer_id",
    "customer_name",
    "auth_failures",
    "auth_locked",
    "consecutive_failures",
    "slots",
)


class SessionEngine:
    def __init__(self, store: SessionStore, max_turns: int):
        self._store = store
        self._max_turns = max_turns
        self.state: SessionState | None = None
        # Bumped by every change to the memory or history a turn run ahead may have read, so
        # a turn prepared before a typed turn, a session-API reply or a command is not applied.
        self.version = 0

    def start(
        self, session_id: str, caller_id: str, locale: str, actor_id: str | None = None, actor_name: str | None = None
    ) -> SessionState:
        self.state = SessionState(
            session_id=session_id, caller_id=caller_id, locale=locale, actor_id=actor_id, actor_name=actor_name
        )
        self.state.events.append(CallEvent(kind="session.started", detail={"locale": locale}))
        self.checkpoint()
        return self.state

    def begin_turn(self, transcript: str, source: str, confidence: float | None = None) -> TurnState:
        masked = mask_pii(transcript)
        if self.state.slots.get("awaiting") == "pin" and extract_pin(transcript):
            masked = "[PIN]"  # the agent asked for a PIN and digits came: a secret from the start
        turn = TurnState(turn_id=self.state.next_turn_id, source=source, transcript=masked, asr_confidence=confidence)
        self.state.turns.append(turn)
        self.version += 1
        return turn

    def commit_prepared(
        self, transcript: str, source: str, confidence: float | None, prepared: dict
    ) -> TurnState | None:
        """Record a turn run ahead (`prepared`: sentences, summary, the version it read), or
        None when anything changed since: its memory would overwrite the newer one."""
        if prepared.get("version") != self.version:
            return None
        turn = self.begin_turn(transcript, source, confidence)
        for sentence in prepared["sentences"]:
            self.add_sentence(turn, sentence)
        self.apply_result(turn, prepared["summary"])
        return turn

    @property
    def awaiting(self) -> str | None:
        """What the agent asked the caller for (`pin`, `order_id` ...), if anything."""
        return self.state.slots.get("awaiting")

    @property
    def over_turn_limit(self) -> bool:
        caller_turns = sum(1 for t in self.state.turns if t.source != "greeting")
        return caller_turns > self._max_turns

    def add_sentence(self, turn: TurnState, sentence: str) -> None:
        turn.reply.append(mask_pii(sentence))

    def memory(self) -> dict:
        return self.state.model_dump(include=set(MEMORY_FIELDS), mode="json")

    def apply_result(self, turn: TurnState, summary: dict) -> None:
        """Take the dialogue engine's verdict on a turn: memory, intent, tools, escalation."""
        self.version += 1
        for name, value in (summary.get("memory") or {}).items():
            if name in MEMORY_FIELDS:
                setattr(self.state, name, value)
        turn.intent = summary.get("intent")
        if summary.get("policy"):
            turn.policy = PolicyDecision.model_validate(summary["policy"])
        turn.tool_results = [ToolResult.model_validate(t) for t in summary.get("tool_results") or []]
        if summary.get("sensitive"):
            turn.transcript = "[PIN]"  # a secret was said: it never reaches the store
        for tool in turn.tool_results:
            self.record("tool", turn.turn_id, tool=tool.tool, ok=tool.ok, error=tool.error, latency_ms=tool.latency_ms)
        if summary.get("escalate"):
            self.state.status = SessionStatus.ESCALATED
            self.record("escalation", turn.turn_id, reason=summary["escalate"])

    def finish_turn(
        self,
        turn_id: int,
        metrics: dict[str, float] | None = None,
        interrupted: bool = False,
        heard: list[str] | None = None,
    ) -> None:
        """Close a turn; after a barge-in `heard` is the part of the reply the caller heard,
        and only that stays in the history the dialogue sees."""
        if 0 <= turn_id < len(self.state.turns):
            turn = self.state.turns[turn_id]
            turn.metrics.update(metrics or {})
            turn.interrupted = turn.interrupted or interrupted
            if heard is not None:
                turn.reply = [mask_pii(s) for s in heard]
                self.version += 1  # the history changed
        self.checkpoint()

    def record(self, kind: str, turn_id: int | None = None, **detail) -> None:
        self.state.events.append(CallEvent(kind=kind, turn_id=turn_id, detail=detail))

    def close(self, reason: str) -> SessionState:
        if self.state.ended_at_ms is None:
            if self.state.status == SessionStatus.ACTIVE:
                self.state.status = SessionStatus.ENDED
            self.state.ended_at_ms = now_ms()
            self.state.end_reason = reason
            self.record("session.ended", reason=reason)
        self.checkpoint()
        return self.state

    def checkpoint(self) -> None:
        self.state.updated_at_ms = now_ms()
        self._store.save(self.state)
