"""Calls held after a dropped socket, and taken up again on a new one (any Gateway replica).

A drop without hang-up leaves the call's session actor alive and holding (`SessionActor.hold`)
for `VOICE_RESUME_WINDOW_S`; the replica that had the socket frees its line and, when the
window has passed, asks the actor to end the call (`caller_dropped`) unless it was resumed,
then kills it. A reconnect with `resume=TOKEN` finds the actor by the store's record of the
session, and the actor itself decides (single-use token, same caller, inside the window):
refusals are HTTP 403 before the handshake.
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

NOTICE_S = 2.0  # how long a resume waits for the server to notice the old socket dropped


class Resumption:
    def __init__(self, pool: SessionPool, store: Store, settings: Settings):
        self._pool, self._store, self._settings = pool, store, settings
        self._dl = Deadlines.from_settings(settings)
        self._expiring: set[asyncio.Task] = set()

    async def take(self, params: ConnectParams) -> tuple[Any, SessionOpened] | None:
        """The held call `params.resume` names, with a line taken here for it; None when the
        token may not resume a call. AtCapacity when this replica is full."""
        state = await self._held(session_of(params.resume))
        if state is None or state.dropped_at_ms is None or state.ended_at_ms is not None or not state.actor_name:
            return None
        try:
            actor = ray.get_actor(state.actor_name, namespace=SESSION_NAMESPACE)
        except ValueError:
            return None  # the actor is gone: the call ended
        self._pool.adopt()
        try:
            opened = await within(actor.resume.remote(params.resume, params.caller_id), self._dl.actor_call_s, "resume")
        except Exception as exc:
            log.warning("resume of call %s failed: %r", state.session_id, exc)
            opened = None
        if opened is None:
            self._pool.detach()
            return None
        return actor, opened

    async def _held(self, session_id: str):
        """The session's stored state, once held: a client may dial back before the server has
        noticed its old socket is gone, so a live call is given `NOTICE_S` to become held."""
        deadline = asyncio.get_running_loop().time() + NOTICE_S
        while True:
            state = await asyncio.to_thread(self._store.load, session_id)
            live = state is not None and state.dropped_at_ms is None and state.ended_at_ms is None
            if not live or asyncio.get_running_loop().time() >= deadline:
                return state
            await asyncio.sleep(0.1)

    def expire_later(self, actor, session_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(actor, session_id))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, actor, session_id: str) -> None:
        await asyncio.sleep(self._settings.resume_window_s + 0.5)
        try:
            ended = await within(actor.expire_if_dropped.remote(), self._dl.checkpoint_s, "expire")
        except Exception as exc:  # resumed elsewhere and over since, or dead: nothing to do
            log.info("call %s: hold not expired (%r)", session_id, exc)
            return
        if ended:
            log.info(
                "call %s ended: caller_dropped (no resume within %g s)", session_id, self._settings.resume_window_s
            )
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
