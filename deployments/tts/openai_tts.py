"""Speech synthesis through OpenAI's `POST /v1/audio/speech`, streamed as it is generated.

Piper is the offline default; a cloud voice sounds better and speaks the caller's dialect.
The first audio plays after one network round trip instead of a whole sentence, and on
barge-in the HTTP response is closed at once, so the provider stops generating (and billing).
OpenAI's `pcm` format is headerless s16le mono at 24 kHz; we resample it to the call's rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import openai

try:  # openai >= 3 is built on httpx2 (older releases on httpx); it does not wrap errors reading the body
    import httpx2 as _http
except ImportError:  # pragma: no cover
    import httpx as _http

from common.audio import StreamResampler
from common.dialects import dialect_for

log = logging.getLogger(__name__)

OPENAI_PCM_RATE = 24000
CHUNK_S = 0.08  # yield ~80 ms of audio at a time: small network pieces are buffered, big ones split


class TTSProviderError(RuntimeError):
    """The TTS provider refused, failed or could not be reached; the message never holds the key."""


class OpenAITTSEngine:
    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.openai.com/v1",
        model: str = "gpt-4o-mini-tts",
        timeout_s: float = 10.0,
    ):
        self._api_key = api_key
        self.base_url, self.model, self.timeout_s = base_url, model, timeout_s
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)

    async def synthesize(self, text: str, sample_rate: int, locale: str = "en-US") -> AsyncIterator[bytes]:
        """Yield PCM s16le mono at `sample_rate` in ~80 ms chunks (whole samples) as it arrives."""
        if not text.strip():
            return
        voice = dialect_for(locale).openai_voice
        resampler = StreamResampler(OPENAI_PCM_RATE, sample_rate)
        chunk_bytes = max(2, int(sample_rate * CHUNK_S) * 2)
        pending, carry, received, t0 = b"", b"", 0, time.perf_counter()
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self.model, voice=voice, input=text, response_format="pcm"
            ) as response:
                async with aclosing(response.iter_bytes()) as body:  # closed before the response
                    async for piece in body:
                        if not received:
                            log.info(
                                "openai tts first audio after %.0f ms (voice %s)",
                                (time.perf_counter() - t0) * 1000,
                                voice,
                            )
                        received += len(piece)
                        data = carry + piece
                        even = len(data) & ~1  # a network piece may end mid-sample
                        data, carry = data[:even], data[even:]
                        pending += resampler.process(data)
                        while len(pending) >= chunk_bytes:
                            chunk, pending = pending[:chunk_bytes], pending[chunk_bytes:]
                            yield chunk  # on aclose()/cancel, both `async with` exit here: connection closed
        except openai.APIStatusError as e:
            raise TTSProviderError(
                f"OpenAI TTS returned HTTP {e.status_code}: {self._redact(_error_message(e))}"
            ) from None
        except openai.APITimeoutError:
            raise TTSProviderError(f"OpenAI TTS at {self.base_url} timed out after {self.timeout_s:g}s") from None
        except openai.APIConnectionError as e:
            raise TTSProviderError(
                f"OpenAI TTS at {self.base_url} unreachable: {self._redact(str(e.__cause__ or e))}"
            ) from None
        except _http.HTTPError as e:  # raised while reading the body
            kind = "timed out" if isinstance(e, _http.TimeoutException) else "broke"
            raise TTSProviderError(
                f"OpenAI TTS stream {kind} after {received} bytes: {type(e).__name__} {self._redact(str(e))}"
            ) from None
        if carry:
            log.warning("openai tts stream ended mid-sample (%d bytes); dropping the odd byte", received)
        pending += resampler.process(b"", last=True)
        for i in range(0, len(pending), chunk_bytes):
            yield pending[i : i + chunk_bytes]
        log.info("openai tts %d bytes at 24 kHz in %.2fs (voice %s)", received, time.perf_counter() - t0, voice)

    def _redact(self, message: str) -> str:
        return message.replace(self._api_key, "***") if self._api_key else message


def _error_message(e: openai.APIStatusError) -> str:
    """OpenAI's `{"error": {"message": ...}}`, else the SDK's own message."""
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return e.message
