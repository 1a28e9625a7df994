"""Which recognizer hears a call: Deepgram's live stream while it works, Whisper when not.

The call feeds every 16 kHz frame here and asks for the words of an utterance by its span
(stream samples). With Deepgram configured, audio goes to its live stream; an utterance is
transcribed from the stream's final results. If the stream fails, is too slow, or the
cluster-wide breaker for Deepgram is open, the same utterance's audio goes to the Whisper
deployment instead: the turn is never lost. Every `deepgram_retry_s` (while the breaker lets
us) a new stream is tried, and once open the call moves back to Deepgram.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from common.config import Settings
from common.dialects import dialect_for
from common.failover import Failover
from models.asr import AsrKind, AsrRequest

log = logging.getLogger(__name__)

BREAKER = "asr.deepgram"
RATE = 16000
PRE_ROLL_SAMPLES = RATE * 3 // 10

Transcribe = Callable[[AsrRequest], Awaitable[dict]]  # the Whisper deployment


class Hearing:
    def __init__(
        self,
        settings: Settings,
        locale: str,
        whisper: Transcribe,
        breaker=None,
        on_interim: Callable[[str], None] | None = None,
        session_id: str = "",
    ):
        self._settings, self._locale, self._whisper = settings, locale, whisper
        self._breaker, self._on_interim, self._sid = breaker, on_interim, session_id
        self._use_deepgram = settings.asr_provider == "deepgram"
        self._stream = None
        self._stream_from = 0  # stream sample where the live stream's time 0 is
        self._fed = 0  # samples fed so far
        self._connecting: asyncio.Task | None = None
        # a stream tried or lost waits `deepgram_retry_s` before the next one is tried
        self._failover = Failover("deepgram", "whisper", settings.deepgram_retry_s)
        self._configured = False

    @property
    def provider(self) -> str:
        """Who hears the audio now."""
        live = self._stream is not None and self._stream.ok
        return self._failover.primary if live else self._failover.secondary

    @property
    def streams_partials(self) -> bool:
        """Deepgram sends its own interim results; Whisper partials are then not needed."""
        return self.provider == self._failover.primary

    async def feed(self, pcm16: bytes) -> None:
        if self._stream is not None:
            if self._stream.ok:
                try:
                    await self._stream.send(pcm16)
                except Exception:
                    await self._lost()
            else:
                await self._lost()
        self._fed += len(pcm16) // 2
        if self._use_deepgram and self._stream is None and self._connecting is None:
            if self._failover.due:
                self._failover.hold()
                self._connecting = asyncio.create_task(self._connect())

    async def transcribe(self, audio: bytes, end_sample: int, kind: AsrKind = "final") -> dict:
        """`{"text", "confidence", "provider"}` for the utterance `audio` that ended at `end_sample`
        (`kind` "ahead" for a run-ahead's: Whisper serves it after a turn's final)."""
        stream, start_sample = self._stream, end_sample - len(audio) // 2
        # the utterance's first 300 ms are VAD pre-roll, mostly silence: the stream may miss them
        live = stream is not None and stream.ok and start_sample + PRE_ROLL_SAMPLES >= self._stream_from

        async def deepgram() -> dict:
            to_s = lambda sample: (sample - self._stream_from) / RATE  # noqa: E731
            text, confidence = await stream.transcript(
                to_s(start_sample), to_s(end_sample), self._settings.deepgram_timeout_ms / 1000
            )
            await self._record(True)
            return {"text": text, "confidence": round(confidence, 3)}

        async def failed(exc: Exception) -> None:
            log.warning("call %s: Deepgram failed (%s); this turn goes to Whisper", self._sid, exc)
            await self._lost()

        whisper = functools.partial(self._whisper, AsrRequest.of(audio, self._locale, kind, self._sid))
        result, provider = await self._failover.call(deepgram, whisper, use_primary=live, on_failure=failed)
        return {**result, "provider": provider}

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self._stream is not None:
            await self._stream.close()
            self._stream = None

    async def _connect(self) -> None:
        from deployments.asr.deepgram import DeepgramStream

        try:
            if self._breaker is not None and not self._configured:
                # the cluster waits as long as a call does before trying Deepgram again
                await self._breaker.configure(
                    BREAKER, self._settings.breaker_failure_threshold, self._settings.deepgram_retry_s
                )
                self._configured = True
            if self._breaker is not None and not await self._breaker.allow(BREAKER):
                return  # open for the whole cluster: stay on Whisper until it half-opens
            key = self._settings.deepgram_api_key.get_secret_value()
            stream = DeepgramStream(
                key,
                self._settings.deepgram_url,
                dialect_for(self._locale),
                RATE,
                self._settings.end_silence_ms,
                self._settings.deepgram_model,
                self._on_interim,
            )
            await stream.open()
            self._stream, self._stream_from = stream, self._fed
            log.info("call %s: hearing through Deepgram", self._sid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s: Deepgram unavailable (%s); Whisper hears this call", self._sid, exc)
            await self._record(False)
        finally:
            self._connecting = None

    async def _lost(self) -> None:
        stream, self._stream = self._stream, None
        self._failover.hold()
        if stream is not None:
            log.warning("call %s: Deepgram stream lost; Whisper hears this call until it is back", self._sid)
            await self._record(False)
            await stream.close()

    async def _record(self, ok: bool) -> None:
        if self._breaker is None:
            return
        try:
            await self._breaker.record(BREAKER, ok)
        except Exception as exc:  # the breaker is advisory here; never lose a turn over it
            log.warning("call %s: breaker update failed: %r", self._sid, exc)
