"""This replica's calls: one call's line from the handshake to its release, and the drain.

A line is held from the moment a session actor is taken for the call (a new one from the pool,
or a held call's actor adopted by a resume) until the call ends: whatever ends it, a
cancellation included, the line is given back, and the actor is killed (the call is over) or
left holding the call for a resume (a drop, or a drain).

A drain (the replica is being stopped: a redeploy, a downscale) lets each call finish the turn
in progress, then holds it and tells the caller `session.ended` with reason `draining` and its
resume token: the client dials back at once and the proxy routes it to a replica that stays.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from common.config import Settings
from models.protocol import CloseCode, event
from models.session import SessionOpened, StartSession
from serve_app.call_metrics import CallMeters
from serve_app.conversation.call import Call
from serve_app.deadlines import Deadlines, StageTimeout, within
from serve_app.load_shed import LoadShedder
from serve_app.session_pool import AtCapacity, NoWarmSession, SessionPool

log = logging.getLogger(__name__)

MakeCall = Callable[..., Call]  # (ws, params, actor, opened, resumed) -> Call


class Calls:
    def __init__(
        self, settings: Settings, pool: SessionPool, make_call: MakeCall, meters: CallMeters, shedder: LoadShedder
    ):
        self._settings, self._pool, self._make_call, self._meters = settings, pool, make_call, meters
        self._shedder = shedder
        self._dl = Deadlines.from_settings(settings)
        self.live: set[Call] = set()
        self.draining = False

    async def serve(self, ws, params, resuming: tuple[Any, SessionOpened] | None) -> None:
        """Accept and serve one call; `resuming`: the held call's actor (its line already taken here)."""
        if resuming is None:
            await ws.accept()
            if self._shedder.shedding:  # the box is saturated: the calls already talking come first
                await self._try_later(ws, "overloaded", "the service is overloaded: try again in a moment")
                return
            try:
                actor = await self._pool.acquire()  # a warm one, or the refill's within warm_wait_ms
            except AtCapacity as exc:
                await self._try_later(ws, "no_warm_session" if isinstance(exc, NoWarmSession) else "at_capacity", exc)
                return
            except Exception as exc:
                await self._refuse(ws, "start_timeout" if isinstance(exc, StageTimeout) else "server_error", exc)
                return
            opened, session_id = None, uuid.uuid4().hex
        else:
            actor, opened = resuming
            session_id = opened.state.session_id
        reason, handler, started = "server_error", None, resuming is not None
        try:  # from here on, whatever happens (cancellation included), the line is given back
            self._meters.active(self._pool.active)
            if resuming is not None:
                await ws.accept()
            else:
                try:
                    start = StartSession(session_id=session_id, caller_id=params.caller_id, locale=params.locale)
                    opened = await within(actor.start.remote(start), self._dl.actor_start_s, "session start")
                except StageTimeout as exc:
                    reason = "start_timeout"
                    await self._refuse(ws, reason, exc)
                    return
            started = True
            handler = self._make_call(ws, params, actor, opened, resuming is not None)
            self.live.add(handler)
            if self.draining:  # the drain began while this call was opening
                handler.drain(0.0)
            log.info("call %s started (caller %s, %d Hz)", session_id, params.caller_id, params.sample_rate)
            reason = await handler.run()
        except Exception:
            log.exception("call %s failed", session_id)
            try:
                await within(_end(ws, "server_error", CloseCode.SERVER_ERROR), 1.0, "close")
            except Exception:
                pass
        finally:
            await self._end_line(actor, session_id, reason, handler, started)

    async def _end_line(self, actor, session_id: str, reason: str, handler: Call | None, started: bool) -> None:
        saved = not started  # an actor that never took the call holds nothing of it
        try:
            if handler is not None:
                await handler.checkpoint_final(reason)  # a no-op when run() already tried it
                saved = handler.finalized
            elif started:
                final = actor.finalize.remote(reason, session_id=session_id)
                await within(final, self._dl.checkpoint_s, "final checkpoint")
                saved = True
        except BaseException as exc:
            log.error("call %s: final checkpoint failed: %r", session_id, exc)
        finally:
            if handler is not None:
                self.live.discard(handler)
                handler.session.close()  # no late record revives an actor after this
                actor = handler.session.actor  # the one holding the call now (a dead one was replaced)
            if handler is not None and handler.held:  # dropped or drained: the actor waits for a resume
                self._pool.detach(actor)
            else:
                # The line now; the actor reset for the next call (only once its call is saved) or killed
                self._pool.release(actor, reusable=saved)
            self._meters.active(self._pool.active)
            self._meters.ended(reason)
            log.info("call %s ended: %s", session_id, reason)

    def drain(self) -> None:
        """The replica is stopping: every call moves to another replica after its turn."""
        if self.draining:
            return
        self.draining = True
        log.warning("draining: %d live calls move to other replicas", len(self.live))
        for call in list(self.live):
            call.drain(self._settings.drain_turn_s)

    async def _try_later(self, ws, reason: str, why) -> None:
        """Refused for now (1013): every line busy, no warm session actor in time, or shedding load."""
        self._meters.rejected(reason)
        log.info("call refused (%s): %s", reason, why)
        await ws.send_text(event("session.ended", reason=reason, message=str(why)))
        await ws.close(code=CloseCode.AT_CAPACITY, reason=reason.replace("_", " "))

    async def _refuse(self, ws, reason: str, exc: Exception) -> None:
        """No session actor could be had in time: the caller is told, the call ends (1013: try again)."""
        self._meters.rejected(reason)
        log.warning("call refused (%s): %r", reason, exc)
        code = CloseCode.AT_CAPACITY if reason == "start_timeout" else CloseCode.SERVER_ERROR
        try:
            await within(_end(ws, reason, code), 1.0, "close")
        except Exception:
            pass


async def _end(ws, reason: str, code: int) -> None:
    await ws.send_text(event("session.ended", reason=reason))
    await ws.close(code=code, reason=reason)
