"""Real-time pacing of agent audio: never more than `max_lead_s` ahead of the caller's playback.

Keeping the lead small is what makes `audio.clear` effective: little is buffered client-side.
Audio goes out in messages of `frame_ms` (VOICE_OUTPUT_FRAME_MS): every message is a WebSocket
frame relayed by Serve's proxy, so fewer, longer ones cost less CPU. What the caller has heard is
counted in time (sent audio minus the lead), never in messages, so it stays exact whatever the size.
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
        frame_ms: int = 100,
        clock=time.monotonic,
        heard: Callable[[], tuple[int, int]] | None = None,
    ):
        self._send = send
        self._heard = heard  # a phone line's marks: (at least, at most) bytes heard, to bound the estimate
        self._rate = sample_rate
        self._max_lead = max_lead_s
        self._frame_bytes = max(2, sample_rate * frame_ms // 1000 * 2)
        self._clock = clock
        self._start = 0.0
        self._sent_s = 0.0
        self.bytes_sent = 0

    def lead_s(self) -> float:
        """Audio sent but not yet played, as the caller's clock sees it."""
        lead = self._sent_s - (self._clock() - self._start)
        return lead if lead > 1e-6 else 0.0

    def played_s(self, since_bytes: int) -> float:
        """Seconds of the audio sent since byte `since_bytes` the caller has played by now."""
        played = self.bytes_sent - self.lead_s() * 2 * self._rate
        if self._heard is not None:
            at_least, at_most = self._heard()
            played = min(max(played, at_least), at_most)
        return max(0.0, (played - since_bytes) / 2 / self._rate)

    async def send(self, pcm16: bytes) -> None:
        for i in range(0, len(pcm16), self._frame_bytes):
            frame = pcm16[i : i + self._frame_bytes]
            frame_s = len(frame) / 2 / self._rate
            if self.lead_s() == 0.0:  # playback caught up: a new stretch of speech starts now, at once
                self._start, self._sent_s = self._clock(), 0.0
            # a lead under one message is no lead: a message may always follow one that has played
            excess = self.lead_s() + frame_s - max(self._max_lead, frame_s)
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
