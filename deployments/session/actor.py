"""The session actor: one per call, holding its state and running its turns.

It imports nothing heavy of its own (no torch, no models): a process per call must stay
cheap. Ray Serve's handle module (which brings numpy and FastAPI, about 30 MB) is the one
large import, needed to call the Dialogue deployment.
"""

from __future__ import annotations

import logging
import os
from typing import AsyncIterator

import ray

from deployments.session.engine import MAX_TURNS_GOODBYE, SessionEngine
from deployments.session.store import SessionStore
from serve_app.config import get_settings

log = logging.getLogger(__name__)


@ray.remote
class SessionActor:
    def __init__(self):
        import ray.serve.handle  # noqa: F401  the Dialogue handle needs it: load it while pooled, not on the call

        settings = get_settings()
        self._engine = SessionEngine(SessionStore(settings.store_path), settings.max_turns)
        self._dialogue = None

    def ping(self) -> int:
        return os.getpid()

    def start(self, session_id: str, caller_id: str, locale: str, dialogue) -> dict:
        self._dialogue = dialogue
        actor_id = ray.get_runtime_context().get_actor_id()
        return self._engine.start(session_id, caller_id, locale, actor_id).model_dump(mode="json")

    async def greet(self) -> AsyncIterator[dict]:
        turn = self._engine.begin_turn("", "greeting")
        yield {"turn_id": turn.turn_id}
        async for item in self._dialogue.greeting.options(stream=True).remote():
            if "sentence" in item:
                self._engine.add_sentence(turn, item["sentence"])
                yield item
        turn.intent = "greeting"

    async def run_turn(self, transcript: str, source: str, confidence: float | None = None) -> AsyncIterator[dict]:
        """Transcript in, reply out: `{"turn_id"}`, then `{"sentence"}`s, then a summary."""
        turn = self._engine.begin_turn(transcript, source, confidence)
        yield {"turn_id": turn.turn_id, "transcript": turn.transcript}  # masked, as stored
        if self._engine.over_turn_limit:
            self._engine.add_sentence(turn, MAX_TURNS_GOODBYE)
            yield {"sentence": MAX_TURNS_GOODBYE}
            yield {"intent": "max_turns", "end_call": True, "reason": "max_turns"}
            return
        state = self._engine.state
        history = [{"user": t.transcript, "agent": " ".join(t.reply)} for t in state.turns[:-1] if t.source != "greeting"]
        stream = self._dialogue.respond.options(stream=True).remote(transcript, self._engine.memory(), state.session_id, state.caller_id, history)
        async for item in stream:
            if "sentence" in item:
                self._engine.add_sentence(turn, item["sentence"])
                yield item
                continue
            self._engine.apply_result(turn, item)
            reason = "escalated" if item.get("escalate") else "agent_hangup" if item.get("end_call") else None
            yield {"intent": item.get("intent"), "end_call": item.get("end_call", False), "escalate": item.get("escalate"), "reason": reason}

    def finish_turn(self, turn_id: int, metrics: dict | None = None, interrupted: bool = False) -> None:
        self._engine.finish_turn(turn_id, metrics, interrupted)

    def record(self, kind: str, turn_id: int | None = None, detail: dict | None = None) -> None:
        self._engine.record(kind, turn_id, **(detail or {}))

    def close(self, reason: str) -> dict:
        return self._engine.close(reason).model_dump(mode="json")
