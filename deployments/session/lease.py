"""A session actor's lease: how it outlives its Gateway replica, and how it never outlives its call.

Session actors are detached, so a call survives the Gateway replica that started it (a crash,
a redeploy): the caller dials back with its resume token and any replica takes the call up.
The price is that nothing kills an actor whose Gateway is gone, so the actor watches for itself:
the Gateway renews the lease of every actor it holds (warm or in a call) every `lease_s / 3`,
and a lapsed lease means the Gateway is gone. Pure, so the rule is tested without Ray.
"""

from __future__ import annotations

from enum import Enum

from models.state import SessionState


class Verdict(str, Enum):
    KEEP = "keep"
    HOLD = "hold"  # a live call lost its Gateway: hold it for a resume, as a dropped socket is
    END = "end"  # held past the resume window: the call ends (`caller_dropped`), then the actor exits
    EXIT = "exit"  # nothing left to keep: a warm actor or an ended call whose Gateway is gone


def verdict(state: SessionState | None, lease_left_s: float, now_ms: int, window_s: float) -> Verdict:
    """What the actor does now, given its call and the seconds left on its lease (negative: lapsed)."""
    lapsed = lease_left_s < 0
    if state is None or state.ended_at_ms is not None:
        return Verdict.EXIT if lapsed else Verdict.KEEP
    if state.dropped_at_ms is not None:  # held: no Gateway renews it; the window decides
        return Verdict.END if now_ms - state.dropped_at_ms > window_s * 1000 else Verdict.KEEP
    return Verdict.HOLD if lapsed else Verdict.KEEP
