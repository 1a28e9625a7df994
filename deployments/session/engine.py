"""Per-call conversation bookkeeping: turns, history, limits and checkpoints.

Pure Python (pydantic + sqlite3); the Ray actor around it adds only the dialogue call.
"""

from __future__ import annotations

from models.state import CallEvent, SessionState, SessionStatus, TurnState, now_ms
from serve_app.pii import mask_pii

from deployments.session.store import SessionStore

MAX_TURNS_GOODBYE = "We've covered a lot on this call, so I'll end it here. Thanks for calling. Goodbye."


class SessionEngine:
    def __init__(self, store: SessionStore, max_turns: int):
        self._store = store
        self._max_turns = max_turns
        self.state: SessionState | None = None

    def start(self, session_id: str, caller_id: str, locale: str, actor_id: str | None = None) -> SessionState:
        self.state = SessionState(session_id=session_id, caller_id=caller_id, locale=locale, actor_id=actor_id)
        self.state.events.append(CallEvent(kind="session.started", detail={"locale": locale}))
        self.checkpoint()
        return self.state

    def begin_turn(self, transcript: str, source: str, confidence: float | None = None) -> TurnState:
        turn = TurnState(turn_id=self.state.next_turn_id, source=source, transcript=mask_pii(transcript), asr_confidence=confidence)
        self.state.turns.append(turn)
        return turn

    @property
    def over_turn_limit(self) -> bool:
        caller_turns = sum(1 for t in self.state.turns if t.source != "greeting")
        return caller_turns > self._max_turns

    def add_sentence(self, turn: TurnState, sentence: str) -> None:
        turn.reply.append(mask_pii(sentence))

    def finish_turn(self, turn_id: int, metrics: dict[str, float] | None = None, interrupted: bool = False) -> None:
        if 0 <= turn_id < len(self.state.turns):
            turn = self.state.turns[turn_id]
            turn.metrics.update(metrics or {})
            turn.interrupted = turn.interrupted or interrupted
        self.checkpoint()

    def record(self, kind: str, turn_id: int | None = None, **detail) -> None:
        self.state.events.append(CallEvent(kind=kind, turn_id=turn_id, detail=detail))

    def close(self, reason: str) -> SessionState:
        if self.state.status != SessionStatus.ENDED:
            self.state.status = SessionStatus.ENDED
            self.state.ended_at_ms = now_ms()
            self.state.end_reason = reason
            self.record("session.ended", reason=reason)
        self.checkpoint()
        return self.state

    def checkpoint(self) -> None:
        self.state.updated_at_ms = now_ms()
        self._store.save(self.state)
