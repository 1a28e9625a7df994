"""Deepgram live transcription for one call, through deepgram-sdk's `listen.v1` WebSocket.

The call's own VAD stays the judge of turns (it also drives barge-in); Deepgram hears the
audio continuously, sends interim results for partial transcripts, and when the VAD pauses
or ends an utterance we send `Finalize` and take the final results that cover it. Any
failure raises `DeepgramError`: the caller then falls back to the self-hosted Whisper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from common.dialects import Dialect

log = logging.getLogger(__name__)

KEEPALIVE_S = 4.0  # Deepgram closes a stream after ~10 s without audio or KeepAlive


class DeepgramError(RuntimeError):
    """The live stream failed: not connected, closed, an error message, or too slow."""


@dataclass
class Segment:
    start: float  # seconds of audio since this stream began
    end: float
    text: str
    confidence: float


class DeepgramStream:
    """One live connection. Times are seconds of audio sent on it since it opened."""

    def __init__(
        self,
        api_key: str,
        url: str,
        dialect: Dialect,
        sample_rate: int = 16000,
        endpointing_ms: int = 500,
        model: str = "nova-3",
        on_interim: Callable[[str], None] | None = None,
    ):
        self._api_key, self._url, self._dialect = api_key, url.rstrip("/"), dialect
        self.sample_rate, self._endpointing_ms, self._model = sample_rate, endpointing_ms, model
        self._on_interim = on_interim
        self._segments: list[Segment] = []
        self._heard_until = 0.0  # end of the last final result
        self._finalized = 0  # from_finalize results seen
        self._changed = asyncio.Event()
        self.sent_s = 0.0
        self.error: Exception | None = None
        self._cm = self._socket = self._reader = self._keepalive = None

    async def open(self, timeout_s: float = 3.0) -> None:
        from deepgram import AsyncDeepgramClient
        from deepgram.environment import DeepgramClientEnvironment

        parts = urlsplit(self._url)
        http = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
        env = DeepgramClientEnvironment(base=http, production=self._url, agent=self._url, agent_rest=http)
        client = AsyncDeepgramClient(api_key=self._api_key, environment=env)
        self._cm = client.listen.v1.connect(
            model=self._model,
            language=self._dialect.language,
            encoding="linear16",
            sample_rate=str(self.sample_rate),
            channels="1",
            interim_results="true",
            endpointing=str(self._endpointing_ms),
            punctuate="true",
            keyterm=list(self._dialect.keyterms),
        )
        try:
            self._socket = await asyncio.wait_for(self._cm.__aenter__(), timeout_s)
        except Exception as exc:
            raise DeepgramError(f"could not open the Deepgram stream: {_reason(exc)}") from None
        self._reader = asyncio.create_task(self._read())
        self._keepalive = asyncio.create_task(self._keep_alive())

    @property
    def ok(self) -> bool:
        return self._socket is not None and self.error is None

    async def send(self, pcm16: bytes) -> None:
        if not self.ok:
            raise DeepgramError(f"the Deepgram stream is down: {_reason(self.error)}")
        try:
            await self._socket.send_media(pcm16)
        except Exception as exc:
            self._fail(exc)
            raise DeepgramError(f"sending audio to Deepgram failed: {_reason(exc)}") from None
        self.sent_s += len(pcm16) / 2 / self.sample_rate

    async def transcript(self, start_s: float, end_s: float, timeout_s: float) -> tuple[str, float]:
        """Flush Deepgram and return the final words heard between `start_s` and `end_s`."""
        finalized = self._finalized
        try:
            await self._socket.send_finalize()
        except Exception as exc:
            self._fail(exc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.error is None and self._finalized == finalized and self._heard_until < end_s - 0.05:
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeepgramError(f"no final transcript from Deepgram within {timeout_s:.1f}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        if self.error is not None:
            raise DeepgramError(f"the Deepgram stream failed: {_reason(self.error)}")
        words = [s for s in self._segments if s.end > start_s + 0.05 and s.start < end_s and s.text]
        if not words:
            return "", 0.0
        return " ".join(s.text for s in words), sum(s.confidence for s in words) / len(words)

    async def close(self) -> None:
        for task in (self._keepalive, self._reader):
            if task is not None:
                task.cancel()
        if self._socket is not None and self.error is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.send_close_stream(), 1.0)
        if self._cm is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._cm.__aexit__(None, None, None), 2.0)
        self._socket = None

    async def _read(self) -> None:
        try:
            async for msg in self._socket:
                kind = getattr(msg, "type", None) if not isinstance(msg, dict) else msg.get("type")
                if kind == "Results":
                    self._result(msg)
                elif kind == "Error":
                    self._fail(DeepgramError(f"Deepgram error: {getattr(msg, 'description', msg)}"))
                    return
            self._fail(DeepgramError("Deepgram closed the stream"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _result(self, msg) -> None:
        alt = msg.channel.alternatives[0] if msg.channel.alternatives else None
        text = (alt.transcript if alt else "").strip()
        if not msg.is_final:
            if text and self._on_interim:
                self._on_interim(text)
            return
        end = msg.start + msg.duration
        self._segments.append(Segment(msg.start, end, text, alt.confidence if alt else 0.0))
        del self._segments[:-200]  # a long call keeps the recent past only
        self._heard_until = max(self._heard_until, end)
        if msg.from_finalize:
            self._finalized += 1
        self._changed.set()

    async def _keep_alive(self) -> None:
        while True:
            sent = self.sent_s
            await asyncio.sleep(KEEPALIVE_S)
            if self.sent_s == sent and self.ok:
                with contextlib.suppress(Exception):
                    await self._socket.send_keep_alive()

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
            log.warning("Deepgram stream failed: %s", _reason(exc))
        self._changed.set()


def _reason(exc: BaseException | None) -> str:
    """A short reason that never carries the API key (the SDK's errors repeat the headers)."""
    if exc is None:
        return "unknown"
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    return f"{type(exc).__name__}: {str(exc)[:120]}"
