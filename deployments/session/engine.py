"""Per-call conversation bookkeeping: turns, history, limits and checkpoints.

Pure Python (pydantic + sqlite3); the Ray actor around it only passes messages. The Gateway
numbers the turns (it speaks them) and sends each one's record once its reply has streamed;
this engine masks, applies the dialogue's verdict, and answers with the next `TurnContext`.
"""

from __future__ import annotations

from common.pii import mask_pii
from deployments.policy.slots import extract_pin
from deployments.session.resume import new_token, refusal
from deployments.session.store import Store
from models.dialogue import Exchange, TurnSummary
from models.session import TurnContext, TurnFinish, TurnRecord, TurnRecorded
from models.state import CallEvent, SessionState, SessionStatus, TurnState, now_ms

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
    "locale",  # read only: remembered per customer as their preferred language
    "consent",  # the recording notice's answer: declined, the call's words are never stored
)


def masked_transcript(transcript: str, awaiting: str | None) -> str:
    """The caller's words as they may be shown and stored: PII masked, and digits said when
    the agent asked for a PIN are a secret from the start."""
    if awaiting == "pin" and extract_pin(transcript):
        return "[PIN]"
    return mask_pii(transcript)


class SessionEngine:
    def __init__(self, store: Store, max_turns: int):
        self._store = store
        self._max_turns = max_turns
        self.state: SessionState | None = None

    def start(
        self, session_id: str, caller_id: str, locale: str, actor_id: str | None = None, actor_name: str | None = None
    ) -> SessionState:
        self.state = SessionState(
            session_id=session_id, caller_id=caller_id, locale=locale, actor_id=actor_id, actor_name=actor_name
        )
        self.state.events.append(CallEvent(kind="session.started", detail={"locale": locale}))
        self.checkpoint()
        return self.state

    def restore(self, session_id: str, actor_id: str | None = None, actor_name: str | None = None) -> SessionState:
        """Take over a live call from its last checkpoint (its actor died): memory, history and
        turn numbers go on; a turn run ahead before the death is stale."""
        state = self._store.load(session_id)
        if state is None:
            raise LookupError(f"no checkpoint for session {session_id}")
        if state.ended_at_ms is not None:
            raise LookupError(f"session {session_id} has ended ({state.end_reason})")
        state.actor_id, state.actor_name = actor_id, actor_name
        state.version += 1
        self.state = state
        self.record("session.restored")
        self.checkpoint()
        return state

    def issue_token(self) -> str:
        """A new resume token for the caller (the old one stops working)."""
        token, self.state.resume_hash = new_token(self.state.session_id)
        self.checkpoint()
        return token

    def hold(self) -> None:
        """The caller's socket dropped without a hang-up: keep the call for a resume."""
        self.state.dropped_at_ms = now_ms()
        self.record("caller.dropped")
        self.checkpoint()

    def rejoin(self) -> None:
        """Undo a hold made because the Gateway's lease lapsed, when the Gateway turns out alive."""
        self.state.dropped_at_ms = None
        self.record("session.rejoined")
        self.checkpoint()

    def resume(self, token: str, caller_id: str, window_s: float) -> str | None:
        """Take the call up again on a new socket: a new token, or None when `token` may not."""
        if (why := refusal(self.state, token, caller_id, now_ms(), window_s)) is not None:
            self.record("resume.refused", reason=why)
            return None
        self.state.dropped_at_ms = None
        self.record("session.resumed")
        return self.issue_token()

    @property
    def version(self) -> int:
        """Bumped by every change to the memory or history a turn run ahead may have read, so a
        turn prepared before a typed turn, a session-API reply or a barge-in is not applied."""
        return self.state.version

    def context(self) -> TurnContext:
        state = self.state
        history = [
            Exchange(user=t.transcript, agent=" ".join(t.reply))
            for t in state.turns
            if t.source != "greeting" and t.reply
        ]
        return TurnContext(
            session_id=state.session_id,
            caller_id=state.caller_id,
            version=self.version,
            next_turn_id=max((t.turn_id for t in state.turns), default=-1) + 1,
            memory=self.memory(),
            history=history,
            awaiting=self.awaiting,
            over_turn_limit=self.over_turn_limit,
        )

    def record_turn(self, record: TurnRecord) -> TurnRecorded:
        """Record a turn: its words, masked, and the dialogue's verdict. A turn run ahead is
        refused (`stale`) when anything changed since it read its context."""
        if (done := self.turn(record.turn_id)) is not None:  # sent again after an actor died
            return TurnRecorded(transcript=done.transcript, context=self.context())
        if record.read_version is not None and record.read_version != self.version:
            return TurnRecorded(stale=True, context=self.context())
        turn = TurnState(
            turn_id=record.turn_id,
            source=record.source,
            transcript=masked_transcript(record.transcript, self.awaiting),
            asr_confidence=record.confidence,
            reply=[mask_pii(s) for s in record.sentences],
        )
        self.state.turns.append(turn)
        self.state.version += 1
        if record.summary is not None:
            self._apply(turn, record.summary)
        self.checkpoint()  # the memory it changed (a login, a return's step) survives the actor
        return TurnRecorded(transcript=turn.transcript, context=self.context())

    @property
    def awaiting(self) -> str | None:
        """What the agent asked the caller for (`pin`, `order_id` ...), if anything."""
        return self.state.slots.get("awaiting")

    @property
    def over_turn_limit(self) -> bool:
        """The next caller turn would be past the limit: it gets the goodbye."""
        caller_turns = sum(1 for t in self.state.turns if t.source != "greeting")
        return caller_turns >= self._max_turns

    def memory(self) -> dict:
        return self.state.model_dump(include=set(MEMORY_FIELDS), mode="json")

    def _apply(self, turn: TurnState, summary: TurnSummary) -> None:
        """Take the dialogue engine's verdict on a turn: memory, intent, tools, escalation."""
        for name, value in (summary.memory or {}).items():
            if name in MEMORY_FIELDS:
                setattr(self.state, name, value)
        turn.intent = summary.intent
        if summary.policy is not None:
            turn.policy = summary.policy
        turn.tool_results = list(summary.tool_results)
        if summary.sensitive:
            turn.transcript = "[PIN]"  # a secret was said: it never reaches the store
        for tool in turn.tool_results:
            self.record("tool", turn.turn_id, tool=tool.tool, ok=tool.ok, error=tool.error, latency_ms=tool.latency_ms)
        if summary.escalate:
            self.state.status = SessionStatus.ESCALATED
            self.record("escalation", turn.turn_id, reason=summary.escalate)

    def turn(self, turn_id: int) -> TurnState | None:
        return next((t for t in reversed(self.state.turns) if t.turn_id == turn_id), None)

    def finish_turn(self, finish: TurnFinish) -> TurnContext:
        """Close a turn and checkpoint; after a barge-in only what the caller heard of the
        reply stays in the history the dialogue sees."""
        turn = self.turn(finish.turn_id)
        if turn is not None:
            turn.metrics.update(finish.metrics)
            turn.interrupted = turn.interrupted or finish.interrupted
            if finish.heard is not None:
                turn.reply = [mask_pii(s) for s in finish.heard]
                self.state.version += 1  # the history changed
        self.checkpoint()
        return self.context()

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
        """Save the state; after a declined consent without the call's words (every turn's,
        earlier ones too: the whole state is rewritten)."""
        self.state.updated_at_ms = now_ms()
        stored = self.state.recorded_copy()
        try:
            self._store.save(stored)
        finally:
            self.state.revision = stored.revision
