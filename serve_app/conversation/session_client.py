"""The call's typed side of its session actor, and its way to the Dialogue deployment.

Replies stream straight from Dialogue to this Gateway (two hops to the first sentence, where
relaying through the actor took four); the actor gets each turn's record when its stream
closes and answers with the `TurnContext` the next turn needs, which this client keeps.
Session-API commands arrive pushed on one stream for the call's life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError

from models.dialogue import DialogueRequest, Sentence, TurnSummary
from models.session import SessionCommand, TurnContext, TurnFinish, TurnRecord, TurnRecorded
from serve_app.deadlines import Deadlines, StageTimeout, items_within, within

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A reply run ahead of the endpoint, not yet recorded: it is recorded only if the session
    is still at `version` when the caller has really stopped."""

    sentences: list[str]
    summary: TurnSummary
    version: int


Respawn = Callable[[Any], Awaitable[Any]]  # the dead actor in, a fresh one out


class SessionClient:
    def __init__(
        self,
        actor,
        dialogue,
        context: TurnContext,
        deadlines: Deadlines,
        respawn: Respawn | None = None,
        discard: Callable[[Any], None] = lambda actor: _kill(actor),
    ):
        self.actor, self._dialogue, self._dl = actor, dialogue, deadlines
        self.context = context  # the latest the actor gave: each record and finish renews it
        self.session_id = context.session_id
        self._next_turn_id = context.next_turn_id
        self._respawn = respawn  # None: a dead actor is not replaced
        self._discard = discard  # an actor placed for a line given back meanwhile: killed, forgotten
        self._reviving = asyncio.Lock()
        self.restored = False  # a new actor took over; the next turn's metrics say so
        self.revived_in_ms: float | None = None
        self.place_s = 30.0  # how long one revive keeps placing replacements (a node going away)
        self._closed = False

    async def _call(self, method: str, *args, seconds: float):
        """An actor call within its deadline; if the actor is dead, once more on its successor.
        Each names this call: an actor serves calls one after another and refuses a late one."""

        def send(actor):
            return within(getattr(actor, method).remote(*args, session_id=self.session_id), seconds, method)

        actor = self.actor
        try:
            return await send(actor)
        except RayActorError:
            if not await self._revive(actor):
                raise
        return await send(self.actor)

    async def _revive(self, dead) -> bool:
        """Replace a dead session actor with one restored from the last checkpoint: the call
        goes on with its memory. False when no replacement is possible."""
        async with self._reviving:
            if self.actor is not dead:
                return True  # another task already did
            if self._respawn is None:
                return False
            log.warning("call %s: session actor died; restoring from the last checkpoint", self.session_id)
            started, respawn = time.monotonic(), self._respawn
            self._respawn = None  # one revive per death: a call whose restore fails ends (server_error), never spins
            fresh, opened = await self._place(respawn, dead, started + self.place_s)
            if self._closed:  # the line was given back while this one was placed: it must not outlive the call
                self._discard(fresh)
                return False
            self.actor, self.context, self.restored, self._respawn = fresh, opened.context, True, respawn
            self.revived_in_ms = round((time.monotonic() - started) * 1000, 1)
            log.info("call %s: session restored in %.0f ms", self.session_id, self.revived_in_ms)
        return True

    async def _place(self, respawn: Respawn, dead, deadline: float):
        """A fresh actor restored from the checkpoint. A node going away takes fresh actors placed
        on it before Ray knows it is gone: such a one (dead, or silent past the deadline) is killed
        and another placed, until `deadline`. A restore that fails otherwise is not retried."""
        gone = dead
        while True:
            try:
                fresh = await respawn(gone)  # the pool kills `gone` and gives the line a live actor
            except Exception as exc:
                if time.monotonic() >= deadline or self._closed:
                    raise
                log.warning("call %s: no replacement actor yet (%r); trying again", self.session_id, exc)
                await asyncio.sleep(0.5)
                continue
            try:
                restoring = fresh.restore.remote(self.session_id)
                return fresh, await within(restoring, self._dl.actor_start_s, "session restore")
            except (RayActorError, StageTimeout) as exc:
                if time.monotonic() < deadline and not self._closed:
                    log.warning("call %s: the replacement actor failed (%r); placing another", self.session_id, exc)
                    gone = fresh
                    continue
                failed = exc
            except BaseException as exc:
                failed = exc
            _kill(fresh)
            self.actor = fresh  # the line's actor now: the pool lets go of it at release
            raise failed

    @property
    def next_turn_id(self) -> int:
        """The number of the turn about to be spoken: the Gateway numbers turns, in order."""
        return max(self._next_turn_id, self.context.next_turn_id)

    def respond(self, transcript: str, run_ahead: bool = False, from_caller: bool = True):
        """The Dialogue's reply stream for `transcript`, on the latest context."""
        ctx = self.context
        request = DialogueRequest(
            transcript=transcript,
            memory=ctx.memory,
            session_id=ctx.session_id,
            caller_id=ctx.caller_id,
            history=ctx.history,
            turn_id=self.next_turn_id,
            run_ahead=run_ahead,
            from_caller=from_caller,
        )
        return self._dialogue.respond.options(stream=True).remote(request)

    def greeting(self):
        return self._dialogue.greeting.options(stream=True).remote()

    async def prepare(self, transcript: str) -> Prepared | None:
        """Run the reply ahead, touching nothing; None when it needs a tool, a human or the
        turn limit's goodbye (it then runs at the endpoint)."""
        if self.context.over_turn_limit:
            return None
        version, sentences = self.context.version, []
        async for item in items_within(self.respond(transcript, run_ahead=True), self._dl.dialogue_s, "prepare"):
            if isinstance(item, Sentence):
                sentences.append(item.text)
            elif isinstance(item, TurnSummary):
                return None if item.refused else Prepared(sentences, item, version)
        return None

    async def record(self, record: TurnRecord) -> TurnRecorded | None:
        """Record a turn with the actor; None if it did not answer in time (logged)."""
        try:
            recorded = await self._call("record_turn", record, seconds=self._dl.actor_call_s)
        except Exception as exc:
            log.warning("call %s: session actor record_turn failed: %r", self.session_id, exc)
            self._next_turn_id = max(self._next_turn_id, record.turn_id + 1)  # it may land late: never reuse
            return None
        if not recorded.stale:
            self._next_turn_id = max(self._next_turn_id, record.turn_id + 1)
        self.context = recorded.context
        return recorded

    def record_unawaited(self, record: TurnRecord) -> None:
        """Record on the way out (the call is ending): sent now, ahead of the final checkpoint,
        which the actor then runs after it (one caller's calls run in order)."""
        try:
            self.actor.record_turn.remote(record, session_id=self.session_id)
        except Exception as exc:
            log.warning("call %s: could not send turn %d's record: %r", self.session_id, record.turn_id, exc)

    def finish_unawaited(self, finish: TurnFinish) -> None:
        """A turn's close on the way out: sent now, ordered before the calls that follow."""
        try:
            self.actor.finish_turn.remote(finish, session_id=self.session_id)
        except Exception as exc:
            log.warning("call %s: could not send turn %d's close: %r", self.session_id, finish.turn_id, exc)

    async def finish_turn(self, finish: TurnFinish) -> None:
        try:
            self.context = await self._call("finish_turn", finish, seconds=self._dl.actor_call_s)
        except Exception as exc:
            log.warning("call %s: session actor finish_turn failed: %r", self.session_id, exc)

    async def command_failed(self, op: str) -> None:
        try:
            await self._call("command_failed", op, seconds=self._dl.actor_call_s)
        except Exception as exc:
            log.warning("call %s: session actor command_failed failed: %r", self.session_id, exc)

    async def commands(self) -> AsyncIterator[SessionCommand]:
        """Session-API commands as the actor pushes them. The stream breaks the moment the actor
        dies, so this is where a death is noticed first, even on a silent call."""
        while True:
            actor = self.actor
            try:
                async for ref in actor.commands.remote(session_id=self.session_id):
                    yield await ref
                return
            except RayActorError:
                if not await self._revive(actor):
                    raise

    async def hold(self) -> None:
        """The caller dropped without a hang-up: the actor keeps the call for a resume."""
        await self._call("hold", seconds=self._dl.checkpoint_s)

    async def finalize(self, reason: str) -> None:
        await self._call("finalize", reason, seconds=self._dl.checkpoint_s)

    def close(self) -> None:
        """The line is being given back: a dead actor is no longer replaced (a late record must
        not bring an ended call back)."""
        self._respawn = None
        self._closed = True


def _kill(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:
        log.warning("could not kill a session actor that failed to restore")
