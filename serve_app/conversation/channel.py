"""The caller's WebSocket as the conversation sees it: events and audio out, one at a time,
agent and user states told once per change, errors rate-limited, and a mute that keeps any
agent audio from following `audio.clear`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from models.protocol import error_event, event
from serve_app.conversation.guards import ErrorLimiter

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 1.0  # at the end of a call, for the Deepgram stream and the socket's close


class Channel:
    def __init__(self, ws, on_gone: Callable[[], None], clock=time.monotonic):
        self.ws = ws
        self._on_gone = on_gone  # the caller is gone: the call ends without a close frame
        self.closed = False
        self.mute = False  # set at barge-in: no agent audio may follow audio.clear
        self.agent_state: str | None = None
        self.user_state = "silent"
        self.heard = getattr(ws, "heard_bounds", None)  # a phone line knows what was heard (serve_app/phone)
        self._lock = asyncio.Lock()
        self._errors = ErrorLimiter(clock=clock)

    def gone(self) -> None:
        self.closed = True
        self._on_gone()

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            async with self._lock:
                await self.ws.send_text(text)
        except Exception:
            self.gone()

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise asyncio.CancelledError
        try:
            async with self._lock:
                if self.mute:  # a barge-in came first: this audio must never reach the caller
                    raise asyncio.CancelledError
                await self.ws.send_bytes(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.gone()
            raise asyncio.CancelledError from None

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        await quietly(self.ws.close(code=code, reason=reason[:120]), CLOSE_WAIT_S, "close")

    async def error(self, code: str, message: str, always: bool = False) -> None:
        """At most one error event per code a second (a flood is not echoed); `always` for
        the one before a close."""
        held = self._errors.admit(code)
        if held is not None or always:
            await self.send_text(error_event(code, message, held or 0))

    async def agent(self, state: str) -> None:
        if state != self.agent_state:
            self.agent_state = state
            await self.send_text(event("agent.state", state=state))

    async def user(self, state: str) -> None:
        if state != self.user_state:
            self.user_state = state
            await self.send_text(event("user.state", state=state))


async def quietly(aw, seconds: float, what: str) -> None:
    """Closing steps that must not hold the line: bounded, failures only logged."""
    try:
        await asyncio.wait_for(aw, seconds)
    except Exception as exc:
        log.info("%s did not complete: %r", what, exc)
