"""A Gateway replica's lines (calls it may hold) and the lease that tells each of its session
actors this replica is alive (deployments/session/lease.py).

A new call takes a line and a warm actor (serve_app/warm_supply.py). Only a replica with no
other call spawns inline when none is warm: nothing competes for the cores, and refusing its
first call after a start would be worse than the spawn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from serve_app.warm_sizing import WarmSizer
from serve_app.warm_supply import AtCapacity, NoWarmSession, WarmSupply, kill_actor

__all__ = ["AtCapacity", "NoWarmSession", "SessionPool"]
log = logging.getLogger(__name__)


class SessionPool(WarmSupply):
    """One Gateway replica's actors. They are detached (a call outlives its replica), so this
    pool renews their leases; an actor whose lease lapses holds its call or exits by itself."""

    def __init__(
        self,
        factory: Callable[[], Any],
        warm: int,
        max_active: int,
        start_timeout_s: float = 10.0,
        lease_s: float = 3.0,
        sizer: WarmSizer | None = None,
        wait_s: float = 1.5,
        reuse: bool = False,
    ):
        super().__init__(factory, warm, start_timeout_s, sizer, wait_s, reuse)
        self._lease_s = lease_s
        self._live: set = set()  # actors in a call on this replica
        self._renew_task: asyncio.Task | None = None
        self.max_active = max_active

    @property
    def remaining(self) -> int:
        return max(0, self.max_active - self.active)

    def start(self) -> None:
        super().start()
        if self._renew_task is None or self._renew_task.done():
            self._renew_task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Fire and forget, every third of the lease: a lost renewal is made up by the next."""
        while True:
            for actor in [*self._warm, *self._live, *self._returning]:
                try:
                    actor.renew.remote()
                except Exception:
                    log.debug("lease renewal not sent", exc_info=True)
            await asyncio.sleep(self._lease_s / 3)

    async def acquire(self):
        """A line and a session actor for a new call: warm, or from the refill within the wait."""
        if self.active >= self.max_active:
            raise AtCapacity(f"{self.active} calls active on this replica (limit {self.max_active})")
        self.active += 1
        self.sizer.arrive()
        self._poke.set()
        try:
            actor = await self._take_warm()
            if actor is None:
                actor = await (self._spawn() if self.active == 1 else self._wait_warm())
        except BaseException:
            self.active -= 1
            raise
        self._live.add(actor)
        self.start()
        return actor

    async def replace(self, dead):
        """A call's actor died: a fresh one takes its place on the same line (no capacity check:
        the call already holds it)."""
        kill_actor(dead)
        self._live.discard(dead)
        actor = await self._warm_or_new()
        self._live.add(actor)
        self.start()
        return actor

    def detach(self, actor) -> None:
        """A call held for a resume frees its line here; its actor lives on, unrenewed (the
        resume may come to any replica, which adopts it; none within the window, it ends)."""
        self.active -= 1
        self._live.discard(actor)

    def adopt(self, actor) -> None:
        """A resumed call takes a line here for the actor it brings."""
        if self.active >= self.max_active:
            raise AtCapacity(f"{self.active} calls active on this replica (limit {self.max_active})")
        self.active += 1
        self._live.add(actor)
        self.start()

    def discard(self, actor) -> None:
        """An actor whose line is already free (placed for a call that ended meanwhile): killed."""
        self._live.discard(actor)
        kill_actor(actor)

    def release(self, actor, reusable: bool = True) -> None:
        """Free the line at once, whatever the actor is doing: it is reset for another call in
        the background (`reuse`, and its call was saved), else killed, never waited on."""
        self.active -= 1
        self._live.discard(actor)
        if self._reuse and reusable:
            self._return(actor)
        else:
            kill_actor(actor)
        self.start()
