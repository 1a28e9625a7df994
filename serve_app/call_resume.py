"""The caller's side of resume (docs/protocol.md, Connect): a call's line across its sockets.

A drop is a socket that ends with no `session.ended` before it and without our own hang-up or
close: the server then holds the call `VOICE_RESUME_WINDOW_S` (30 s by default) for
`resume=TOKEN`. A client cannot learn that window, so it dials back for `RESUME_FOR_S` after
the drop, backing off, and stops at the first refusal that can only mean "never": a 403 (token
used, expired or not ours) once the server has had time to notice the drop, or a 4xx other
than 429. Network errors, 429 and 5xx (503: that replica is full) are tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import websockets

log = logging.getLogger(__name__)

RESUME_FOR_S = 30.0
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)  # then the last, until the window is over
# A reconnect can beat the server to noticing the drop (it then still sees the call as live and
# refuses the token): a 403 this soon after the drop is tried again.
NOT_NOTICED_YET_S = 5.0  # the server waits up to its lease (3 s) + 1 s for a dead replica's call
MAX_SIZE = 2**22


def backoff(attempt: int) -> float:
    return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]


def final_refusal(status: int, since_drop_s: float) -> bool:
    """An HTTP answer to a resume that trying again cannot change."""
    if status == 403:
        return since_drop_s > NOT_NOTICED_YET_S
    return 400 <= status < 500 and status != 429


async def redial(url: str, resume_for: float = RESUME_FOR_S, open_timeout: float = 10):
    """A new socket into the held call at `url` (carrying `resume=TOKEN`), or None when the
    server refused it for good or `resume_for` seconds since the drop have passed."""
    dropped = time.monotonic()
    attempt = 0
    while True:
        delay = backoff(attempt)
        left = dropped + resume_for - time.monotonic()
        if left <= delay:
            log.info("resume given up: %.0f s since the drop", resume_for)
            return None
        await asyncio.sleep(delay)
        attempt += 1
        try:
            return await websockets.connect(url, max_size=MAX_SIZE, open_timeout=min(open_timeout, left - delay))
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if final_refusal(status, time.monotonic() - dropped):
                log.info("resume refused: HTTP %d", status)
                return None
            log.info("resume attempt %d: HTTP %d, trying again", attempt, status)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            log.info("resume attempt %d failed: %r", attempt, exc)


class Line:
    """One call's connection, whatever socket carries it now. The caller tells it the latest
    `token` (from session.started) and whether the call `ended` (session.ended seen)."""

    def __init__(self, base: str, query: dict, resume_for: float = RESUME_FOR_S):
        self._base, self._query, self.resume_for = base, query, resume_for
        self.url = f"{base}?{urlencode(query)}"
        self.ws = None
        self.token: str | None = None
        self.ended = False
        self._leaving = False  # we hung up or closed: a close now is no drop
        self.live = asyncio.Event()  # a socket is up; cleared while a drop is dialled back
        self._over = False  # run() has returned: no socket will follow this one

    async def open(self, timeout: float) -> None:
        """Dial the call; a 503 (that replica is draining, or full while another has room) is
        dialled again, as its Retry-After says, until `timeout`."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                self.ws = await websockets.connect(self.url, max_size=MAX_SIZE, open_timeout=timeout)
                break
            except websockets.InvalidStatus as exc:
                if exc.response.status_code != 503 or time.monotonic() + backoff(attempt) > deadline:
                    raise
                await asyncio.sleep(backoff(attempt) / 4)
                attempt += 1
        self.live.set()

    def leave(self) -> None:
        self._leaving = True

    def dropped(self) -> bool:
        return self.token is not None and not self._leaving and not self.ended and self.resume_for > 0

    async def run(self, handle: Callable[[str | bytes], Awaitable[None]]) -> None:
        """Hand every message to `handle`, socket after socket, until the call is over."""
        try:
            while True:
                try:
                    async for msg in self.ws:
                        await handle(msg)
                except websockets.ConnectionClosed:
                    pass
                if not self.dropped():
                    return
                self.live.clear()
                ws = await redial(f"{self._base}?{urlencode({**self._query, 'resume': self.token})}", self.resume_for)
                if ws is None:
                    return
                self.ws = ws
                self.live.set()
        finally:
            self._over = True
            self.live.set()  # senders waiting for a resume: it is over

    @property
    def close_code(self) -> int:
        return self.ws.close_code if self.ws.close_code is not None else 1006

    async def send_text(self, text: str) -> None:
        """On the live socket: during a resume, once it is back (or the call is over)."""
        while True:
            await self.live.wait()
            ws = self.ws
            try:
                return await ws.send(text)
            except websockets.ConnectionClosed:
                if not self.dropped():
                    raise
            while self.ws is ws and not self._over:  # the reader has yet to see the drop, or is dialling
                await asyncio.sleep(0.02)

    async def send_audio(self, frame: bytes, closed: bool) -> None:
        """A microphone frame: lost while the socket is down or dropping, as a phone's is."""
        if self.live.is_set() and not closed:
            try:
                await self.ws.send(frame)
            except websockets.ConnectionClosed:
                if not self.dropped():
                    raise

    async def close(self, reader: asyncio.Task | None) -> None:
        """Our own close, without hang-up: never dialled back (the server holds the call)."""
        self._leaving = True
        if reader is not None and not self.live.is_set():
            reader.cancel()  # between sockets: stop dialling
        if self.ws is not None:
            await self.ws.close()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)
