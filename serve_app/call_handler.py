"""One call on the ingress WebSocket: hear (VAD + ASR), think (session actor), speak (TTS).

Three tasks share the call: the receiver (frames in, VAD endpointing), the turn worker
(transcribe, dialogue, synthesize) and a TTL timer. Whatever ends the call sets one
future with a reason and close code; `run` then says `session.ended` and closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from deployments.audio import StreamResampler
from deployments.vad.engine import Endpointer, SpeechEnded, SpeechStarted, VADStream
from models.protocol import (
    CloseCode,
    ConnectParams,
    HangupMessage,
    ProtocolError,
    TextMessage,
    check_audio_frame,
    error_event,
    event,
    parse_client_text,
    session_started,
)
from serve_app.config import Settings
from serve_app.pacer import AudioPacer
from serve_app.pii import mask_pii

log = logging.getLogger(__name__)

VAD_RATE = 16000
AUDIO_AHEAD_ALLOWANCE_S = 10.0  # how far caller audio may run ahead of the wall clock (bursty networks)
SORRY_ASR = "Sorry, I couldn't hear that clearly. Could you say it again?"
SORRY_DIALOGUE = "Sorry, something went wrong on my side. Could you say that again?"

Transcribe = Callable[[bytes, str], Awaitable[dict]]
Synthesize = Callable[[str, int], AsyncIterator[bytes]]


@dataclass
class TurnInput:
    source: str  # "speech" or "text"
    eos_at: float  # monotonic time the caller stopped speaking (or sent the text)
    endpoint_ms: float = 0.0
    audio: bytes = b""
    text: str = ""


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class CallHandler:
    def __init__(self, ws, params: ConnectParams, session_id: str, actor, transcribe: Transcribe, synthesize: Synthesize, vad_stream: VADStream, settings: Settings, observe: Callable[[str, float], None] | None = None):
        self.ws = ws
        self.params = params
        self.session_id = session_id
        self.actor = actor
        self._transcribe = transcribe
        self._synthesize = synthesize
        self._settings = settings
        self._observe = observe or (lambda stage, ms: None)
        self._endpointer = Endpointer(
            vad_stream,
            threshold=settings.vad_threshold,
            min_speech_ms=settings.min_speech_ms,
            end_silence_ms=settings.end_silence_ms,
            max_utterance_s=settings.max_utterance_s,
        )
        self._resampler = StreamResampler(params.sample_rate, VAD_RATE)
        self._pacer = AudioPacer(self._send_bytes, params.output_sample_rate, settings.playback_lead_ms / 1000)
        self._turns: asyncio.Queue[TurnInput] = asyncio.Queue(maxsize=8)
        self._text_bucket = TokenBucket(settings.text_rate_per_s, settings.text_burst)
        self._dropped = 0
        self._audio_s = 0.0  # caller audio received, to refuse audio far faster than real time
        self._audio_clock: float | None = None
        self._send_lock = asyncio.Lock()
        self._ended: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closed = False
        self._agent_state = None
        self._user_state = "silent"
        self.finalized = False

    # --- lifecycle ---------------------------------------------------------

    async def run(self) -> str:
        """Serve the call until it ends; returns the end reason."""
        await self._send_text(session_started(self.session_id, self.params.sample_rate, self.params.output_sample_rate))
        tasks = [
            asyncio.create_task(self._receiver(), name="receiver"),
            asyncio.create_task(self._worker(), name="worker"),
            asyncio.create_task(self._ttl(), name="ttl"),
        ]
        for t in tasks:
            t.add_done_callback(self._task_done)
        try:
            reason, close_code = await self._ended
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.checkpoint_final(reason)  # the store is final before the caller hears session.ended
        if close_code is not None:
            await self._send_text(event("session.ended", reason=reason))
            await self._close(close_code, reason)
        return reason

    async def checkpoint_final(self, reason: str) -> None:
        if self.finalized:
            return
        try:
            await self.actor.close.remote(reason)
            self.finalized = True
        except Exception:
            log.exception("call %s: final checkpoint failed", self.session_id)

    def finish(self, reason: str, close_code: int | None = CloseCode.NORMAL) -> None:
        if not self._ended.done():
            self._ended.set_result((reason, close_code))

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._ended.done():
            return
        exc = task.exception()
        if exc is not None:
            log.error("call %s: %s task failed: %r", self.session_id, task.get_name(), exc, exc_info=exc)
            self.finish("server_error", CloseCode.SERVER_ERROR)

    async def _ttl(self) -> None:
        await asyncio.sleep(self._settings.session_ttl_s)
        self.finish("session_ttl")

    # --- sending -----------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        if self._closed:
            return
        try:
            async with self._send_lock:
                await self.ws.send_text(text)
        except Exception:
            self._closed = True
            self.finish("caller_disconnected", None)

    async def _send_bytes(self, data: bytes) -> None:
        if self._closed:
            raise asyncio.CancelledError
        try:
            async with self._send_lock:
                await self.ws.send_bytes(data)
        except Exception:
            self._closed = True
            self.finish("caller_disconnected", None)
            raise asyncio.CancelledError from None

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.ws.close(code=code, reason=reason[:120])
        except Exception:
            pass

    async def _error(self, code: str, message: str) -> None:
        await self._send_text(error_event(code, message))

    async def _agent(self, state: str) -> None:
        if state != self._agent_state:
            self._agent_state = state
            await self._send_text(event("agent.state", state=state))

    async def _user(self, state: str) -> None:
        if state != self._user_state:
            self._user_state = state
            await self._send_text(event("user.state", state=state))

    # --- receiving ---------------------------------------------------------

    async def _receiver(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                self._closed = True
                self.finish("caller_disconnected", None)
                return
            try:
                if msg.get("bytes") is not None:
                    await self._on_audio(msg["bytes"])
                elif msg.get("text") is not None:
                    await self._on_text(msg["text"])
            except ProtocolError as exc:
                await self._error(exc.code, exc.message)
                if exc.close_code is not None:
                    self.finish(exc.code, exc.close_code)
                    return

    async def _on_audio(self, frame: bytes) -> None:
        check_audio_frame(frame)
        self._check_audio_rate(len(frame) / 2 / self.params.sample_rate)
        for ev in self._endpointer.feed(self._resampler.process(frame)):
            if isinstance(ev, SpeechStarted):
                await self._user("speaking")
            elif isinstance(ev, SpeechEnded):
                await self._user("silent")
                now = time.monotonic()
                eos_at = now - ev.trailing_silence_ms / 1000
                self._enqueue(TurnInput("speech", eos_at=eos_at, endpoint_ms=ev.trailing_silence_ms, audio=ev.audio))

    def _check_audio_rate(self, seconds: float) -> None:
        """A microphone sends audio at real time; allow jitter, refuse a flood."""
        now = time.monotonic()
        if self._audio_clock is None:
            self._audio_clock = now
        if self._audio_s + seconds > (now - self._audio_clock) + AUDIO_AHEAD_ALLOWANCE_S:
            self._drop("audio_too_fast", f"audio is arriving faster than real time (over {AUDIO_AHEAD_ALLOWANCE_S:g} s ahead); this frame was dropped")
        self._audio_s += seconds

    def _drop(self, code: str, message: str) -> None:
        self._dropped += 1
        if self._dropped > self._settings.max_dropped_messages:
            raise ProtocolError("flooding", "too many frames over the rate limit", CloseCode.POLICY)
        raise ProtocolError(code, message)

    async def _on_text(self, raw: str) -> None:
        if not self._text_bucket.take():
            self._drop("rate_limited", f"more than {self._settings.text_rate_per_s:g} text messages a second; this one was not processed")
        msg = parse_client_text(raw)
        if isinstance(msg, HangupMessage):
            self.finish("hangup")
        elif isinstance(msg, TextMessage):
            self._enqueue(TurnInput("text", eos_at=time.monotonic(), text=msg.text))

    def _enqueue(self, turn: TurnInput) -> None:
        try:
            self._turns.put_nowait(turn)
        except asyncio.QueueFull:
            raise ProtocolError("busy", "the agent is still working on earlier turns; this one was not processed") from None

    # --- the turn worker ---------------------------------------------------

    async def _worker(self) -> None:
        await self._speak_stream(self.actor.greet.remote(), metrics=None)
        await self._agent("listening")
        while True:
            turn = await self._turns.get()
            await self._run_turn(turn)

    async def _run_turn(self, turn: TurnInput) -> None:
        await self._agent("thinking")
        metrics: dict[str, float] = {"endpoint_delay_ms": round(turn.endpoint_ms, 1)}
        text, confidence = turn.text, None
        if turn.source == "speech":
            try:
                result = await asyncio.wait_for(self._transcribe(turn.audio, self.params.locale), self._settings.turn_timeout_ms / 1000)
            except Exception as exc:
                log.warning("call %s: ASR failed: %r", self.session_id, exc)
                await self._error("asr_failed", "speech recognition failed for this turn")
                await self._say_fallback(SORRY_ASR)
                return
            text, confidence = result["text"], result["confidence"]
            if not text:
                await self._agent("listening")  # noise or a breath: nothing was said
                return
        metrics["eos_to_transcript_ms"] = _ms_since(turn.eos_at)
        summary = await self._speak_stream(
            self.actor.run_turn.remote(text, turn.source, confidence), metrics=metrics, transcript=text, eos_at=turn.eos_at
        )
        if summary and summary.get("escalate"):
            await self._send_text(event("escalation", reason=summary["escalate"]))
        if summary and summary.get("end_call"):
            await self._pacer.drain()
            self.finish(summary.get("reason") or "agent_hangup")
            return
        await self._agent("listening")

    async def _speak_stream(self, items, metrics: dict | None, transcript: str | None = None, eos_at: float = 0.0) -> dict | None:
        """Consume a session-actor reply stream: announce the turn, speak each sentence."""
        turn_id, summary = None, None
        started = time.monotonic()
        try:
            async for ref in items:
                item = await ref
                if "turn_id" in item:
                    turn_id = item["turn_id"]
                    if transcript is not None:  # masked as stored: the page shows "[CARD]", not the number
                        await self._send_text(event("transcript", turn_id=turn_id, text=item.get("transcript", mask_pii(transcript)), final=True))
                elif "sentence" in item:
                    if metrics is not None and "dialogue_first_sentence_ms" not in metrics:
                        metrics["dialogue_first_sentence_ms"] = _ms_since(started)
                    await self._speak(turn_id, item["sentence"], metrics, eos_at)
                else:
                    summary = item
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: dialogue failed: %r", self.session_id, exc)
            await self._error("dialogue_failed", "the agent could not answer this turn")
            await self._say_fallback(SORRY_DIALOGUE)
            return None
        await self._pacer.drain()
        if turn_id is not None:
            if metrics is not None:
                await self._send_text(event("turn.metrics", turn_id=turn_id, **metrics))
                for stage, ms in metrics.items():
                    self._observe(stage, ms)
            await self.actor.finish_turn.remote(turn_id, metrics or {})
        return summary

    async def _speak(self, turn_id: int | None, sentence: str, metrics: dict | None, eos_at: float) -> None:
        t0 = time.monotonic()
        first = True
        try:
            async for chunk in self._synthesize(sentence, self.params.output_sample_rate):
                if first:
                    first = False
                    if metrics is not None and "tts_first_audio_ms" not in metrics:
                        metrics["tts_first_audio_ms"] = _ms_since(t0)
                    await self._agent("speaking")
                    await self._send_text(event("agent.text", turn_id=turn_id, text=sentence))
                if metrics is not None and "eos_to_first_audio_ms" not in metrics:
                    metrics["eos_to_first_audio_ms"] = _ms_since(eos_at)
                await self._pacer.send(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: TTS failed for %r: %r", self.session_id, mask_pii(sentence)[:60], exc)
            if first:
                await self._send_text(event("agent.text", turn_id=turn_id, text=sentence))
            await self._error("tts_failed", "speech synthesis failed; the sentence is in agent.text")

    async def _say_fallback(self, sentence: str) -> None:
        await self._speak(None, sentence, None, 0.0)
        await self._pacer.drain()
        await self._agent("listening")


def _ms_since(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)
