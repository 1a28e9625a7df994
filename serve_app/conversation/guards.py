"""Per-call abuse guards: rates of client frames, and of the error events sent back.

A flood must cost the server little and never be echoed: every binary frame counts, whatever
its size (empty and odd-length ones too, which carry no audio time), and errors of one kind
are sent at most once a second, the rest counted into the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class ErrorLimiter:
    """At most one error event per code per `interval_s`; the ones held back are counted and
    reported in the next event of that code (its `suppressed` field)."""

    def __init__(self, interval_s: float = 1.0, clock: Clock = time.monotonic):
        self._interval, self._clock = interval_s, clock
        self._sent_at: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, code: str) -> int | None:
        """None: hold this one back. Otherwise send it, with this many held back before it."""
        now = self._clock()
        last = self._sent_at.get(code)
        if last is not None and now - last < self._interval:
            self._held[code] = self._held.get(code, 0) + 1
            return None
        self._sent_at[code] = now
        return self._held.pop(code, 0)

    @property
    def held(self) -> int:
        """Error events held back and not reported yet (all codes)."""
        return sum(self._held.values())


def cancelling() -> bool:
    """True once the running task was asked to cancel, even if an `asyncio.wait_for` under it
    swallowed the CancelledError (a Python 3.11 race): the call's loops stop on it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
