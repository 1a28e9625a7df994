"""Bookkeeping with the session actor: calls bounded by their deadline, and a turn's close
(its metrics to the client and the stage histograms, its record to the actor)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from models.protocol import event
from serve_app.conversation.channel import Channel
from serve_app.conversation.turn_parts import orchestration_ms
from serve_app.deadlines import Deadlines, within

log = logging.getLogger(__name__)


class Record:
    def __init__(self, channel: Channel, actor, session_id: str, deadlines: Deadlines, observe: Callable):
        self._channel, self._actor, self.session_id, self._dl = channel, actor, session_id, deadlines
        self._observe = observe

    async def actor_call(self, ref, what: str, default=None):
        """A bookkeeping call to the session actor, within its deadline; `default` if it fails."""
        try:
            return await within(ref, self._dl.actor_call_s, what)
        except Exception as exc:
            log.warning("call %s: session actor %s failed: %r", self.session_id, what, exc)
            return default

    async def finish_turn(
        self, turn_id: int, metrics: dict | None, interrupted: bool = False, heard_part: list[str] | None = None
    ) -> None:
        if metrics and (orchestration := orchestration_ms(metrics)) is not None:
            metrics["orchestration_ms"] = orchestration
        numbers = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        if metrics:
            await self._channel.send_text(event("turn.metrics", turn_id=turn_id, interrupted=interrupted, **metrics))
            for stage, ms in numbers.items():
                self._observe(stage, ms)
        ref = self._actor.finish_turn.remote(turn_id, numbers, interrupted, heard_part)
        await self.actor_call(ref, "finish_turn")
