"""The session actor: one per call at a time, owning its state: each turn's record, the caller's
memory, checkpoints, and the session API's way in to the live call. Once a call has ended the
actor can be reset for the next one (`recycle`), so a call does not cost a new process.

It is off the reply's path: the Gateway streams each reply straight from the Dialogue
deployment and sends the actor the turn's record when the stream closes (`TurnRecord`), and the
actor answers with what the next turn needs (`TurnContext`). Every message is a typed model
from `models.session`.

It imports nothing heavy (no torch, no models, no Serve handles, not even the settings machinery:
the Gateway hands it `SessionSettings`): a process per call must stay cheap.
`tests/test_actor_imports.py` keeps it so; `benchmarks/actor_memory.py` measures it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import ray

from common.logs import mask_logs_in_this_process
from deployments.session.engine import SessionEngine
from deployments.session.lease import Verdict, verdict
from deployments.session.store import open_store
from models.session import (
    SessionCommand,
    SessionOpened,
    SessionSettings,
    StartSession,
    TurnContext,
    TurnFinish,
    TurnRecord,
    TurnRecorded,
)
from models.state import SessionState, now_ms

if TYPE_CHECKING:
    from common.config import Settings

log = logging.getLogger(__name__)

SESSION_NAMESPACE = "voice"  # session actors are named here, so the session API can find a live call


@ray.remote
class SessionActor:
    def __init__(self, settings: SessionSettings | None = None):
        mask_logs_in_this_process()
        if settings is None:  # started outside a Gateway (a test, a driver of its own): read them here
            from common.config import get_settings

            settings = session_settings(get_settings())
        self._store, self._max_turns = open_store(settings), settings.max_turns
        self._engine = SessionEngine(self._store, self._max_turns)
        self._calls, self._max_calls = 0, settings.session_actor_max_calls
        self._pending: deque[SessionCommand] = deque()
        self._wake = asyncio.Event()
        self._epoch = 0  # the command stream's: a hold or a resume ends the stream a gone socket read
        self._reply_in_flight = False
        self._resume_window_s = settings.resume_window_s
        self._lease_s = settings.session_lease_s
        self._leased_until = time.monotonic() + self._lease_s
        self._lapsed = False  # held because the lease lapsed (not a dropped socket): a late renew takes it back
        self._watch: asyncio.Task | None = None

    async def ping(self) -> int:
        """Up, module imported; the lease watch starts here (the first call on the actor's loop)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_lease())
        return os.getpid()

    def renew(self) -> None:
        """The Gateway holding this actor is alive (see deployments/session/lease.py)."""
        self._leased_until = time.monotonic() + self._lease_s
        state = self._engine.state
        if self._lapsed and state is not None and state.dropped_at_ms is not None and state.ended_at_ms is None:
            self._engine.rejoin()  # the Gateway was only slow: the call is still its own
            self._lapsed = False

    async def _watch_lease(self) -> None:
        while True:
            await asyncio.sleep(min(0.5, self._lease_s / 3))
            left = self._leased_until - time.monotonic()
            match verdict(self._engine.state, left, now_ms(), self._resume_window_s):
                case Verdict.HOLD:
                    log.warning("call %s: its Gateway is gone; held for a resume", self._engine.state.session_id)
                    self.hold()
                    self._lapsed = True
                case Verdict.END:
                    log.info("call %s ended: caller_dropped (no resume in time)", self._engine.state.session_id)
                    self._engine.close("caller_dropped")
                    return self._exit()
                case Verdict.EXIT:
                    return self._exit()

    def _exit(self) -> None:
        """Detached: nobody else will kill this actor."""
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def start(self, start: StartSession) -> SessionOpened:
        self._calls += 1
        state = self._engine.start(start.session_id, start.caller_id, start.locale, *_identity())
        token = self._engine.issue_token()
        return SessionOpened(state=state, context=self._engine.context(), resume_token=token)

    def restore(self, session_id: str) -> SessionOpened:
        """Take over a live call whose actor died, from its last checkpoint."""
        self._calls += 1
        state = self._engine.restore(session_id, *_identity())
        log.info("session %s restored at turn %d", session_id, len(state.turns))
        return SessionOpened(state=state, context=self._engine.context())

    def hold(self, session_id: str | None = None) -> None:
        """The caller's socket dropped without a hang-up: the call waits for a resume (the
        actor ends it itself if none comes within the window)."""
        self._mine(session_id)
        self._engine.hold()
        self._lapsed = False
        self._new_stream()

    def resume(self, token: str, caller_id: str) -> SessionOpened | None:
        """The caller is back on a new socket (any Gateway replica): None when the token may
        not resume this call (used, expired, another caller's)."""
        token = self._engine.resume(token, caller_id, self._resume_window_s)
        if token is None:
            return None
        self._lapsed = False
        self._leased_until = time.monotonic() + self._lease_s  # the new Gateway renews from here
        self._new_stream()
        return SessionOpened(state=self._engine.state, context=self._engine.context(), resume_token=token)

    def record_turn(self, record: TurnRecord, session_id: str | None = None) -> TurnRecorded:
        self._mine(session_id)
        return self._engine.record_turn(record)

    def finish_turn(self, finish: TurnFinish, session_id: str | None = None) -> TurnContext:
        self._mine(session_id)
        turn = self._engine.turn(finish.turn_id)
        if turn is not None and turn.source == "reply":
            self._reply_in_flight = False
        return self._engine.finish_turn(finish)

    def recycle(self) -> bool:
        """Ready for another call: True once the call has ended (or none was started) and the
        actor has served fewer than `session_actor_max_calls`; False and untouched otherwise (a
        live or held call is never dropped; the pool kills the actor instead). Nothing of the
        call stays: a new engine, no pending command, and the old command stream is ended."""
        state = self._engine.state
        if (state is not None and state.ended_at_ms is None) or self._calls >= self._max_calls:
            return False
        self._engine = SessionEngine(self._store, self._max_turns)
        self._pending.clear()
        self._reply_in_flight = self._lapsed = False
        self._new_stream()
        gc.collect()  # the call's state goes now, not at some later collection
        return True

    def current_call(self) -> str | None:
        """The session id of the call this actor holds, None between calls."""
        state = self._engine.state
        return None if state is None or state.ended_at_ms is not None else state.session_id

    def idle(self) -> bool:
        """Holds nothing of any call: never started, or reset since."""
        return self._engine.state is None

    def _mine(self, session_id: str | None) -> None:
        """The Gateway names the call each of its messages is for (serve_app/conversation/
        session_client.py): a late one from a call this actor no longer holds is refused."""
        state = self._engine.state
        if session_id is not None and (state is None or state.session_id != session_id):
            raise LookupError(f"session {session_id} is not this actor's call")

    # --- the session API: other code steers a live call through these --------
    # `session_id`: the call the command is for (serve_app/session_api.py always sends it). The
    # actor may have been reset for another call since the sender looked it up: refused then.

    def _steer(self, session_id: str | None) -> None:
        """`_mine`, and a call must be live: between calls (or after one ended) nothing is queued."""
        if self.current_call() is None:
            raise LookupError(f"no live call with session id {session_id or '(any)'} on this actor")
        self._mine(session_id)

    async def say(self, text: str, session_id: str | None = None) -> None:
        """Speak `text` as is, without the dialogue engine."""
        self._steer(session_id)
        self._push(SessionCommand(op="say", text=text))

    async def reply(self, instructions: str, session_id: str | None = None) -> None:
        """Have the dialogue engine produce a reply now; one at a time."""
        self._steer(session_id)
        if self._reply_in_flight:
            raise RuntimeError("a reply is already in flight on this call")
        self._reply_in_flight = True
        self._push(SessionCommand(op="reply", text=instructions))

    async def interrupt(self, session_id: str | None = None) -> None:
        """Stop the agent's speech now (as a barge-in would, without waiting for words)."""
        self._steer(session_id)
        self._push(SessionCommand(op="interrupt"))

    async def close(self, reason: str = "closed", session_id: str | None = None) -> None:
        """End the call in order: speech stopped, state saved, `session.ended`, socket closed."""
        self._steer(session_id)
        self._push(SessionCommand(op="close", reason=reason))

    async def commands(self, session_id: str | None = None) -> AsyncIterator[SessionCommand]:
        """Session-API commands, pushed to the Gateway as they come: one stream per socket (no
        polling). A hold or resume ends the old stream, so a command never goes to a gone socket."""
        self._mine(session_id)
        epoch = self._epoch
        while True:
            while not self._pending and epoch == self._epoch:
                self._wake.clear()
                await self._wake.wait()
            if epoch != self._epoch:
                return
            yield self._pending.popleft()

    def _push(self, command: SessionCommand) -> None:
        self._pending.append(command)
        self._wake.set()

    def _new_stream(self) -> None:
        self._epoch += 1
        self._wake.set()

    def command_failed(self, op: str, session_id: str | None = None) -> None:
        self._mine(session_id)
        if op == "reply":
            self._reply_in_flight = False

    def finalize(self, reason: str, session_id: str | None = None) -> SessionState:
        """The last checkpoint, before `session.ended` reaches the caller."""
        self._mine(session_id)
        return self._engine.close(reason)


def session_settings(settings: Settings) -> SessionSettings:
    """What a session actor needs of the platform's settings (the Gateway passes it to each one)."""
    return SessionSettings(**settings.model_dump(include=set(SessionSettings.model_fields)))


def _identity() -> tuple[str | None, str | None]:
    """This actor's id and name (the session API finds a call by the name); none outside Ray."""
    if not ray.is_initialized():
        return None, None
    ctx = ray.get_runtime_context()
    return ctx.get_actor_id(), ctx.get_actor_name()
