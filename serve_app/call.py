"""Caller CLI: `python -m serve_app.call FILE.wav [FILE.wav ...]` (also `voice-call`).

Streams each file into one call at real-time pace, silence between, like a microphone
would; saves the agent's audio; prints transcripts, agent text and, per turn, the
voice-to-voice latency: last caller speech sample sent to first agent audio byte received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import websockets

FRAME_MS = 20


@dataclass
class TurnReport:
    file: str
    speech_end: float
    first_audio: float | None = None
    transcript: str = ""
    agent_text: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        return None if self.first_audio is None else (self.first_audio - self.speech_end) * 1000


class CallClient:
    """A WebSocket caller speaking protocol v1; records every event and all agent audio."""

    def __init__(self, url: str, caller_id: str, sample_rate: int = 16000, locale: str = "en-US", **extra: str):
        query = {"caller_id": caller_id, "locale": locale, "sample_rate": sample_rate, **extra}
        self.url = f"{url}?{urlencode(query)}"
        self.sample_rate = sample_rate
        self.events: list[dict] = []
        self.audio = bytearray()
        self.audio_frames: list[tuple[float, int]] = []  # (arrival time, bytes)
        self.timeline: list[tuple[str, object]] = []  # ("audio", bytes) and ("event", type), in arrival order
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.session: dict | None = None
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    async def connect(self, timeout: float = 30) -> dict:
        self._ws = await websockets.connect(self.url, max_size=2**22, open_timeout=timeout)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda: self.session or self.closed, timeout)
        if not self.session:
            raise ConnectionError(f"call refused: {self.close_code} {self.close_reason} {self.events}")
        return self.session

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
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
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code if self._ws.close_code is not None else 1006
            self.close_reason = self._ws.close_reason or ""
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
        await self._ws.send(data)

    async def send_json(self, obj) -> None:
        await self._ws.send(json.dumps(obj))

    async def send_raw_text(self, text: str) -> None:
        await self._ws.send(text)

    async def stream(self, pcm16: bytes, realtime: bool = True) -> float:
        """Send PCM in 20 ms frames at real-time pace; returns when the last frame left."""
        frame = self.sample_rate * FRAME_MS // 1000 * 2
        start = time.monotonic()
        for i, off in enumerate(range(0, len(pcm16), frame)):
            if realtime:
                delay = start + i * FRAME_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._ws.send(pcm16[off : off + frame])
        return time.monotonic()

    async def silence_until(self, predicate, timeout: float) -> bool:
        """Keep the microphone open (silence frames, real time) until predicate() holds."""
        frame = bytes(self.sample_rate * FRAME_MS // 1000 * 2)
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.closed or time.monotonic() > deadline:
                return predicate()
            try:
                await self._ws.send(frame)
            except websockets.ConnectionClosed:  # the server hung up between the check and the send
                await asyncio.sleep(0.05)  # let the reader record the close
                return predicate()
            await asyncio.sleep(FRAME_MS / 1000)
        return True

    def agent_idle_since(self, index: int) -> bool:
        """The agent answered a turn sent after event `index` and went back to listening."""
        states = [e["state"] for e in self.events[index:] if e["type"] == "agent.state"]
        return "thinking" in states and states[-1] == "listening"

    async def hangup(self, timeout: float = 15) -> None:
        if not self.closed:
            await self.send_json({"type": "hangup"})
            await self.wait_for(lambda: self.closed, timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def speak_turn(client: CallClient, pcm16: bytes, label: str = "", timeout: float = 30) -> TurnReport:
    """Speak one utterance, then keep sending silence until the agent has answered it."""
    mark = len(client.events)
    frames_before = len(client.audio_frames)
    speech_end = await client.stream(pcm16)
    await client.silence_until(lambda: client.agent_idle_since(mark) or client.closed, timeout)
    report = TurnReport(label, speech_end)
    for at, _n in client.audio_frames[frames_before:]:
        if at >= speech_end:
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


async def run_cli(args) -> int:
    from common.audio import read_wav, resample, write_wav
    from models.protocol import SUPPORTED_SAMPLE_RATES

    clips = []
    for path in args.files:
        pcm, rate = read_wav(path)
        if rate not in SUPPORTED_SAMPLE_RATES:
            pcm, rate = resample(pcm, rate, 16000), 16000
        clips.append((path, pcm, rate))
    rate = clips[0][2]
    clips = [(p, resample(pcm, r, rate), rate) for p, pcm, r in clips]
    client = CallClient(args.url, args.caller_id, rate, args.locale)
    try:
        session = await client.connect()
    except (TimeoutError, OSError, ConnectionError, websockets.InvalidStatus) as exc:
        print(f"could not start a call at {args.url}: {exc}", file=sys.stderr)
        return 2
    print(
        f"session {session['session_id']} "
        f"(in {session['input_sample_rate']} Hz, out {session['output_sample_rate']} Hz)"
    )
    await client.silence_until(
        lambda: any(e["type"] == "agent.state" and e["state"] == "listening" for e in client.events), 30
    )
    print("agent: " + " ".join(e["text"] for e in client.of_type("agent.text")))
    reports = []
    for path, pcm, _ in clips:
        await client.silence_until(lambda: False, args.gap) if args.gap else None
        report = await speak_turn(client, pcm, Path(path).name, args.timeout)
        reports.append(report)
        lat = f"{report.latency_ms:.0f} ms" if report.latency_ms is not None else "no audio"
        print(f"you ({report.file}): {report.transcript!r}")
        print(f"agent: {' '.join(report.agent_text)}")
        print(f"  voice-to-voice {lat}; server stages {report.metrics}")
        if client.closed:
            break
    await client.hangup()
    await client.close()
    ended = client.of_type("session.ended")
    print(f"call ended: {ended[-1]['reason'] if ended else 'no session.ended'} (close {client.close_code})")
    out = Path(args.out)
    write_wav(out, bytes(client.audio), client.session["output_sample_rate"])
    print(f"agent audio ({len(client.audio) / 2 / client.session['output_sample_rate']:.1f} s) saved to {out}")
    lats = [r.latency_ms for r in reports if r.latency_ms is not None]
    if lats:
        print(f"voice-to-voice per turn (ms): {', '.join(f'{x:.0f}' for x in lats)}")
    for e in client.of_type("error"):
        print(f"server error event: {e['code']}: {e['message']}", file=sys.stderr)
    return 0 if len(lats) == len(clips) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voice-call", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="16-bit PCM WAV files, one caller turn each")
    p.add_argument("--url", default="ws://127.0.0.1:8000/ws/call")
    p.add_argument("--caller-id", default="cli-caller")
    p.add_argument("--locale", default="en-US")
    p.add_argument("--out", default="agent_audio.wav", help="where to save the agent's audio")
    p.add_argument("--gap", type=float, default=0.5, help="seconds of silence before each turn")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for each answer")
    args = p.parse_args(argv)
    return asyncio.run(run_cli(args))


if __name__ == "__main__":
    sys.exit(main())
