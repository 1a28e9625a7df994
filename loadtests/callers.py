"""One simulated caller of the capacity sweep: connect, hear the greeting, take a few turns, hang up.

Many of these run in one asyncio loop (loadtests/sweep.py), each over its own WebSocket with
`serve_app.call.CallClient`, which never dials a drop back here: a drop is what we count.
Turns mix spoken questions (streamed at real time in 20 ms frames, then silence frames until the
agent has answered), typed ones (the protocol's `text` message) and barge-ins (a second question
said over the reply to the first). Voice-to-voice starts at the last voiced sample: the time the
utterance began to leave plus its length less its trailing silence, the definition
loadtests/latency.py uses; a typed turn's clock starts when its message is sent.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import websockets

from common.audio import trailing_silence_s
from loadtests.utterances import RATE, Utterance
from serve_app.call import CallClient

KINDS = ("voice", "typed", "voice", "barge")  # a call's turns cycle through these, from its own offset
REFUSED_CLOSE = 1013  # at_capacity, start_timeout
REFUSED_HTTP = (429, 503)
SERVER_FIGURES = ("eos_to_transcript_ms", "eos_to_first_audio_ms", "tts_first_audio_ms", "preempted", "interrupted")


@dataclass
class Options:
    turns: int = 4
    connect_timeout: float = 30.0
    greeting_timeout: float = 30.0
    reply_timeout: float = 45.0  # the whole reply heard and the agent listening again
    barge_after_s: float = 0.6  # into the reply before the caller talks over it


@dataclass
class TurnResult:
    kind: str  # voice, typed, barge (the question said over a reply)
    text: str
    ms: float | None  # voice and barge: voice-to-voice; typed: message sent to first agent audio
    at: float  # when the turn ended (the clock of the call)
    cut: bool = False  # barge: the reply talked over was cleared (audio.clear)
    server: dict = field(default_factory=dict)  # the turn's turn.metrics: the server's stages, `preempted`


@dataclass
class CallResult:
    caller_id: str
    started: float
    setup_ms: float | None = None  # connect start to the first greeting audio byte
    live_at: float | None = None  # greeting heard: the call takes turns from here
    ended_at: float | None = None
    turns: list[TurnResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    close_code: int | None = None
    end_reason: str | None = None  # session.ended's reason
    refused: bool = False
    send_lag_ms: list[float] = field(default_factory=list)  # the generator's own lateness streaming audio

    @property
    def dropped(self) -> bool:
        """Ended otherwise than by a normal close (refusals included)."""
        return self.refused or self.close_code not in (None, 1000)


def plan_turns(index: int, turns: int) -> list[str]:
    return [KINDS[(index + t) % len(KINDS)] for t in range(turns)]


def last_voiced_at(sent_start: float, pcm: bytes, rate: int = RATE) -> float:
    """When the utterance's last voiced sample left, for audio sent from `sent_start` at real time."""
    return sent_start + len(pcm) / 2 / rate - trailing_silence_s(pcm, rate)


def reply_first_audio(events: list[dict], frames: list[tuple[float, int]], mark: int, since: float) -> float | None:
    """Arrival of the first audio byte of the reply to a turn that ended at `since`: the audio
    after the first `agent.text` at or after `since` of a turn newer than any before event `mark`
    (so the tail of an earlier reply, still playing, is never taken for the answer)."""
    prev = max(
        (e["turn_id"] for e in events[:mark] if e["type"] == "agent.text" and e["turn_id"] is not None), default=-1
    )
    start = next(  # turn_id None: a line the session could not record in time, heard all the same
        (
            e["_at"]
            for e in events[mark:]
            if e["type"] == "agent.text" and (e["turn_id"] is None or e["turn_id"] > prev) and e["_at"] >= since
        ),
        None,
    )
    if start is None:
        return None
    return next((at for at, _n in frames if at >= start), None)


