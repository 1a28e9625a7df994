"""Load shedding: refuse new calls (1013) before the calls already talking degrade.

Two signals of a saturated box, both from the Gateway's own view: its event loop's lag (every
frame of every call passes through it) and the recent first-audio latency of its calls' turns
(`eos_to_first_audio_ms`: CPU starvation anywhere, ASR, TTS or the proxy, shows up there).
With hysteresis: shedding starts when either is above its threshold and stops only when both
are below their (lower) resume thresholds, so admission does not flap at the edge. A window
with too few turns judges on the loop lag alone: when the calls end, shedding ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]
LAG_WINDOW_S = 5.0  # loop lag is judged over the last few seconds: one stall is not saturation
LAG_EVERY_S = 0.1  # the probe's tick


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class LoadShedder:
    """Thresholds in ms; 0 turns a signal off."""

    def __init__(
        self,
        lag_shed_ms: float,
        lag_resume_ms: float,
        turn_shed_ms: float,
        turn_resume_ms: float,
        window_s: float = 30.0,
        min_turns: int = 5,
        clock: Clock = time.monotonic,
    ):
        self.lag_shed, self.lag_resume = lag_shed_ms, lag_resume_ms
        self.turn_shed, self.turn_resume = turn_shed_ms, turn_resume_ms
        self.window_s, self.min_turns, self._clock = window_s, min_turns, clock
        self._lags: deque[tuple[float, float]] = deque(maxlen=int(4 * LAG_WINDOW_S / LAG_EVERY_S))
        self._turns: deque[tuple[float, float]] = deque(maxlen=2000)
        self._shedding = False

    def lag(self, ms: float) -> None:
        self._lags.append((self._clock(), ms))

    def turn(self, ms: float) -> None:
        self._turns.append((self._clock(), ms))

    def signals(self) -> tuple[float | None, float | None]:
        """(loop lag P95, turn first-audio P95) in ms over their windows; None: too few samples."""
        now = self._clock()
        lags = [ms for at, ms in self._lags if at > now - LAG_WINDOW_S]
        turns = [ms for at, ms in self._turns if at > now - self.window_s]
        return (p95(lags) if lags else None, p95(turns) if len(turns) >= self.min_turns else None)

    @property
    def shedding(self) -> bool:
        lag, turn = self.signals()
        above = _over(lag, self.lag_shed) or _over(turn, self.turn_shed)
        below = _under(lag, self.lag_shed, self.lag_resume) and _under(turn, self.turn_shed, self.turn_resume)
        if not self._shedding and above:
            self._shedding = True
            log.warning("shedding new calls: loop lag P95 %s ms, turn first audio P95 %s ms", _ms(lag), _ms(turn))
        elif self._shedding and below:
            self._shedding = False
            log.warning("taking new calls again: loop lag P95 %s ms, turn first audio P95 %s ms", _ms(lag), _ms(turn))
        return self._shedding


def _over(value: float | None, shed: float) -> bool:
    return bool(shed) and value is not None and value > shed


def _under(value: float | None, shed: float, resume: float) -> bool:
    return not shed or value is None or value < resume


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


async def watch_loop_lag(record: Callable[[float], None], every_s: float = LAG_EVERY_S) -> None:
    """Forever: how late this event loop wakes from a sleep of `every_s`, in ms."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(every_s)
        record(max(0.0, (loop.time() - start - every_s) * 1000))
