"""A call's timers and remote control: the idle check-in and goodbye, the call's TTL, and the
session-API commands (say, reply, interrupt, close) the session actor pushes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from common.config import Settings
from models.protocol import ProtocolError
from models.session import SessionCommand
from serve_app.conversation.channel import Channel
from serve_app.conversation.guards import cancelling
from serve_app.conversation.listener import Listener
from serve_app.conversation.session_client import SessionClient
from serve_app.conversation.speaker import Speaker
from serve_app.conversation.turn_parts import TurnInput
from serve_app.conversation.turns import Turns

log = logging.getLogger(__name__)

CHECK_IN = "Are you still there?"
IDLE_GOODBYE = "I haven't heard from you, so I'll end the call now. Goodbye."
IDLE_TICK_S = 0.25
COMMAND_RETRY_S = 1.0


class Timers:
    def __init__(
        self,
        channel: Channel,
        listener: Listener,
        speaker: Speaker,
        turns: Turns,
        session: SessionClient,
        settings: Settings,
        finish: Callable[[str], None],
    ):
        self._channel, self._listener, self._speaker, self._turns = channel, listener, speaker, turns
        self._session, self.session_id = session, session.session_id
        self._settings, self._finish = settings, finish
        self.idle_checks = 0  # unanswered check-ins; the caller speaking or typing resets it

    async def ttl(self) -> None:
        await asyncio.sleep(self._settings.session_ttl_s)
        self._finish("session_ttl")

    def _active(self) -> bool:
        return bool(
            self._turns.busy
            or self._turns.queue.qsize()
            or self._listener.endpointer.speaking
            or self._speaker.speaking()
            or self._speaker.interrupted
            or self._channel.agent_state != "listening"
        )

    async def idle(self) -> None:
        """Check in after `idle_checkin_s` of silence on both sides; after `idle_max_checkins`
        unanswered check-ins, say goodbye. Never while anyone speaks or a reply is on its way."""
        quiet_since = time.monotonic()
        while not cancelling():
            await asyncio.sleep(IDLE_TICK_S)
            if self._active():
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since < self._settings.idle_checkin_s:
                continue
            quiet_since = time.monotonic()
            if self.idle_checks >= self._settings.idle_max_checkins:
                self._turns.enqueue(TurnInput("goodbye", eos_at=quiet_since, text=IDLE_GOODBYE))
                return
            self.idle_checks += 1
            self._turns.enqueue(TurnInput("checkin", eos_at=quiet_since, text=CHECK_IN))

    async def commands(self) -> None:
        """Session-API commands (say, reply, interrupt, close), pushed by the session actor on
        one stream for the call's life; reopened after a second if it breaks."""
        while not cancelling():
            try:
                async for cmd in self._session.commands():
                    await self._apply(cmd)
            except Exception as exc:
                log.warning("call %s: session-API command stream broke (%r); reopening", self.session_id, exc)
            await asyncio.sleep(COMMAND_RETRY_S)

    async def _apply(self, cmd: SessionCommand) -> None:
        try:
            if cmd.op in ("say", "reply"):
                self._turns.enqueue(TurnInput(cmd.op, eos_at=time.monotonic(), text=cmd.text))
            elif cmd.op == "interrupt":
                await self._speaker.interrupt()
            elif cmd.op == "close":
                await self._speaker.interrupt()
                self._finish(cmd.reason)
        except ProtocolError as exc:  # the turn queue is full
            log.warning("call %s: session API %s refused: %s", self.session_id, cmd.op, exc.message)
            await self._session.command_failed(cmd.op)
