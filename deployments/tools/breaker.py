"""Circuit breaker state machine: closed -> open after N failures -> half-open after the
recovery time (one trial call) -> closed on success, open again on failure.

A trial whose outcome never comes (the call hung up, the turn was cancelled) counts as a
failure once `trial_timeout_s` has passed: otherwise the tool stays refused for every call
in the cluster, forever."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    recovery_s: float = 30.0
    clock: callable = field(default=time.monotonic, repr=False)
    trial_timeout_s: float = 10.0
    state: str = CLOSED
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False
    trial_started_at: float | None = None

    def _expire_trial(self) -> None:
        if self.state != HALF_OPEN or not self.trial_in_flight:
            return
        if self.clock() - self.trial_started_at >= self.trial_timeout_s:
            self.record(False)  # never reported: the trial failed, open again

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one trial call at a time."""
        self._expire_trial()
        if self.state == OPEN and self.clock() - self.opened_at >= self.recovery_s:
            self.state, self.trial_in_flight = HALF_OPEN, False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight, self.trial_started_at = True, self.clock()
            return True
        return False

    def record(self, ok: bool) -> None:
        if ok:
            self.state, self.failures, self.opened_at, self.trial_in_flight = CLOSED, 0, None, False
            return
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self.trial_in_flight = OPEN, self.clock(), False

    def snapshot(self) -> dict:
        self._expire_trial()
        retry_in = None
        if self.state == OPEN:
            retry_in = max(0.0, self.recovery_s - (self.clock() - self.opened_at))
        return {"state": self.state, "failures": self.failures, "retry_in_s": retry_in}
