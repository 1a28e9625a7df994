"""How many session actors to keep warm, and how fast to start them: pure, clock injected.

A call admitted only with a warm actor needs as many warm as will arrive while one spawns:
arrivals per second x seconds per spawn, with a margin, never under the configured base nor
over the cap (each warm actor is a process holding memory). Spawns are paced because they
take the same cores the live calls need: one at a time, a pause between them while calls are
active, none when the box is idle or a caller is waiting for one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
SPAWN_GUESS_S = 2.0  # before the first measured spawn: a Ray worker process on a loaded 2-core box
SPAWN_ALPHA = 0.3  # weight of the latest spawn in its running average


class ArrivalRate:
    """Arrivals per second, exponentially weighted over about `window_s` (O(1) memory).

    Each arrival adds 1/window_s to a level that decays by e every window_s: at a steady rate
    r the level settles at r; after the arrivals stop it fades instead of dropping at once."""

    def __init__(self, window_s: float, clock: Clock = time.monotonic):
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._tau, self._clock = window_s, clock
        self._level, self._at = 0.0, clock()

    def _decay(self) -> None:
        now = self._clock()
        self._level *= math.exp(-max(0.0, now - self._at) / self._tau)
        self._at = now

    def arrive(self) -> None:
        self._decay()
        self._level += 1.0 / self._tau

    def per_s(self) -> float:
        self._decay()
        return self._level


class WarmSizer:
    """The warm pool's target size and the pause before the next spawn."""

    def __init__(
        self,
        base: int,
        cap: int,
        window_s: float = 30.0,
        margin: float = 1.5,
        pause_s: float = 0.5,
        clock: Clock = time.monotonic,
    ):
        if base < 0 or cap < base or margin <= 0 or pause_s < 0:
            raise ValueError("need 0 <= base <= cap, margin > 0, pause_s >= 0")
        self.base, self.cap, self.margin, self.pause = base, cap, margin, pause_s
        self.rate = ArrivalRate(window_s, clock)
        self.spawn_s = SPAWN_GUESS_S

    def arrive(self) -> None:
        self.rate.arrive()

    def spawned(self, seconds: float) -> None:
        """A spawn took this long: the running average follows the box's load."""
        self.spawn_s += SPAWN_ALPHA * (seconds - self.spawn_s)

    def target(self) -> int:
        """Calls expected to arrive during one spawn, with the margin, rounded; within [base, cap]."""
        expected = self.rate.per_s() * self.spawn_s * self.margin
        return min(self.cap, max(self.base, math.floor(expected + 0.5)))

    def pause_s(self, active_calls: int, waiting: int) -> float:
        """Before the next spawn: none when nobody talks (nothing to starve) or a caller waits
        (that call's admission is at stake); else the configured pause."""
        return 0.0 if active_calls == 0 or waiting else self.pause
