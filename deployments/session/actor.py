"""The session actor: one per call, holding its state and running its turns.

It imports nothing heavy of its own (no torch, no models): a process per call must stay
cheap. Ray Serve's handle module (which brings numpy and FastAPI, about 30 MB) is the one
large import, needed to call the Dialogue deployment.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import ray

from common.config import get_settings
from deployments.session.engine import MAX_TURNS_GOODBYE, SessionEngine
from deployments.session.store import SessionStore

log = logging.getLogger(__name__)

SESSION_NAMESPACE = "voice"  # session actors are named here, so the session API can find a live call


@ray.remote
class SessionActor:
    def __init__(self):
        import ray.serve.handle  # noqa: F401  the Dialogue handle needs it: load it while pooled, not on the call

        settings = get_settings()
        self._engine = SessionEngine(SessionStore(settings.store_path), settings.max_turns)
        self._dialogue = None
        self._commands: asyncio.Queue = asyncio.Queue()
        self._reply_in_flight = False

    def ping(self) -> int:
        return os.getpid()

    def start(self, session_id: str, caller_id: str, locale: str, dialogue) -> dict:
        self._dialogue = dialogue
        ctx = ray.get_runtime_context()
        return self._engine.start(session_id, caller_id, locale, ctx.get_actor_id(), ctx.get_actor_name()).model_dump(
            mode="json"
        )

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
        async for item in self._respond(transcript, run_ahead=False):
            if "sentence" in item:
                self._engine.add_sentence(turn, item["sentence"])
                yield item
                continue
            yield self._apply(turn, item)

    async def prepare_turn(self, transcript: str) -> dict:
        """Run the dialogue ahead of the endpoint, touching nothing: `{"sentences", "summary"}`,
        or `{"refused": True}` when the turn needs a tool, an escalation or the turn limit."""
        if self._engine.over_turn_limit:
            return {"refused": True}
        version, sentences = self._engine.version, []  # read before the dialogue reads the memory
        async for item in self._respond(transcript, run_ahead=True):
            if item.get("run_ahead") == "refused":
                return {"refused": True}
            if "sentence" in item:
                sentences.append(item["sentence"])
            else:
                return {"sentences": sentences, "summary": item, "version": version}
        return {"refused": True}

    def commit_turn(self, transcript: str, source: str, confidence: float | None, prepared: dict) -> dict:
        """Make a prepared turn real (the caller did stop): the same record as run_turn; or
        `{"stale": True}`, recording nothing, when the session changed since it was prepared
        (the caller then runs the turn anew)."""
        turn = self._engine.commit_prepared(transcript, source, confidence, prepared)
        if turn is None:
            return {"stale": True}
        return {"turn_id": turn.turn_id, "transcript": turn.transcript, **self._verdict(prepared["summary"])}

    def say_turn(self, text: str, source: str = "say") -> dict:
        """Record words the agent speaks without the dialogue engine (say(), check-ins)."""
        turn = self._engine.begin_turn("", source)
        self._engine.add_sentence(turn, text)
        return {"turn_id": turn.turn_id}

    def _respond(self, transcript: str, run_ahead: bool):
        state = self._engine.state
        history = [
            {"user": t.transcript, "agent": " ".join(t.reply)}
            for t in state.turns
            if t.source != "greeting" and t.reply
        ]
        return self._dialogue.respond.options(stream=True).remote(
            transcript, self._engine.memory(), state.session_id, state.caller_id, history, run_ahead
        )

    def _apply(self, turn, summary: dict) -> dict:
        self._engine.apply_result(turn, summary)
        return self._verdict(summary)

    def _verdict(self, summary: dict) -> dict:
        """What the Gateway needs of a turn; `awaiting` (e.g. `pin`) masks its partial transcripts."""
        reason = "escalated" if summary.get("escalate") else "agent_hangup" if summary.get("end_call") else None
        return {
            "intent": summary.get("intent"),
            "end_call": summary.get("end_call", False),
            "escalate": summary.get("escalate"),
            "reason": reason,
            "awaiting": self._engine.awaiting,
        }

    def finish_turn(
        self, turn_id: int, metrics: dict | None = None, interrupted: bool = False, heard: list[str] | None = None
    ) -> None:
        self._engine.finish_turn(turn_id, metrics, interrupted, heard)
        turns = self._engine.state.turns
        if 0 <= turn_id < len(turns) and turns[turn_id].source == "reply":
            self._reply_in_flight = False

    # --- the session API: other code steers a live call through these --------

    async def say(self, text: str) -> None:
        """Speak `text` as is, without the dialogue engine."""
        await self._commands.put({"op": "say", "text": text})

    async def reply(self, instructions: str) -> None:
        """Have the dialogue engine produce a reply now; one at a time."""
        if self._reply_in_flight:
            raise RuntimeError("a reply is already in flight on this call")
        self._reply_in_flight = True
        await self._commands.put({"op": "reply", "text": instructions})

    async def interrupt(self) -> None:
        """Stop the agent's speech now (as a barge-in would, without waiting for words)."""
        await self._commands.put({"op": "interrupt"})

    async def close(self, reason: str = "closed") -> None:
        """End the call in order: speech stopped, state saved, `session.ended`, socket closed."""
        await self._commands.put({"op": "close", "reason": reason})

    async def next_command(self, wait_s: float = 10.0) -> dict | None:
        """The Gateway's long poll for session-API commands."""
        try:
            return await asyncio.wait_for(self._commands.get(), wait_s)
        except TimeoutError:
            return None

    def command_failed(self, op: str) -> None:
        if op == "reply":
            self._reply_in_flight = False

    def finalize(self, reason: str) -> dict:
        """The last checkpoint, before `session.ended` reaches the caller."""
        return self._engine.close(reason).model_dump(mode="json")