async def run_call(url: str, caller_id: str, kinds: list[str], spoken, typed, rng: random.Random, opts: Options):
    """One call from dial to hang-up; every outcome lands in the returned CallResult."""
    result = CallResult(caller_id, time.monotonic())
    client = CallClient(url, caller_id, resume_for=0)
    try:
        await _connect(client, result, opts)
        if result.live_at is not None:
            for kind in kinds:
                if client.closed:
                    break
                await client.silence_until(lambda: False, rng.uniform(0.5, 1.5))  # the caller thinks
                if kind == "typed":
                    await _typed(client, result, rng.choice(typed), opts)
                else:
                    await _spoken(client, result, rng.choice(spoken), opts, "voice", hold=kind == "barge")
                    if kind == "barge" and not client.closed:
                        await _spoken(client, result, rng.choice(spoken), opts, "barge", hold=False)
            if client.closed:
                result.failures.append("closed_early")
            await client.hangup()
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        result.refused = status in REFUSED_HTTP
        result.failures.append(f"http_{status}")
    except websockets.ConnectionClosed:  # the server closed while the caller was speaking
        result.failures.append("closed_early")
    except (OSError, TimeoutError, ConnectionError, websockets.WebSocketException) as exc:
        result.failures.append(f"{'connect' if result.live_at is None else 'call'}:{type(exc).__name__}")
    finally:
        await client.close()
        result.ended_at = time.monotonic()
        result.close_code = client.close_code if result.close_code is None else result.close_code
        result.refused = result.refused or result.close_code == REFUSED_CLOSE
        result.end_reason = next((e.get("reason") for e in client.of_type("session.ended")), None)
        for e in client.of_type("error"):
            result.failures.extend([f"error:{e.get('code')}"] * (1 + int(e.get("suppressed") or 0)))
    return result


async def _connect(client: CallClient, result: CallResult, opts: Options) -> None:
    try:
        await client.connect(opts.connect_timeout)
    except ConnectionError:  # accepted, then refused (1013) before session.started
        result.close_code = client.close_code
        return
    heard = await client.silence_until(lambda: bool(client.audio_frames) or client.closed, opts.greeting_timeout)
    if not heard or not client.audio_frames:
        result.failures.append("no_greeting")
        return
    result.setup_ms = (client.audio_frames[0][0] - result.started) * 1000
    greeted = await client.silence_until(lambda: _listening(client) or client.closed, opts.reply_timeout)
    if client.closed:
        result.failures.append("closed_early")
    elif not greeted:
        result.failures.append("greeting_timeout")
    else:
        result.live_at = time.monotonic()


def _listening(client: CallClient) -> bool:
    states = client.of_type("agent.state")
    return bool(states) and states[-1]["state"] == "listening"


async def _spoken(client: CallClient, result: CallResult, utt: Utterance, opts: Options, kind: str, hold: bool):
    mark, frames = len(client.events), len(client.audio_frames)
    start = time.monotonic()
    end = await client.stream(utt.pcm)
    result.send_lag_ms.append((end - start - len(utt.pcm) / 2 / RATE) * 1000)
    await _answer(client, result, kind, utt.text, (mark, frames), last_voiced_at(start, utt.pcm), opts, hold)


async def _typed(client: CallClient, result: CallResult, text: str, opts: Options) -> None:
    mark, frames = len(client.events), len(client.audio_frames)
    since = time.monotonic()
    await client.send_json({"type": "text", "text": text})
    await _answer(client, result, "typed", text, (mark, frames), since, opts)


async def _answer(client, result: CallResult, kind, text, marks, since: float, opts: Options, hold=False) -> None:
    """Keep the microphone open until the agent has answered (`hold`: only until its reply has
    played `barge_after_s`, for the caller to talk over it) and record the turn."""
    mark, frames = marks

    def first() -> float | None:
        return reply_first_audio(client.events, client.audio_frames[frames:], mark, since)

    if hold:
        ok = await client.silence_until(lambda: first() is not None or client.closed, opts.reply_timeout)
        if first() is not None:
            await client.silence_until(lambda: client.closed, opts.barge_after_s)
    else:
        ok = await client.silence_until(
            lambda: client.agent_idle_since(mark, since) or client.closed, opts.reply_timeout
        )
    at = first()
    cut = kind == "barge" and any(e["type"] == "audio.clear" for e in client.events[mark:])
    metrics = [e for e in client.events[mark:] if e["type"] == "turn.metrics"]
    server = {k: v for k, v in metrics[-1].items() if k in SERVER_FIGURES} if metrics else {}
    ms = None if at is None else (at - since) * 1000
    result.turns.append(TurnResult(kind, text, ms, time.monotonic(), cut, server))
    if client.closed:
        return
    if at is None:
        result.failures.append("no_reply")
    elif not ok:
        result.failures.append("reply_timeout")
