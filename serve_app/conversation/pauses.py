"""One call's end-of-turn decisions: at each pause the run-ahead transcript is judged
(deployments/vad/turn_end.py) and the endpointer told how long this silence must last.

A verdict still on its way holds the endpoint a little past the fixed silence. Kept apart from
the call so the timing it reports (`turn_end_at_ms`: how far into the silence the
decision came; `turn_end_waited_ms`: how long a transcript still on its way had been) can be
tested without one: a decision that comes after `turn_end_min_ms` costs the caller its lateness.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common.config import Settings
from deployments.vad.engine import Endpointer
from deployments.vad.turn_end import decide


class Pauses:
    def __init__(self, settings: Settings, endpointer: Endpointer, clock: Callable[[], float] = time.monotonic):
        self._settings, self._endpointer, self._clock = settings, endpointer, clock
        self.awaited: str | None = None  # what the agent asked for (PIN, order number)
        self._decision: dict | None = None  # this pause's, for the turn's metrics
        self._paused_at = 0.0  # when the run-ahead started: preemptive_ms into the silence

    @property
    def decision(self) -> dict | None:
        """This pause's decision so far (None: none yet, or the caller went on)."""
        return self._decision

    def paused(self) -> None:
        """The run-ahead starts on this pause: until its verdict, the fixed silence is stretched
        by turn_end_wait_ms (never past turn_end_max_ms), so a late verdict still counts."""
        self._decision, self._paused_at = None, self._clock()
        s = self._settings
        if s.turn_end == "adaptive" and s.turn_end_wait_ms:
            self._endpointer.end_after(min(s.end_silence_ms + s.turn_end_wait_ms, s.turn_end_max_ms))

    def resumed(self) -> None:
        """The caller went on: this pause's decision no longer holds (the endpointer drops it too)."""
        self._decision = None

    def heard(self, text: str | None) -> None:
        """The run-ahead's transcript of the turn so far: a finished turn ends after a short
        silence, an unfinished one waits longer, an unsure one keeps the fixed silence (as does
        None: the transcript failed)."""
        s = self._settings
        if s.turn_end == "fixed":
            return
        if text is None:
            self._endpointer.end_after(None)
            return
        verdict = decide(text, self.awaited)
        self._endpointer.end_after(verdict.endpoint_ms(s.turn_end_min_ms, s.turn_end_max_ms))
        decided_at = s.preemptive_ms + (self._clock() - self._paused_at) * 1000
        self._decision = verdict.metrics() | {"turn_end_at_ms": round(decided_at, 1)}

    def ended(self, transcript_pending: bool) -> dict:
        """The decision the turn ended on, for turn.metrics. "none": the fixed silence ran out
        first (the run-ahead failed, or took past turn_end_wait_ms); with its transcript still on
        its way, how long it had been."""
        decision, self._decision = self._decision, None
        if decision is not None:
            return decision
        if self._settings.turn_end == "fixed":
            return {"turn_end": "fixed"}
        if not transcript_pending:
            return {"turn_end": "none"}
        return {"turn_end": "none", "turn_end_waited_ms": round((self._clock() - self._paused_at) * 1000, 1)}
