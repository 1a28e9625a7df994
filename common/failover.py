"""A cloud provider first, the offline one when it fails: one rule for hearing and speaking.

ASR (Deepgram, then Whisper) and TTS (OpenAI, then piper) follow the same promise: a cloud
outage never costs the caller a turn or a sentence. The primary is tried (its own client
enforces its deadline); on an error the failure is reported (the caller logs why, in its own
words, and may drop its connection) and the secondary answers; the answer names who gave it.
A stream fails over only before its first item: once audio has gone out, a second voice would
repeat it, so a later failure is raised. The primary can also be left alone for a while
(`hold`), so a dead provider is not retried on every frame.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

T = TypeVar("T")
OnFailure = Callable[[Exception], Awaitable[None] | None]


class Failover:
    def __init__(self, primary: str, secondary: str, retry_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.primary, self.secondary = primary, secondary  # the provider labels answers carry
        self._retry_s, self._clock = retry_s, clock
        self._held_at = float("-inf")

    def hold(self) -> None:
        """Leave the primary alone for `retry_s` from now (it failed, or it is being reached)."""
        self._held_at = self._clock()

    @property
    def due(self) -> bool:
        """Whether the primary may be tried again: never held, or held `retry_s` ago."""
        return self._clock() - self._held_at >= self._retry_s

    async def call(
        self,
        primary: Callable[[], Awaitable[T]],
        secondary: Callable[[], Awaitable[T]],
        *,
        use_primary: bool = True,
        on_failure: OnFailure | None = None,
    ) -> tuple[T, str]:
        """`(answer, provider label)`: the primary's unless it is not to be used or fails."""
        if use_primary:
            try:
                return await primary(), self.primary
            except Exception as exc:  # cancellation is not a failure: it is never caught here
                await _report(on_failure, exc)
        return await secondary(), self.secondary

    async def stream(
        self,
        primary: Callable[[], AsyncGenerator[T, None]],
        secondary: Callable[[], AsyncGenerator[T, None]],
        *,
        use_primary: bool = True,
        on_failure: OnFailure | None = None,
    ) -> AsyncIterator[T]:
        """The primary's items; the secondary's if the primary fails before its first item."""
        if use_primary:
            started = False
            try:
                async with aclosing(primary()) as items:  # closed at once if our consumer stops (barge-in)
                    async for item in items:
                        started = True
                        yield item
                return
            except Exception as exc:
                if started:
                    raise  # part of the answer is out: the secondary would repeat it
                await _report(on_failure, exc)
        async with aclosing(secondary()) as items:
            async for item in items:
                yield item


async def _report(on_failure: OnFailure | None, exc: Exception) -> None:
    if on_failure is not None and inspect.isawaitable(outcome := on_failure(exc)):
        await outcome
