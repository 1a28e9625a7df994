"""Real-time pacing of agent audio: never more than `max_lead_s` ahead of the caller's playback.

Keeping the lead small is what makes `audio.clear` effective: little is buffered client-side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class AudioPacer:
    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        sample_rate: int,
        max_lead_s: float = 0.4,
        frame_ms: int = 40,
        clock=time.monotonic,
    ):
        self._send = send
        self._rate = sample_rate
        self._max_lead = max_lead_s
        self._frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._clock = clock
        self._start = 0.0
        self._sent_s = 0.0
        self.bytes_sent = 0

    def lead_s(self) -> float:
        """Audio sent but not yet played, as the caller's clock sees it."""
        lead = self._sent_s - (self._clock() - self._start)
        return lead if lead > 1e-6 else 0.0

    async def send(self, pcm16: bytes) -> None:
        for i in range(0, len(pcm16), self._frame_bytes):
            frame = pcm16[i : i + self._frame_bytes]
            frame_s = len(frame) / 2 / self._rate
            if self.lead_s() == 0.0:  # playback caught up: a new stretch of speech starts now
                self._start, self._sent_s = self._clock(), 0.0
            excess = self.lead_s() + frame_s - self._max_lead
            if excess > 0:
                await asyncio.sleep(excess)
            await self._send(frame)
            self._sent_s += frame_s
            self.bytes_sent += len(frame)

    async def drain(self) -> None:
        """Wait until the caller has heard everything sent."""
        remaining = self.lead_s()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def clear(self) -> float:
        """Forget unplayed audio (after `audio.clear`); returns the seconds dropped."""
        dropped = self.lead_s()
        self._sent_s -= dropped
        return dropped
