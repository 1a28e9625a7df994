"""A phone call across a Gateway drain: the carrier never dials a stream back, so the platform hands the
held call over through Twilio's next TwiML verb.

The webhook's TwiML follows `<Connect><Stream>` with a `<Redirect>` to the webhook (marked `after=stream`);
Twilio goes on to it only when our side closed the stream (a caller's hang-up ends the call at Twilio).
When a drain moves a phone call, the line sees the `session.ended` (`draining`, with the resume token) the
Call sends before it closes the stream, and records the token under the call's CallSid in Ray's KV store
(shared by every Gateway replica), for the resume window. The signed redirect finds that record and answers
a new stream marked `resume`, its stream token bound to the mark; the stream takes the record (single use)
and resumes the held call as `resume=TOKEN` does on `/ws/call`. No record (the platform ended the call for
any other reason, or the record was taken): the redirect answers `<Hangup/>`. The resume token itself never
leaves the platform, so a replayed redirect or a forged stream learns nothing that takes a call over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Protocol

from models.protocol import CloseCode
from serve_app.phone.line import PhoneLine
from serve_app.session_pool import AtCapacity

log = logging.getLogger(__name__)

NAMESPACE = "voice-phone-handover"


class Board(Protocol):
    """Where hand-overs wait: shared by the Gateway replicas (Ray's KV store; a dict in a unit test)."""

    def put(self, key: str, value: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> bool:
        """True for the one caller that deleted it: the single use of a record."""

    def keys(self) -> list[str]: ...


class RayBoard:
    def put(self, key: str, value: bytes) -> None:
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=NAMESPACE)

    def get(self, key: str) -> bytes | None:
        from ray.experimental import internal_kv

        return internal_kv._internal_kv_get(key, namespace=NAMESPACE)

    def delete(self, key: str) -> bool:
        from ray.experimental import internal_kv

        return internal_kv._internal_kv_del(key, namespace=NAMESPACE) == 1

    def keys(self) -> list[str]:
        from ray.experimental import internal_kv

        return [k.decode() for k in internal_kv._internal_kv_list("", namespace=NAMESPACE)]


class MemoryBoard(dict):
    """One process's board (unit tests)."""

    def put(self, key: str, value: bytes) -> None:
        self[key] = value

    def delete(self, key: str) -> bool:
        return self.pop(key, None) is not None

    def keys(self) -> list[str]:
        return list(super().keys())


class Handover:
    def __init__(self, board: Board, ttl_s: float, clock=time.time):
        self._board, self._ttl_s, self._clock = board, ttl_s, clock
        self._swept_at = float("-inf")

    async def record(self, call_sid: str, caller_id: str, resume_token: str) -> None:
        """The drained call waits under its CallSid (expired records, of calls that hung up before the redirect,
        are swept on the way: at most once a window, a drain records every call of the replica at once)."""
        until = self._clock() + self._ttl_s
        value = json.dumps({"caller_id": caller_id, "resume": resume_token, "until": until}).encode()
        await asyncio.to_thread(self._sweep_and_put, call_sid, value)
        log.info("phone call %s: held for the carrier's redirect", call_sid)

    def _sweep_and_put(self, call_sid: str, value: bytes) -> None:
        if self._clock() - self._swept_at > self._ttl_s:
            self._swept_at = self._clock()
            for key in self._board.keys():
                if self._read(self._board.get(key)) is None:
                    self._board.delete(key)
        self._board.put(call_sid, value)

    async def waiting(self, call_sid: str, caller_id: str) -> bool:
        """A hand-over waits for this call (the redirect's webhook: it looks, the stream takes)."""
        found = self._read(await asyncio.to_thread(self._board.get, call_sid))
        return found is not None and found["caller_id"] == caller_id

    async def take(self, call_sid: str, caller_id: str) -> str | None:
        """The held call's resume token, once: None when none waits, it expired, or another took it."""
        raw = await asyncio.to_thread(self._board.get, call_sid)
        found = self._read(raw)
        if found is None or found["caller_id"] != caller_id:
            return None
        return found["resume"] if await asyncio.to_thread(self._board.delete, call_sid) else None

    def _read(self, raw: bytes | None) -> dict | None:
        if not raw:
            return None
        try:
            found = json.loads(raw)
        except ValueError:
            return None
        return found if isinstance(found, dict) and found.get("until", 0) > self._clock() else None


class MovingLine(PhoneLine):
    """A phone line that survives a drain: a drained call is recorded for the redirect before its stream
    closes, and a stream marked `resume` takes the record up."""

    def __init__(self, ws, handover: Handover, secret: str = "", max_bad: int = 20):
        super().__init__(ws, secret, max_bad)
        self._handover = handover

    async def open(self):
        params = await super().open()
        if params is None or self.custom.get("resume") != "1":
            return params
        token = await self._handover.take(self.call_sid, params.caller_id)
        if token is None:
            log.info("phone call %s: a resume stream with no call held for it, refused", self.call_sid)
            await self.close(CloseCode.POLICY, "no call held for this stream")
            return None
        self.params = params.model_copy(update={"resume": token})
        return self.params

    async def take_over(self, resumption):
        """The held call (actor, opened) for this stream, or None (the stream closed: the redirect hangs up;
        on a full replica the hand-over is put back and the redirect tries again)."""
        try:
            resuming = await resumption.take(self.params)
        except AtCapacity:
            await self._handover.record(self.call_sid, self.params.caller_id, self.params.resume)
            await self.close(CloseCode.AT_CAPACITY, "at capacity")
            return None
        if resuming is None:
            await self.close(CloseCode.POLICY, "the held call could not be resumed")
        return resuming

    async def _event_out(self, kind: str | None, event: dict) -> None:
        if kind == "session.ended" and event.get("reason") == "draining" and event.get("resume_token"):
            if self.params is None:
                return
            try:  # before the close: Twilio's redirect follows it at once
                await self._handover.record(self.call_sid, self.params.caller_id, event["resume_token"])
            except Exception as exc:
                log.error("phone call %s: hand-over not recorded (the redirect hangs up): %r", self.call_sid, exc)
