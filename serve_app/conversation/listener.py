"""The caller's side of a call: frames and messages in, flood control, resampling, hearing
(VAD endpointing, partial transcripts, the utterance's ASR). What it hears goes out through
`ListenerHooks`; it knows nothing of turns or speaking."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from common.audio import StreamResampler
from common.config import Settings
from common.pii import mask_pii
from deployments.vad.engine import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VADStream
from deployments.vad.hearing_profile import hearing_profile
from models.asr import AsrRequest, AsrShed
from models.protocol import (
    CloseCode,
    ConnectParams,
    HangupMessage,
    ProtocolError,
    TextMessage,
    check_audio_frame,
    event,
    parse_client_text,
)
from serve_app.conversation.channel import Channel
from serve_app.conversation.guards import TokenBucket, cancelling
from serve_app.conversation.hearing import Hearing, Transcribe
from serve_app.conversation.partial_mask import mask_number_runs
from serve_app.conversation.playback import is_backchannel

log = logging.getLogger(__name__)

VAD_RATE = 16000
AUDIO_AHEAD_ALLOWANCE_S = 10.0  # how far caller audio may run ahead of the wall clock (bursty networks)


class ListenerHooks(Protocol):
    """What the listener reports. A hook may raise ProtocolError (e.g. the turn queue is full):
    the caller is told, and the call ends if the error carries a close code."""

    def on_speech_started(self) -> None: ...

    def on_paused(self, audio: bytes, at_sample: int) -> None: ...

    def on_resumed(self) -> None: ...

    def on_end_of_turn(self, audio: bytes, at_sample: int, trailing_silence_ms: float) -> None: ...

    async def on_speech(self, speech_ms: float) -> None:
        """The caller is speaking (after every frame while they are): a barge-in's cue."""

    def on_text(self, text: str) -> None: ...

    def on_close(self, reason: str, close_code: int | None) -> None: ...


