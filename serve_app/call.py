"""A caller over protocol v1, for the CLI (`python -m serve_app.call FILE.wav ...`, also
`voice-call`: serve_app/call_cli.py), the tests and the load tests.

It speaks at real-time pace like a microphone, records every event and all agent audio, and
measures voice-to-voice latency: last voiced caller sample sent to first agent audio byte
received (a clip's trailing silence is the caller waiting, so it counts). A socket that drops
mid-call is dialled back into the same call (call_resume.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import websockets

from common.audio import trailing_silence_s
from serve_app.call_resume import RESUME_FOR_S, Line

FRAME_MS = 20


@dataclass
class TurnReport:
    file: str
    speech_end: float  # the clip's last frame left, its trailing silence included
    last_voiced: float  # the clip's last voiced sample left: voice-to-voice starts here
    first_audio: float | None = None
    transcript: str = ""
    agent_text: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        return None if self.first_audio is None else (self.first_audio - self.last_voiced) * 1000


class CallClient:
    """A WebSocket caller speaking protocol v1; records every event and all agent audio, across
    resumes: a drop is dialled back for `resume_for` seconds (0: never) with the latest token."""

    def __init__(
        self,
        url: str,
        caller_id: str,
        sample_rate: int = 16000,
        locale: str = "en-US",
        resume_for: float = RESUME_FOR_S,
        **extra: str,
    ):
        query = {"caller_id": caller_id, "locale": locale, "sample_rate": sample_rate, **extra}
        self._line = Line(url, query, resume_for)
        self.url = self._line.url
        self.sample_rate = sample_rate
        self.events: list[dict] = []
        self.audio = bytearray()
        self.audio_frames: list[tuple[float, int]] = []  # (arrival time, bytes)
        self.timeline: list[tuple[str, object]] = []  # ("audio", bytes) and ("event", type), in arrival order
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.session: dict | None = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Condition()
        self._unheard: list[str] = []  # typed turns sent, not yet taken up by the agent (no "thinking" since)
        self._moved = False  # session.ended "draining": the server moves the call

    async def connect(self, timeout: float = 30) -> dict:
        await self._line.open(timeout)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda: self.session or self.closed, timeout)
        if not self.session:
            raise ConnectionError(f"call refused: {self.close_code} {self.close_reason} {self.events}")
        return self.session

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    @property
    def resumes(self) -> int:
        """How many times the call was taken up again on a new socket after a drop."""
        return sum(1 for e in self.of_type("session.started") if e.get("resumed"))

    async def _handle(self, msg: str | bytes) -> None:
        now = time.monotonic()
        if isinstance(msg, bytes):
            self.audio.extend(msg)
            self.audio_frames.append((now, len(msg)))
            self.timeline.append(("audio", len(msg)))
        else:
            ev = json.loads(msg)
            ev["_at"] = now
            self.events.append(ev)
            self.timeline.append(("event", ev["type"]))
            if ev["type"] == "session.started":
                self.session = ev
                self._line.token = ev.get("resume_token")
                if ev.get("resumed") and self._moved:  # typed turns that crossed the move: sent again
                    self._moved = False
                    for text in self._unheard:
                        await self._line.send_text(text)
            elif ev["type"] == "agent.state" and ev.get("state") == "thinking" and self._unheard:
                self._unheard.pop(0)
            elif ev["type"] == "session.ended":
                if ev.get("reason") == "draining" and ev.get("resume_token"):
                    self._line.token = ev["resume_token"]  # the server moves the call: dial it back
                    self._moved = True
                else:
                    self._line.ended = True
        async with self._changed:
            self._changed.notify_all()

    async def _read(self) -> None:
        try:
            await self._line.run(self._handle)
        finally:
            self.close_code = self._line.close_code
            self.close_reason = self._line.ws.close_reason or ""
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate, timeout: float = 30):
        async def _wait():
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(_wait(), timeout)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_event(self, kind: str, timeout: float = 30, after: int = 0, **match) -> dict:
        def find():
            for e in self.events[after:]:
                if e["type"] == kind and all(e.get(k) == v for k, v in match.items()):
                    return e
            return None

        return await self.wait_for(find, timeout)

    async def send_bytes(self, data: bytes) -> None:
        await self._line.ws.send(data)

    async def send_json(self, obj) -> None:
        text = json.dumps(obj)
        if obj.get("type") == "text":
            self._unheard.append(text)
        await self._line.send_text(text)

    async def send_raw_text(self, text: str) -> None:
        await self._line.send_text(text)

    async def stream(self, pcm16: bytes, realtime: bool = True) -> float:
        """Send PCM in 20 ms frames at real-time pace; returns when the last frame left."""
        frame = self.sample_rate * FRAME_MS // 1000 * 2
        start = time.monotonic()
        for i, off in enumerate(range(0, len(pcm16), frame)):
            if realtime:
                delay = start + i * FRAME_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._line.send_audio(pcm16[off : off + frame], self.closed)
        return time.monotonic()

    async def silence_until(self, predicate, timeout: float) -> bool:
        """Keep the microphone open (silence frames, real time) until predicate() holds."""
        frame = bytes(self.sample_rate * FRAME_MS // 1000 * 2)
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.closed or time.monotonic() > deadline:
                return predicate()
            try:
                await self._line.send_audio(frame, self.closed)
            except websockets.ConnectionClosed:  # the server hung up between the check and the send
                await asyncio.sleep(0.05)  # let the reader record the close
                return predicate()
            await asyncio.sleep(FRAME_MS / 1000)
        return True

    def agent_idle_since(self, index: int, said_at: float | None = None) -> bool:
        """The agent answered a turn sent after event `index` and went back to listening.

        `said_at` (when the caller's last word left): only a turn taken up after it counts. A
        caller who pauses mid-sentence may have the first half answered, and barged in on,
        while still speaking; that reply is not the answer to what they said."""
        states = [(e["state"], e["_at"]) for e in self.events[index:] if e["type"] == "agent.state"]
        thought = any(s == "thinking" and (said_at is None or at >= said_at) for s, at in states)
        return thought and states[-1][0] == "listening"

    async def hangup(self, timeout: float = 15) -> None:
        if not self.closed:
            await self._line.live.wait()  # a drop being dialled back: hang up the call, not a dead socket
            self._line.leave()
            try:
                await self.send_json({"type": "hangup"})
            except websockets.ConnectionClosed:
                pass  # gone already: nothing more to hang up
            await self.wait_for(lambda: self.closed, timeout)

    async def close(self) -> None:
        """Our own close, no hang-up (the server holds the call for a resume): not dialled back."""
        await self._line.close(self._reader)


async def speak_turn(client: CallClient, pcm16: bytes, label: str = "", timeout: float = 30) -> TurnReport:
    """Speak one utterance, then keep sending silence until the agent has answered it."""
    mark = len(client.events)
    frames_before = len(client.audio_frames)
    speech_end = await client.stream(pcm16)
    report = TurnReport(label, speech_end, speech_end - trailing_silence_s(pcm16, client.sample_rate))
    await client.silence_until(lambda: client.agent_idle_since(mark, report.last_voiced) or client.closed, timeout)
    for at, _n in client.audio_frames[frames_before:]:
        if at >= report.last_voiced:
            report.first_audio = at
            break
    for e in client.events[mark:]:
        if e["type"] == "transcript" and e.get("final"):
            report.transcript = e["text"]
        elif e["type"] == "agent.text":
            report.agent_text.append(e["text"])
        elif e["type"] == "turn.metrics":
            report.metrics = {k: v for k, v in e.items() if k.endswith("_ms")}
    return report


def main(argv: list[str] | None = None) -> int:
    from serve_app.call_cli import main as cli  # the terminal's side, apart from the client

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
