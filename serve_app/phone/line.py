"""A phone call's media stream, seen by the Call as the WebSocket of `/ws/call`: the same Call, session
actor, dialogue, policy, tools, metrics and drain run a phone call unchanged.

In: `media` is decoded from μ-law to PCM16 at 8 kHz (the listener resamples for VAD and ASR); keypad
digits collect until `#`, then go in as one typed turn (a PIN typed on the keypad reaches the dialogue as
a typed PIN does, masked wherever it is shown or kept); `stop` is a hang-up. Out: agent audio (PCM16 at
8 kHz, paced by the Call) goes as μ-law `media`; `audio.clear` becomes `clear`; every other event ends the
run of audio before it with a `mark`. Twilio returns a mark once the audio before it has played, so the
marks bound what the caller heard: `heard_bounds` feeds the barge-in's cut (serve_app/conversation/pacer.py).

A bad message (malformed JSON, an unknown event, bad base64, media before `start`) is one log line and is
skipped; more than `max_bad` of them end the call as a hang-up. Nothing a carrier sends raises here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from common.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from models.protocol import CloseCode, ConnectParams
from serve_app.phone import messages as m
from serve_app.phone.webhook import caller_id_of, stream_token

log = logging.getLogger(__name__)

RATE = 8000
START_WAIT_S = 10.0  # Twilio sends `connected` and `start` as soon as the socket opens
MAX_DIGITS = 32
MAX_MEDIA_BYTES = RATE  # one second of μ-law in one message (Twilio sends 20 ms)
HANGUP = {"type": "websocket.receive", "text": json.dumps({"type": "hangup"})}
GONE = {"type": "websocket.disconnect", "code": CloseCode.NORMAL}


class PhoneLine:
    def __init__(self, ws, secret: str = "", max_bad: int = 20):
        self._ws = ws
        self._secret = secret  # the Twilio auth token: the stream must carry the webhook's token
        self._max_bad = max_bad
        self.stream_sid: str | None = None
        self.call_sid = ""
        self.params: ConnectParams | None = None
        self.custom: dict[str, str] = {}  # the stream's parameters (serve_app/phone/handover.py reads `resume`)
        self.bad_messages = 0
        self.hung_up = False  # `stop` (or the socket's end) was handed to the call as a hang-up
        self._gone = False
        self._closed = False
        self._digits = ""
        self.keypad_turns = 0
        self.sent_bytes = 0  # agent PCM16 sent as media: the pacer's own count
        self._mark_at = 0  # sent_bytes at the last mark
        self._marks = 0
        self._pending: dict[str, int] = {}  # marks sent, not yet back: name -> the byte they follow
        self._dropped: set[str] = set()  # marks a `clear` discarded: their return says nothing heard
        self.heard_bytes = 0  # the caller has heard the agent's audio up to here (the last mark back)
        self.marks_heard: list[str] = []
        self._turn: int | None = None
        self._sentence = -1

    # --- the stream's opening ------------------------------------------------

    async def open(self) -> ConnectParams | None:
        """Accept, read `connected` and `start`; the call's parameters, or None (refused and closed)."""
        await self._ws.accept()
        try:
            start = await asyncio.wait_for(self._until_start(), START_WAIT_S)
        except TimeoutError:
            log.info("phone stream refused: no start within %g s", START_WAIT_S)
            start = None
        except m.BadMessage as exc:
            log.info("phone stream refused: %s", exc)
            start = None
        if start is None:
            await self.close(CloseCode.POLICY, "no valid start message")
            return None
        caller, resume = start.custom.get("caller", ""), start.custom.get("resume", "")
        if self._secret and not hmac.compare_digest(
            start.custom.get("token", ""), stream_token(self._secret, start.call_sid, caller, resume)
        ):
            log.info("phone stream refused: call %s was not announced by a signed webhook", start.call_sid)
            await self.close(CloseCode.POLICY, "stream not announced by the webhook")
            return None
        self.stream_sid, self.call_sid, self.custom = start.stream_sid, start.call_sid, start.custom
        self.params = ConnectParams(
            caller_id=caller_id_of(caller, start.call_sid), sample_rate=RATE, output_sample_rate=RATE
        )
        return self.params

    async def _until_start(self) -> m.Start | None:
        while True:
            msg = await self._ws.receive()
            if msg["type"] == "websocket.disconnect":
                self._gone = True
                return None
            try:
                kind, body = m.parse(self._text(msg))
            except m.BadMessage as exc:
                if self._bad(exc):
                    return None
                continue
            if kind == "start":
                return m.start_of(body)  # a bad start refuses the stream
            if kind != "connected":
                log.info("phone stream: %s before start, ignored", kind)

    # --- the WebSocket the Call reads ------------------------------------------

    async def accept(self) -> None:
        """Accepted in open(), before the call's parameters were known."""

    async def receive(self) -> dict:
        while True:
            if self._gone:
                return GONE
            msg = await self._ws.receive()
            if msg["type"] == "websocket.disconnect":
                self._gone = True
                if self.hung_up:
                    return GONE
                log.info("phone call %s: the stream closed without stop; the call is over", self.call_sid)
                self.hung_up = True
                return HANGUP  # a carrier never dials a stream back (a drain hands over: handover.py)
            try:
                out = self._on(*m.parse(self._text(msg)))
            except m.BadMessage as exc:
                if self._bad(exc):
                    self.hung_up = True
                    return HANGUP
                continue
            if out is not None:
                return out

    def _on(self, kind: str, body: dict) -> dict | None:
        if kind == "media":
            ulaw = m.media_payload(body)
            if len(ulaw) > MAX_MEDIA_BYTES:
                raise m.BadMessage(f"media of {len(ulaw)} bytes (the limit is {MAX_MEDIA_BYTES})")
            return {"type": "websocket.receive", "bytes": ulaw_to_pcm16(ulaw)} if ulaw else None
        if kind == "dtmf":
            return self._key(m.dtmf_digit(body))
        if kind == "mark":
            self._mark_back(m.mark_name(body))
            return None
        if kind == "stop":
            log.info("phone call %s: stop (the caller hung up)", self.call_sid)
            self.hung_up = True
            return HANGUP
        log.info("phone call %s: a second %s, ignored", self.call_sid, kind)
        return None

    def _key(self, digit: str) -> dict | None:
        """Digits until `#` make one typed turn; `*` starts the entry over. Never logged: it may be a PIN."""
        if digit == "#":
            digits, self._digits = self._digits, ""
            if not digits:
                return None
            self.keypad_turns += 1
            log.info("phone call %s: a keypad entry of %d digits, as a typed turn", self.call_sid, len(digits))
            return {"type": "websocket.receive", "text": json.dumps({"type": "text", "text": digits})}
        if digit == "*":
            self._digits = ""
        elif len(self._digits) < MAX_DIGITS:
            self._digits += digit
        return None

    def _bad(self, exc: m.BadMessage) -> bool:
        """Log a bad message; True when there were too many and the call ends."""
        self.bad_messages += 1
        if self.bad_messages > self._max_bad:
            log.warning("phone call %s: %d bad messages; ending the call", self.call_sid, self.bad_messages)
            return True
        log.info("phone call %s: bad message skipped: %s", self.call_sid, exc)
        return False

    @staticmethod
    def _text(msg: dict) -> str:
        if msg.get("text") is None:
            raise m.BadMessage("a binary frame (the protocol is JSON text)")
        return msg["text"]

    async def send_text(self, text: str) -> None:
        """A platform event: `audio.clear` becomes `clear`; any other ends the audio before it with a mark."""
        try:
            event = json.loads(text)
        except ValueError:
            event = {}
        kind = event.get("type")
        await self._event_out(kind, event)
        if kind == "audio.clear":
            self._dropped.update(self._pending)  # Twilio returns them at once: nothing more was heard
            self._pending.clear()
            self._mark_at = self.sent_bytes
            await self._send(m.clear(self.stream_sid))
            return
        await self._mark_run()
        if kind == "agent.text":
            turn = event.get("turn_id")
            self._sentence = self._sentence + 1 if turn == self._turn and self._sentence >= 0 else 0
            self._turn = turn

    async def _event_out(self, kind: str | None, event: dict) -> None:
        """A platform event on its way to the carrier, parsed once (a subclass acts on some)."""

    async def send_bytes(self, pcm: bytes) -> None:
        await self._send(m.media(self.stream_sid, pcm16_to_ulaw(pcm)))
        self.sent_bytes += len(pcm)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._ws.close(code=code, reason=reason[:120])
        except Exception as exc:  # already gone
            log.debug("phone stream close: %r", exc)

    async def _send(self, text: str) -> None:
        if self.stream_sid is None or self._gone or self._closed:
            raise ConnectionError("the phone stream is closed")
        await self._ws.send_text(text)

    # --- what the caller heard -------------------------------------------------

    async def _mark_run(self) -> None:
        if self.sent_bytes == self._mark_at or self._gone or self._closed:
            return
        self._marks += 1
        name = f"{self._marks}:turn-{self._turn}:sentence-{self._sentence}"
        self._pending[name], self._mark_at = self.sent_bytes, self.sent_bytes
        await self._send(m.mark(self.stream_sid, name))

    def _mark_back(self, name: str) -> None:
        if name in self._pending:  # marks come back in order: any before it have played too
            for earlier in list(self._pending):
                self.heard_bytes = max(self.heard_bytes, self._pending.pop(earlier))
                if earlier == name:
                    break
            self.marks_heard.append(name)
        elif name in self._dropped:
            self._dropped.discard(name)
        else:
            log.info("phone call %s: a mark we never sent, ignored", self.call_sid)

    def heard_bounds(self) -> tuple[int, int]:
        """(at least, at most) bytes of agent audio the caller has heard: the last mark back, the first
        still out (all that was sent when none is)."""
        return self.heard_bytes, min(self._pending.values(), default=self.sent_bytes)