class Listener:
    def __init__(
        self,
        channel: Channel,
        hooks: ListenerHooks,
        params: ConnectParams,
        session_id: str,
        transcribe: Transcribe,
        vad_stream: VADStream,
        settings: Settings,
        breaker=None,
        clock=time.monotonic,
    ):
        self._channel, self._hooks, self.params, self.session_id = channel, hooks, params, session_id
        self._settings = settings
        self._transcribe = transcribe  # Whisper: partial transcripts
        self.hearing = Hearing(settings, params.locale, transcribe, breaker, self._interim, session_id)  # utterances
        self.hearing_profile = hearing_profile(settings, params.sample_rate)  # a phone line's own VAD settings
        self.endpointer = self.hearing_profile.endpointer(
            vad_stream,
            settings,
            end_silence_ms=settings.end_silence_ms,
            max_utterance_s=settings.max_utterance_s,
            preemptive_ms=settings.preemptive_ms,
        )
        self._resampler = StreamResampler(params.sample_rate, VAD_RATE)
        self._text_bucket = TokenBucket(settings.text_rate_per_s, settings.text_burst)
        self._frame_bucket = TokenBucket(settings.max_frames_per_s, settings.frame_burst, clock)  # any size counts
        self._clock = clock
        self.heard_at = float("-inf")  # the last typed turn or voiced frame: a drain waits for quiet
        self.awaiting_pin = False  # the agent asked for a PIN: partial transcripts mask numbers
        self._dropped = 0
        self._audio_s = 0.0  # caller audio received, to refuse audio far faster than real time
        self._audio_clock: float | None = None
        self.partial: asyncio.Task | None = None
        self.partials_skipped = 0  # due while the last was still being decoded
        self._partial_at_ms = 0.0

    async def run(self) -> None:
        while not cancelling():
            msg = await self._channel.ws.receive()
            if msg["type"] == "websocket.disconnect":
                self._channel.gone()
                return
            try:
                if msg.get("bytes") is not None:
                    if not self._frame_bucket.take():
                        rate = self._settings.max_frames_per_s
                        raise ProtocolError("flooding", f"more than {rate:g} binary frames a second", CloseCode.POLICY)
                    await self._on_audio(msg["bytes"])
                elif msg.get("text") is not None:
                    self._on_text(msg["text"])
            except ProtocolError as exc:
                await self._channel.error(exc.code, exc.message, always=exc.close_code is not None)
                if exc.close_code is not None:
                    self._hooks.on_close(exc.code, exc.close_code)
                    return

    async def _on_audio(self, frame: bytes) -> None:
        check_audio_frame(frame)
        self._check_audio_rate(len(frame) / 2 / self.params.sample_rate)
        pcm = self._resampler.process(frame)
        await self.hearing.feed(pcm)
        for ev in self.endpointer.feed(pcm):
            if isinstance(ev, SpeechStarted):
                self._hooks.on_speech_started()
                await self._channel.user("speaking")
            elif isinstance(ev, SpeechPaused):
                self._hooks.on_paused(ev.audio, ev.at_sample)
            elif isinstance(ev, SpeechResumed):
                self._hooks.on_resumed()  # the caller went on: what was started early is stale
            elif isinstance(ev, SpeechEnded):
                await self._channel.user("silent")
                self._partial_at_ms = 0.0
                self._hooks.on_end_of_turn(ev.audio, ev.at_sample, ev.trailing_silence_ms)
        if self.endpointer.hearing_voice:
            self.heard_at = self._clock()
        if self.endpointer.speaking:
            await self._hooks.on_speech(self.endpointer.speech_ms)
            self._maybe_partial()

    def _maybe_partial(self) -> None:
        """A partial transcript every `partial_interval_ms` of speech, one at a time. When one is
        due while the last is still being decoded, it is skipped, not deferred: a loaded ASR gets
        at most one partial per interval from a call, and never a backlog of them."""
        interval = self._settings.partial_interval_ms
        speech_ms = self.endpointer.speech_ms
        if not interval or speech_ms - self._partial_at_ms < interval:
            return
        self._partial_at_ms = speech_ms
        if self.hearing.streams_partials:
            return  # Deepgram's interim results are the partials
        if self.partial and not self.partial.done():
            self.partials_skipped += 1
            return
        self.partial = asyncio.create_task(self._send_partial(self.endpointer.utterance_audio()))

    def drop_partial(self) -> None:
        """The caller paused: the run-ahead's transcript supersedes a partial still on its way,
        and must not queue behind it at the ASR replica (a request not yet decoding is dropped)."""
        if self.partial and not self.partial.done():
            self.partial.cancel()

    async def _send_partial(self, audio: bytes) -> None:
        request = AsrRequest.of(audio, self.params.locale, "partial", self.session_id)
        try:
            result = await asyncio.wait_for(self._transcribe(request), self._settings.turn_timeout_ms / 1000)
        except Exception as exc:  # AsrShed: the ASR replica had turns to hear first
            level = logging.DEBUG if isinstance(exc, AsrShed) else logging.INFO
            log.log(level, "call %s: partial transcript skipped: %r", self.session_id, exc)
            return
        if result["text"] and self.endpointer.speaking:
            await self._channel.send_text(self.partial_event(result["text"]))

    def _interim(self, text: str) -> None:
        """A Deepgram interim result: a partial transcript while the caller speaks."""
        if self.endpointer.speaking and not is_backchannel(text):
            asyncio.get_running_loop().create_task(self._channel.send_text(self.partial_event(text)))

    def partial_event(self, text: str) -> str:
        """Personal data masked; while a PIN is awaited, every number too (it may be the PIN's start)."""
        masked = mask_pii(text)
        if self.awaiting_pin:
            masked = mask_number_runs(masked)
        return event("transcript", turn_id=None, text=masked, final=False)

    def _check_audio_rate(self, seconds: float) -> None:
        """A microphone sends audio at real time; allow jitter, refuse a flood."""
        now = time.monotonic()
        if self._audio_clock is None:
            self._audio_clock = now
        if self._audio_s + seconds > (now - self._audio_clock) + AUDIO_AHEAD_ALLOWANCE_S:
            self._drop(
                "audio_too_fast",
                f"audio is arriving faster than real time (over {AUDIO_AHEAD_ALLOWANCE_S:g} s ahead); "
                "this frame was dropped",
            )
        self._audio_s += seconds

    def _drop(self, code: str, message: str) -> None:
        self._dropped += 1
        if self._dropped > self._settings.max_dropped_messages:
            raise ProtocolError("flooding", "too many frames over the rate limit", CloseCode.POLICY)
        raise ProtocolError(code, message)

    def _on_text(self, raw: str) -> None:
        if not self._text_bucket.take():
            self._drop(
                "rate_limited",
                f"more than {self._settings.text_rate_per_s:g} text messages a second; this one was not processed",
            )
        msg = parse_client_text(raw)
        if isinstance(msg, HangupMessage):
            self._hooks.on_close("hangup", CloseCode.NORMAL)
        elif isinstance(msg, TextMessage):
            self.heard_at = self._clock()
            self._hooks.on_text(msg.text)
