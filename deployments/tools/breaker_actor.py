"""One named Ray actor holds every tool's breaker for the whole cluster.

Callers keep a copy of all breakers' states for `ttl_s`: while a tool's breaker is closed
they call it with no round trip; only an open or half-open breaker is asked each time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import ray

from common.logs import mask_logs_in_this_process
from common.metrics import Meters
from deployments.tools.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

ACTOR_NAME = "tool_breakers"
NAMESPACE = "voice"

log = logging.getLogger(__name__)
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # voice_breaker_state's values (common/metric_catalog.py)


@ray.remote(num_cpus=0, max_restarts=-1)
class BreakerActor:
    def __init__(self, failure_threshold: int, recovery_s: float, trial_timeout_s: float = 10.0):
        mask_logs_in_this_process()
        self._threshold, self._recovery, self._trial_timeout = failure_threshold, recovery_s, trial_timeout_s
        self._breakers: dict[str, CircuitBreaker] = {}
        # Breakers are named by code (the tool registry's names, a provider's constant), never by a
        # caller; the state gauge is set on every change this actor sees.
        self._meters = Meters("voice_breaker_state")

    def _get(self, tool: str) -> CircuitBreaker:
        if tool not in self._breakers:
            self._add(tool, CircuitBreaker(self._threshold, self._recovery, trial_timeout_s=self._trial_timeout))
        return self._breakers[tool]

    def _add(self, name: str, breaker: CircuitBreaker) -> None:
        self._breakers[name] = breaker
        self._meters.allowed["breaker"] = tuple(self._breakers)
        self._publish(name)

    def _publish(self, name: str) -> None:
        self._meters.set("voice_breaker_state", STATE_VALUES[self._breakers[name].state], {"breaker": name})

    def allow(self, tool: str) -> bool:
        allowed = self._get(tool).allow()  # may move open -> half-open
        self._publish(tool)
        return allowed

    def configure(self, name: str, failure_threshold: int, recovery_s: float) -> None:
        """Give one breaker its own thresholds (a provider, not a tool); first caller wins."""
        if name not in self._breakers:
            self._add(name, CircuitBreaker(failure_threshold, recovery_s, trial_timeout_s=self._trial_timeout))

    def record(self, tool: str, ok: bool) -> dict:
        breaker = self._get(tool)
        breaker.record(ok)
        self._publish(tool)
        return breaker.snapshot()

    def states(self) -> dict[str, dict]:
        states = {tool: b.snapshot() for tool, b in self._breakers.items()}  # a snapshot may expire a trial
        for tool in states:
            self._publish(tool)
        return states


def breaker_actor(
    failure_threshold: int, recovery_s: float, trial_timeout_s: float | None = None, name: str = ACTOR_NAME
):
    """The cluster's breaker actor, created by whoever asks first.

    `trial_timeout_s`: None takes VOICE_BREAKER_TRIAL_TIMEOUT_S from this process's settings."""
    if trial_timeout_s is None:
        from common.config import get_settings

        trial_timeout_s = get_settings().breaker_trial_timeout_s
    return BreakerActor.options(name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached").remote(
        failure_threshold, recovery_s, trial_timeout_s
    )


class BreakerClient:
    """A replica's view of the breaker actor. An actor that cannot be reached (its node lost,
    restarting elsewhere) must not take the calls down with it: every breaker then counts as
    closed, logged once, and the actor is asked again after `retry_s`."""

    def __init__(self, actor, ttl_s: float = 1.0, clock=time.monotonic, timeout_s: float = 1.0, retry_s: float = 5.0):
        self._actor, self._ttl, self._clock = actor, ttl_s, clock
        self._timeout, self._retry = timeout_s, retry_s
        self._states: dict[str, dict] = {}
        self._fetched_at = float("-inf")
        self._down_until = float("-inf")  # unreachable: not asked again before this
        self.round_trips = 0

    async def _ask(self, method: str, *args, default=None):
        if self._clock() < self._down_until:
            return default
        self.round_trips += 1
        try:
            answer = await asyncio.wait_for(getattr(self._actor, method).remote(*args), self._timeout)
        except Exception as exc:  # RayActorError, a timeout: unreachable either way
            if self._down_until == float("-inf"):
                log.warning("breaker actor unreachable (%r): every breaker counts as closed until it answers", exc)
            self._down_until = self._clock() + self._retry
            return default
        if self._down_until != float("-inf"):
            log.info("breaker actor answers again")
            self._down_until = float("-inf")
        return answer

    async def _snapshot(self, tool: str) -> dict | None:
        if self._clock() - self._fetched_at > self._ttl:
            self._states = await self._ask("states", default={})
            self._fetched_at = self._clock()
        return self._states.get(tool)

    async def allow(self, tool: str) -> bool:
        snap = await self._snapshot(tool)
        if snap is None or snap["state"] == CLOSED:
            return True
        return await self._ask("allow", tool, default=True)

    async def configure(self, name: str, failure_threshold: int, recovery_s: float) -> None:
        await self._ask("configure", name, failure_threshold, recovery_s)

    async def record(self, tool: str, ok: bool) -> None:
        snap = self._states.get(tool)
        if ok and (snap is None or (snap["state"] == CLOSED and snap["failures"] == 0)):
            return  # nothing to reset: skip the round trip
        recorded = await self._ask("record", tool, ok)
        if recorded is not None:
            self._states[tool] = recorded
