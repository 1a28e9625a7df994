"""A stand-in for Twilio in platform tests: it rings the webhook (signed as Twilio signs it), reads the
TwiML, opens the media stream and speaks Media Streams message for message: `connected`, `start`, μ-law
`media` every 20 ms at real time, `dtmf`, `stop`. Like Twilio it plays the agent's audio at real time and
returns each `mark` once the audio before it has played, or at once when a `clear` drops that audio. Given the
webhook's TwiML (`follow`), it does what Twilio does when the platform closes the stream: it POSTs the next
verb's `<Redirect>` (signed) and opens the stream the answer names, or ends the call at `<Hangup/>`."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import websockets
from twilio.request_validator import RequestValidator

from common.audio import resample
from common.mulaw import pcm16_to_ulaw, ulaw_to_pcm16

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz


def ring(http: str, public_url: str, secret: str | None, form: dict, signature: str | None = None) -> tuple[int, str]:
    """POST the webhook as Twilio does; (status, body)."""
    return post(http, public_url + "/twilio/voice", secret, form, signature)


def post(http: str, url: str, secret: str | None, form: dict, signature: str | None = None) -> tuple[int, str]:
    """POST a TwiML URL (the public one Twilio signs) to the platform at `http`; (status, body)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is None and secret:
        signature = RequestValidator(secret).compute_signature(url, form)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    body = urllib.parse.urlencode(form).encode()
    parts = urllib.parse.urlsplit(url)
    target = f"{http}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    request = urllib.request.Request(target, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stream_of(twiml: str) -> tuple[str, dict[str, str]]:
    """The <Connect><Stream> url and its <Parameter>s."""
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    return stream.get("url"), {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


def redirect_of(twiml: str) -> str | None:
    """The URL of the <Redirect> after the stream (POST), if any."""
    verb = ET.fromstring(twiml).find("./Redirect")
    return None if verb is None else verb.text


class Follow:
    """Twilio's side of the TwiML: where the call goes once the platform closes its stream."""

    MAX_IN_A_ROW = 5  # redirects without a stream that opened: the call fails (a loop)

    def __init__(self, http: str, secret: str | None, form: dict, twiml: str):
        self.http, self.secret, self.form, self.twiml = http, secret, form, twiml
        self.answers: list[str] = []  # each redirect's TwiML

    def next_stream(self) -> dict[str, str] | None:
        """POST the <Redirect>: the next stream's parameters, or None (<Hangup/>, or no redirect)."""
        url = redirect_of(self.twiml)
        if url is None:
            return None
        status, self.twiml = post(self.http, url, self.secret, {**self.form, "CallStatus": "in-progress"})
        assert status == 200, (status, self.twiml)
        self.answers.append(self.twiml)
        return stream_of(self.twiml)[1] if ET.fromstring(self.twiml).find("./Connect/Stream") is not None else None


class TwilioCaller:
    def __init__(self, ws_url: str, call_sid: str, custom: dict[str, str], follow: Follow | None = None):
        self.ws_url, self.call_sid, self.custom, self.follow = ws_url, call_sid, custom, follow
        self.stream_sid = "MZ" + call_sid[2:]
        self.streams: list[float] = []  # when each stream started
        self.stopped = False  # our `stop`: the caller hung up, Twilio follows no verb
        self.ws = None
        self.agent_audio = bytearray()  # μ-law decoded, 8 kHz
        self.media_at: list[tuple[float, int]] = []  # (arrival, bytes of PCM16 so far)
        self.marks_sent: list[str] = []  # marks returned to the platform
        self.clears: list[float] = []
        self.closed_at: float | None = None
        self._seq = 0
        self._chunk = 0
        self._playing_until = 0.0
        self._owed: dict[str, asyncio.TimerHandle] = {}
        self._reader: asyncio.Task | None = None

    async def connect(self) -> None:
        await self._open()
        self._reader = asyncio.create_task(self._read())

    async def _open(self) -> None:
        """A stream: `connected` and `start` go first (the caller's audio waits for them, as on Twilio)."""
        ws = await websockets.connect(self.ws_url, open_timeout=30, max_size=None)
        self.streams.append(time.monotonic())
        await ws.send(self._frame({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": self.custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await ws.send(self._frame({"event": "start", "start": start}))
        self.ws = ws

    def _frame(self, msg: dict) -> str:
        self._seq += 1
        return json.dumps({**msg, "sequenceNumber": str(self._seq), "streamSid": self.stream_sid})

    async def _send(self, msg: dict) -> None:
        try:
            await self.ws.send(self._frame(msg))
        except websockets.ConnectionClosed:
            if self.follow is None or self.stopped:
                raise  # with no next verb the call is over; while it is redirected the caller's audio is lost

    async def _next(self) -> bool:
        """The platform closed the stream: Twilio's next verb. True once a new stream is open."""
        for _ in range(Follow.MAX_IN_A_ROW):
            custom = await asyncio.to_thread(self.follow.next_stream)
            if custom is None:
                return False  # <Hangup/>: the call is over
            for handle in self._owed.values():  # the old stream's marks never come back
                handle.cancel()
            self._owed.clear()
            self.custom, self._seq, self._playing_until = custom, 0, 0.0
            self.stream_sid = f"MZ{len(self.streams)}{self.call_sid[3:]}"
            try:
                await self._open()
                return True
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                continue  # a refused stream ends <Connect> too: the redirect again
        raise AssertionError(f"{Follow.MAX_IN_A_ROW} redirects in a row and no stream opened")

    async def _send_mark(self, name: str) -> None:
        """Return a mark; a platform that hung up first (the call ended while audio played) is not an error."""
        try:
            await self._send({"event": "mark", "mark": {"name": name}})
        except websockets.ConnectionClosed:
            pass

    async def _read(self) -> None:
        try:
            while True:
                await self._read_stream()
                if self.stopped or self.follow is None or not await self._next():
                    return
        finally:
            self.closed_at = time.monotonic()

    async def _read_stream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in self.ws:
                msg, now = json.loads(raw), time.monotonic()
                if msg["event"] == "media":
                    pcm = ulaw_to_pcm16(base64.b64decode(msg["media"]["payload"]))
                    self.agent_audio += pcm
                    self.media_at.append((now, len(self.agent_audio)))
                    self._playing_until = max(self._playing_until, now) + len(pcm) / 2 / 8000
                elif msg["event"] == "mark":
                    name = msg["mark"]["name"]
                    self._owed[name] = loop.call_at(
                        loop.time() + max(0.0, self._playing_until - now), self._return_mark, name
                    )
                elif msg["event"] == "clear":
                    self.clears.append(now)
                    self._playing_until = now
                    for name, handle in list(self._owed.items()):
                        handle.cancel()
                        self._return_mark(name)
        except websockets.ConnectionClosed:
            pass

    def _return_mark(self, name: str) -> None:
        if self._owed.pop(name, None) is not None and self.closed_at is None:
            self.marks_sent.append(name)
            asyncio.get_running_loop().create_task(self._send_mark(name))

    async def play(self, pcm16: bytes, rate: int = 16000) -> float:
        """Stream audio as the phone network does (8 kHz μ-law, 20 ms a message, real time); its end time."""
        ulaw = pcm16_to_ulaw(resample(pcm16, rate, 8000) if rate != 8000 else pcm16)
        t0 = time.monotonic()
        for i in range(0, len(ulaw), FRAME_BYTES):
            self._chunk += 1
            payload = base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode()
            ts = str(self._chunk * 20)
            await self._send(
                {
                    "event": "media",
                    "media": {"track": "inbound", "chunk": str(self._chunk), "timestamp": ts, "payload": payload},
                }
            )
            delay = t0 + (i // FRAME_BYTES + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return time.monotonic()

    async def silence_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the platform did not answer in time")
            await self.play(bytes(1600), 8000)  # 100 ms of silence, the line's hiss

    def quiet_for(self, seconds: float) -> bool:
        """Agent audio arrived, and none for `seconds` (its reply has been sent)."""
        return bool(self.media_at) and time.monotonic() - self.media_at[-1][0] > seconds

    def first_audio_after(self, t: float) -> float | None:
        return next((at for at, _ in self.media_at if at >= t), None)

    async def dtmf(self, keys: str) -> None:
        for key in keys:
            await self._send({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": key}})
            await self.play(bytes(800), 8000)  # a key press lasts about 100 ms

    async def stop(self) -> None:
        self.stopped = True
        await self._send({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
        await asyncio.wait_for(self._reader, 10)  # the platform closes the stream
