"""The warm supply of session actors behind a Gateway replica's lines (serve_app/session_pool.py).

Pre-started actors, so a new call never waits for a process to spawn. The pool is sized to the
arrival rate and refilled in the background, one paced spawn at a time (serve_app/warm_sizing.py).
A caller with none warm waits up to `wait_s` for the refill, else is refused (`NoWarmSession`,
close 1013): a spawn on the call's path would take seconds under load while the other calls talk.

An ended call's actor comes back (`reuse`): it is reset (`recycle`) off the line's path and is
the next call's warm actor, so steady traffic starts no process at all; one that does not
answer, still holds its call or has served its calls is killed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from serve_app.deadlines import within
from serve_app.warm_sizing import WarmSizer

log = logging.getLogger(__name__)


TRIM_AFTER_S = 10.0


class AtCapacity(Exception):
    pass


class NoWarmSession(AtCapacity):
    """No warm session actor within the wait: try again later (1013), the pool is refilling."""


class WarmSupply:
    """Warm actors, the refill that keeps them, and the reset that brings ended calls' back."""

    def __init__(
        self,
        factory: Callable[[], Any],
        warm: int,
        start_timeout_s: float = 10.0,
        sizer: WarmSizer | None = None,
        wait_s: float = 1.5,
        reuse: bool = False,
    ):
        self._factory = factory
        self._start_timeout_s = start_timeout_s  # a spawn that takes longer is given up (and killed)
        self._ping_timeout_s = min(2.0, start_timeout_s)  # a warm actor slower than this is taken for dead
        self.sizer = sizer or WarmSizer(warm, warm)  # none given: a fixed pool of `warm`
        self._wait_s = wait_s
        self._warm: list = []
        self._waiters: deque[asyncio.Future] = deque()  # callers waiting for the refill, first come first served
        self._poke = asyncio.Event()  # wakes the refill: a call came, went, or waits
        self.active = 0  # calls on lines (the subclass keeps it): the refill paces itself by it
        self._refill_task: asyncio.Task | None = None
        self._reuse = reuse
        self._returning: dict = {}  # released actors being reset for the next call: their tasks
        self.reused = 0  # ended calls' actors reset and given back (each a process not started)
        # With reuse the pool runs over its target whenever calls end before others begin; only
        # an excess that lasts this long is trimmed, or steady traffic would kill and respawn.
        self._trim_after_s = TRIM_AFTER_S if reuse else 0.0
        self._over_since: float | None = None

    @property
    def warm(self) -> int:
        return len(self._warm)

    def start(self) -> None:
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.get_running_loop().create_task(self._refill())

    async def _spawn(self):
        actor = self._factory()
        try:
            await within(actor.ping.remote(), self._start_timeout_s, "session actor start")  # up, module imported
        except BaseException:
            kill_actor(actor)
            raise
        return actor

    async def _take_warm(self):
        """A pre-started actor that still answers, or None. A warm actor dies unseen with its
        node: it is pinged first, and one that does not answer is dropped (and killed)."""
        while self._warm:
            actor = self._warm.pop()
            try:
                await within(actor.ping.remote(), self._ping_timeout_s, "warm session actor")
                return actor
            except Exception as exc:
                log.warning("a warm session actor did not answer (%r); dropped", exc)
                kill_actor(actor)
        return None

    async def _warm_or_new(self):
        return await self._take_warm() or await self._spawn()

    async def _wait_warm(self):
        """The next actor the refill makes, within `wait_s`; else NoWarmSession."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.start()
        self._poke.set()
        try:
            await asyncio.wait({fut}, timeout=self._wait_s)
        except BaseException:  # the caller went: an actor handed over meanwhile goes back to the pool
            if fut.done() and not fut.cancelled():
                self._warm.append(fut.result())
            fut.cancel()
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        if not fut.done():
            fut.cancel()
            raise NoWarmSession(f"no warm session actor within {self._wait_s * 1000:.0f} ms; the pool is refilling")
        return fut.result()

    def _give(self, actor) -> None:
        """A new actor: to the first caller still waiting, else to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(actor)
                return
        self._warm.append(actor)

    async def _refill(self) -> None:
        """Forever: spawn one at a time up to the target (plus callers waiting), pausing between
        spawns while calls talk; trim the pool one actor at a time when the target falls. An
        actor being reset counts as warm: it is back within a round trip."""
        while True:
            want = self.sizer.target() + len(self._waiters)
            if len(self._warm) + len(self._returning) < want:
                started = time.monotonic()
                try:
                    actor = await self._spawn()
                except Exception:
                    log.exception("could not pre-start a session actor; retrying in 1 s")
                    await asyncio.sleep(1.0)
                    continue
                self.sizer.spawned(time.monotonic() - started)
                self._give(actor)
                await self._nap(self.sizer.pause_s(self.active, len(self._waiters)))
                continue
            self._trim(want)
            await self._nap(1.0)  # a tick also lets the target decay with the arrival rate

    def _trim(self, want: int) -> None:
        if len(self._warm) <= want:
            self._over_since = None
            return
        now = time.monotonic()
        self._over_since = self._over_since or now
        if now - self._over_since >= self._trim_after_s:
            kill_actor(self._warm.pop(0))  # the oldest first

    async def _nap(self, seconds: float) -> None:
        """Sleep, cut short by a new call or a waiting caller."""
        self._poke.clear()
        try:
            await asyncio.wait_for(self._poke.wait(), seconds)
        except TimeoutError:
            pass

    def _return(self, actor) -> None:
        """An ended call's actor: reset for the next call in the background, never waited on."""
        self._returning[actor] = asyncio.get_running_loop().create_task(self._recycle(actor))

    async def _recycle(self, actor) -> None:
        ready = False
        try:
            ready = await within(actor.recycle.remote(), self._ping_timeout_s, "session actor reset")
        except Exception as exc:
            log.info("an ended call's session actor was not reset (%r); killed", exc)
        finally:  # cancelled too (the replica stopping): killed, never left unowned
            self._returning.pop(actor, None)
            if not ready:
                kill_actor(actor)
            self._poke.set()  # the refill counted it as warm: it tops up or trims now
        if ready:
            self.reused += 1
            self._give(actor)


def kill_actor(actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:
        log.warning("session actor already gone")
