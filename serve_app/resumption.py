"""Calls held after a dropped socket, and taken up again on a new one (any Gateway replica).

A drop without hang-up leaves the call's session actor alive and holding (`SessionActor.hold`)
for `VOICE_RESUME_WINDOW_S`; the replica that had the socket frees its line. The actor ends the
call itself (`caller_dropped`) and exits if no resume comes in the window; a replica that died
stops renewing its actors' leases, and they hold their calls the same way. A reconnect with
`resume=TOKEN` finds the actor by the store's record of the session, and the actor itself
decides (single-use token, same caller, inside the window): refusals are HTTP 403 before the
handshake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from common.config import Settings
from deployments.session.actor import SESSION_NAMESPACE
from deployments.session.resume import session_of
from deployments.session.store import Store
from models.protocol import ConnectParams
from models.session import SessionOpened
from serve_app.deadlines import Deadlines, within
from serve_app.session_pool import SessionPool

log = logging.getLogger(__name__)


class Resumption:
    def __init__(self, pool: SessionPool, store: Store, settings: Settings):
        self._pool, self._store, self._settings = pool, store, settings
        self._dl = Deadlines.from_settings(settings)
        # How long a resume waits for the call to be held: for the old replica to notice its socket
        # dropped (well under a second), or, if that replica died, for the actor's lease to lapse.
        self.notice_s = settings.session_lease_s + 1.0

    async def take(self, params: ConnectParams) -> tuple[Any, SessionOpened] | None:
        """The held call `params.resume` names, with a line taken here for it; None when the
        token may not resume a call. AtCapacity when this replica is full."""
        session_id = session_of(params.resume)
        state = await self._held(session_id)
        why = _not_held(state)
        if why is not None:
            log.info("resume of call %s refused: %s", session_id[:64], why)
            return None
        try:
            actor = ray.get_actor(state.actor_name, namespace=SESSION_NAMESPACE)
        except ValueError:
            log.info("resume of call %s refused: its actor is gone", session_id[:64])
            return None  # the call ended
        self._pool.adopt(actor)
        opened = None
        try:
            opened = await within(actor.resume.remote(params.resume, params.caller_id), self._dl.actor_call_s, "resume")
        except Exception as exc:  # if it did resume, unrenewed it holds the call again and ends it in time
            log.warning("resume of call %s failed: %r", state.session_id, exc)
        finally:
            if opened is None:  # refused, failed or cancelled: the line is given back
                self._pool.detach(actor)
        if opened is None:
            log.info("resume of call %s refused by its actor (token used, expired or another caller's)", session_id)
        return None if opened is None else (actor, opened)

    async def _held(self, session_id: str):
        """The session's stored state, once held: a client may dial back before the server has
        noticed its old socket is gone, so a live call is given `notice_s` to become held."""
        deadline = asyncio.get_running_loop().time() + self.notice_s
        while True:
            state = await asyncio.to_thread(self._store.load, session_id)
            live = state is not None and state.dropped_at_ms is None and state.ended_at_ms is None
            if not live or asyncio.get_running_loop().time() >= deadline:
                return state
            await asyncio.sleep(0.1)


def _not_held(state) -> str | None:
    if state is None:
        return "no such session in the store"
    if state.ended_at_ms is not None:
        return "the call ended"
    if state.dropped_at_ms is None:
        return "the call is live on another socket"
    return None if state.actor_name else "no actor recorded"
