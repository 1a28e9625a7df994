"""Audio synthesized ahead of the endpoint, still streaming.

A run-ahead turn needs only the first chunk of its reply's audio before the endpoint; waiting
for the whole first sentence (all its parts) would hold the reply back by a long sentence's
synthesis. A Prefetch keeps reading the TTS stream in the background, so the turn can start
playing what has arrived and go on with what follows, and stops the stream (and the TTS
replica behind it) when the turn is thrown away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

_END = object()


def stop_stream(stream) -> None:
    """Cancel a Serve streaming response: leaving the loop alone would let the replica run on."""
    cancel = getattr(stream, "cancel", None)
    if cancel is not None:
        cancel()


class Prefetch:
    def __init__(self, stream):
        self._stream = stream
        self._queue: asyncio.Queue = asyncio.Queue()
        self._first = asyncio.Event()
        self.chunks = 0
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for chunk in self._stream:
                self.chunks += 1
                self._queue.put_nowait(chunk)
                self._first.set()
            self._queue.put_nowait(_END)
        except asyncio.CancelledError:
            stop_stream(self._stream)
            raise
        except Exception as exc:
            self._queue.put_nowait(exc)
        finally:
            self._first.set()

    async def started(self) -> bool:
        """Wait for the first chunk; False when the stream ended or failed without one."""
        await self._first.wait()
        return self.chunks > 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self._queue.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self) -> None:
        self._task.cancel()
