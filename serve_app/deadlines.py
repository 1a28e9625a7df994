"""Deadlines for every stage of a call.

Anything a call waits on (a session actor, the dialogue, TTS) can hang: a stuck process, a
CPU-bound call, a lost node. Nothing on the call path may wait without a limit, or the line
is never freed. A stage past its deadline raises `StageTimeout`, which the caller turns into a
fallback sentence, an `error` event or a clear end of the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class StageTimeout(TimeoutError):
    def __init__(self, stage: str, seconds: float):
        super().__init__(f"{stage} took longer than {seconds:g} s")
        self.stage, self.seconds = stage, seconds


@dataclass(frozen=True)
class Deadlines:
    """Seconds per stage, from Settings (`VOICE_*_TIMEOUT_MS`)."""

    greeting_s: float = 5.0  # the greeting's first sentence
    dialogue_s: float = 10.0  # a turn's first sentence, and each next one
    tts_first_audio_s: float = 5.0  # a sentence's first audio chunk
    actor_start_s: float = 10.0  # a session actor spawned (ping) and started
    actor_call_s: float = 3.0  # any other session-actor call (prepare, commit, finish ...)
    checkpoint_s: float = 1.0  # the final checkpoint; past it the actor is killed unsaved

    @classmethod
    def from_settings(cls, s) -> Deadlines:
        return cls(
            greeting_s=s.greeting_timeout_ms / 1000,
            dialogue_s=s.dialogue_timeout_ms / 1000,
            tts_first_audio_s=s.tts_first_audio_timeout_ms / 1000,
            actor_start_s=s.actor_start_timeout_ms / 1000,
            actor_call_s=s.actor_call_timeout_ms / 1000,
            checkpoint_s=s.checkpoint_timeout_ms / 1000,
        )


async def within(aw: Awaitable[T], seconds: float, stage: str) -> T:
    """`aw`'s result, or StageTimeout once `seconds` have passed (`aw` is then cancelled).

    A cancellation that arrives while waiting is always raised: Python 3.11's wait_for returns
    the result instead when `aw` completes in the same moment, and a loop above it then never stops."""
    task = asyncio.current_task()
    asked = task.cancelling() if task is not None else 0
    try:
        result = await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise StageTimeout(stage, seconds) from None
    if task is not None and task.cancelling() > asked:
        raise asyncio.CancelledError
    return result


async def next_item(stream):
    """The next item of a Serve streaming response; StopAsyncIteration at the end."""
    return await stream.__anext__()


async def items_within(stream, seconds: float, stage: str) -> AsyncIterator:
    """The items of a Serve streaming response, each within `seconds` of the one before."""
    while True:
        try:
            item = await within(next_item(stream), seconds, stage)
        except StopAsyncIteration:
            return
        yield item


async def first_within(chunks, seconds: float, stage: str) -> AsyncIterator:
    """A stream whose first item must come within `seconds`; the rest flows as it comes."""
    it = chunks.__aiter__()
    try:
        first = await within(it.__anext__(), seconds, stage)
    except StopAsyncIteration:
        return
    yield first
    async for item in it:
        yield item
