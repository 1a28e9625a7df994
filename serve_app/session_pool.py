"""Pre-started session actors, so a new call never waits for a process to spawn; and the lease
that tells each actor this replica is alive (deployments/session/lease.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import ray

from serve_app.deadlines import within

log = logging.getLogger(__name__)


class AtCapacity(Exception):
    pass


class SessionPool:
    """One Gateway replica's actors. They are detached (a call outlives its replica), so this
    pool renews their leases; an actor whose lease lapses holds its call or exits by itself."""

    def __init__(
        self,
        factory: Callable[[], Any],
        warm: int,
        max_active: int,
        start_timeout_s: float = 10.0,
        lease_s: float = 3.0,
    ):
        self._factory = factory
        self._lease_s = lease_s
        self._live: set = set()  # actors in a call on this replica
        self._renew_task: asyncio.Task | None = None
        self._start_timeout_s = start_timeout_s  # a spawn that takes longer is given up (and killed)
        self._ping_timeout_s = min(2.0, start_timeout_s)  # a warm actor slower than this is taken for dead
        self._warm_target = warm
        self.max_active = max_active
        self._warm: list = []
        self.active = 0
        self._refill_task: asyncio.Task | None = None

    @property
    def warm(self) -> int:
        return len(self._warm)

    @property
    def remaining(self) -> int:
        return max(0, self.max_active - self.active)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = loop.create_task(self._refill())
        if self._renew_task is None or self._renew_task.done():
            self._renew_task = loop.create_task(self._renew())

    async def _renew(self) -> None:
        """Fire and forget, every third of the lease: a lost renewal is made up by the next."""
        while True:
            for actor in [*self._warm, *self._live]:
                try:
                    actor.renew.remote()
                except Exception:
                    log.debug("lease renewal not sent", exc_info=True)
            await asyncio.sleep(self._lease_s / 3)

    async def _spawn(self):
        actor = self._factory()
        try:
            await within(actor.ping.remote(), self._start_timeout_s, "session actor start")  # up, module imported
        except BaseException:
            _kill(actor)
            raise
        return actor

    async def _warm_or_new(self):
        """A pre-started actor that still answers, else a new one. A warm actor dies unseen with
        its node: it is pinged first, and one that does not answer is dropped (and killed)."""
        while self._warm:
            actor = self._warm.pop()
            try:
                await within(actor.ping.remote(), self._ping_timeout_s, "warm session actor")
                return actor
            except Exception as exc:
                log.warning("a warm session actor did not answer (%r); dropped", exc)
                _kill(actor)
        return await self._spawn()

    async def _refill(self) -> None:
        while len(self._warm) < self._warm_target:
            try:
                self._warm.append(await self._spawn())
            except Exception:
                log.exception("could not pre-start a session actor; retrying in 1 s")
                await asyncio.sleep(1.0)

    async def acquire(self):
        if self.active >= self.max_active:
            raise AtCapacity(f"{self.active} calls active on this replica (limit {self.max_active})")
        self.active += 1
        try:
            actor = await self._warm_or_new()
        except BaseException:
            self.active -= 1
            raise
        self._live.add(actor)
        self.start()
        return actor

    async def replace(self, dead):
        """A call's actor died: a fresh one takes its place on the same line (no capacity check:
        the call already holds it)."""
        _kill(dead)
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
        _kill(actor)

    def release(self, actor) -> None:
        """Free the line at once, whatever the actor is doing: it is killed, not asked."""
        self.active -= 1
        self._live.discard(actor)
        _kill(actor)
        self.start()


def _kill(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:
        log.warning("session actor already gone")
