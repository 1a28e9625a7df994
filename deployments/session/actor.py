"""The session actor: one per call, owning its state: each turn's record, the caller's memory,
checkpoints, and the session API's way in to the live call.

It is off the reply's path: the Gateway streams each reply straight from the Dialogue
deployment and sends the actor the turn's record when the stream closes (`TurnRecord`), and the
actor answers with what the next turn needs (`TurnContext`). Every message is a typed model
from `models.session`.

It imports nothing heavy (no torch, no models, no Serve handles): a process per call must stay
cheap.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import ray

from common.config import get_settings
from deployments.session.engine import SessionEngine
from deployments.session.store import open_store
from models.session import (
    SessionCommand,
    SessionOpened,
    StartSession,
    TurnContext,
    TurnFinish,
    TurnRecord,
    TurnRecorded,
)
from models.state import SessionState

log = logging.getLogger(__name__)

SESSION_NAMESPACE = "voice"  # session actors are named here, so the session API can find a live call


@ray.remote
class SessionActor:
    def __init__(self):
        settings = get_settings()
        self._engine = SessionEngine(open_store(settings), settings.max_turns)
        self._commands: asyncio.Queue[SessionCommand] = asyncio.Queue()
        self._reply_in_flight = False
        self._resume_window_s = settings.resume_window_s

    def ping(self) -> int:
        return os.getpid()

    def start(self, start: StartSession) -> SessionOpened:
        state = self._engine.start(start.session_id, start.caller_id, start.locale, *_identity())
        token = self._engine.issue_token()
        return SessionOpened(state=state, context=self._engine.context(), resume_token=token)

    def restore(self, session_id: str) -> SessionOpened:
        """Take over a live call whose actor died, from its last checkpoint."""
        state = self._engine.restore(session_id, *_identity())
        log.info("session %s restored at turn %d", session_id, len(state.turns))
        return SessionOpened(state=state, context=self._engine.context())

    def hold(self) -> None:
        """The caller's socket dropped without a hang-up: the call waits for a resume."""
        self._engine.hold()

    def resume(self, token: str, caller_id: str) -> SessionOpened | None:
        """The caller is back on a new socket (any Gateway replica): None when the token may
        not resume this call (used, expired, another caller's)."""
        token = self._engine.resume(token, caller_id, self._resume_window_s)
        if token is None:
            return None
        return SessionOpened(state=self._engine.state, context=self._engine.context(), resume_token=token)

    def expire_if_dropped(self) -> bool:
        """The resume window passed: end the call (`caller_dropped`) unless it was resumed."""
        state = self._engine.state
        if state is None or state.dropped_at_ms is None or state.ended_at_ms is not None:
            return False
        self._engine.close("caller_dropped")
        return True

    def record_turn(self, record: TurnRecord) -> TurnRecorded:
        return self._engine.record_turn(record)

    def finish_turn(self, finish: TurnFinish) -> TurnContext:
        turn = self._engine.turn(finish.turn_id)
        if turn is not None and turn.source == "reply":
            self._reply_in_flight = False
        return self._engine.finish_turn(finish)

    # --- the session API: other code steers a live call through these --------

    async def say(self, text: str) -> None:
        """Speak `text` as is, without the dialogue engine."""
        await self._commands.put(SessionCommand(op="say", text=text))

    async def reply(self, instructions: str) -> None:
        """Have the dialogue engine produce a reply now; one at a time."""
        if self._reply_in_flight:
            raise RuntimeError("a reply is already in flight on this call")
        self._reply_in_flight = True
        await self._commands.put(SessionCommand(op="reply", text=instructions))

    async def interrupt(self) -> None:
        """Stop the agent's speech now (as a barge-in would, without waiting for words)."""
        await self._commands.put(SessionCommand(op="interrupt"))

    async def close(self, reason: str = "closed") -> None:
        """End the call in order: speech stopped, state saved, `session.ended`, socket closed."""
        await self._commands.put(SessionCommand(op="close", reason=reason))

    async def commands(self) -> AsyncIterator[SessionCommand]:
        """Session-API commands, pushed to the Gateway as they come: one stream for the call's
        life (no polling)."""
        while True:
            yield await self._commands.get()

    def command_failed(self, op: str) -> None:
        if op == "reply":
            self._reply_in_flight = False

    def finalize(self, reason: str) -> SessionState:
        """The last checkpoint, before `session.ended` reaches the caller."""
        return self._engine.close(reason)


def _identity() -> tuple[str | None, str | None]:
    """This actor's id and name (the session API finds a call by the name); none outside Ray."""
    if not ray.is_initialized():
        return None, None
    ctx = ray.get_runtime_context()
    return ctx.get_actor_id(), ctx.get_actor_name()
