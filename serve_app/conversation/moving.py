"""When a draining replica may move a call: between turns, once the caller has been quiet.

A call is moved by ending its socket with `draining` and the resume token; whatever the caller
sends after that moment is lost with the old socket. So the move waits for a reply to be made
and spoken, and for `QUIET_S` without a typed turn or a voiced frame: words already on their
way to us make a turn, not a loss.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

QUIET_S = 0.5


def mid_turn(listener, turns, speaker, clock=time.monotonic) -> bool:
    """A reply being made or spoken, or the caller not quiet for `QUIET_S`."""
    quiet = clock() - listener.heard_at >= QUIET_S and not listener.endpointer.hearing_voice
    return not quiet or bool(turns.busy or turns.queue.qsize() or speaker.speaking())


async def between_turns(listener, turns, speaker, within_s: float, session_id: str, clock=time.monotonic) -> None:
    """Returns at the first quiet moment between turns, or after `within_s` all the same."""
    deadline = time.monotonic() + within_s
    while mid_turn(listener, turns, speaker, clock) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if mid_turn(listener, turns, speaker, clock):
        log.warning("call %s: still mid-turn after %g s of drain; moved all the same", session_id, within_s)
