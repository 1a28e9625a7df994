"""TTS Serve deployment: streams each sentence's audio as soon as it is synthesized.

With `VOICE_TTS_PROVIDER=openai` the cloud voice speaks (the caller's dialect picks it); piper
stays loaded beside it, so a sentence the cloud cannot start is still spoken, by piper.
Cancelling the stream (barge-in) closes the cloud request at once.
Piper's audio of the dialogue's fixed lines is kept per replica (`cache.py`, `VOICE_TTS_CACHE_MB`)
and the lines callers hear first are made at start, so the first caller already hears them from it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing

from ray import serve

from common.config import get_settings
from common.failover import Failover
from common.logs import mask_logs_in_this_process
from common.metrics import Meters
from deployments.dialogue.fixed_lines import fixed_lines, greeting_lines, notice_lines, prewarm_lines
from deployments.tts.cache import LineCache, LineKey, normalize_text
from deployments.tts.engine import clauses, quick_start

log = logging.getLogger(__name__)
PREWARM_RATE = 16000  # protocol v1's default output rate


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class TTS:
    def __init__(self):
        mask_logs_in_this_process()
        from deployments.tts.engine import PiperEngine

        settings = get_settings()
        self._piper = PiperEngine(settings.piper_voice_path, settings.tts_bounded_memory)
        self._cloud = None
        self._failover = Failover("openai", "piper")  # piper speaks a sentence the cloud cannot start
        if settings.tts_provider == "openai":
            from deployments.tts.openai_tts import OpenAITTSEngine

            self._cloud = OpenAITTSEngine(
                settings.openai_api_key.get_secret_value(), settings.openai_base_url, settings.openai_tts_model
            )
        notice = notice_lines(settings.consent_notice_on, settings.consent_notice)
        greeting = greeting_lines(settings.greeting)
        self._prewarm_lines = prewarm_lines(notice, greeting)
        fixed = fixed_lines(settings.kb_docs_path, notice, greeting)
        self._lines = LineCache(int(settings.tts_cache_mb * 2**20), fixed)
        self._meters = Meters("voice_tts_cache_lookups_total", "voice_tts_cache_bytes")
        if self._cloud is None and self._lines.enabled:
            threading.Thread(target=self._prewarm, name="tts-prewarm", daemon=True).start()

    async def synthesize(
        self, text: str, sample_rate: int = 16000, locale: str = "en-US", first: bool = False
    ) -> AsyncIterator[bytes]:
        """`first`: the reply's first sentence, where time to first audio is what the caller waits for."""
        cloud = self._cloud
        chunks = self._failover.stream(
            lambda: cloud.synthesize(text, sample_rate, locale),
            lambda: self._piper_speak(text, sample_rate, first),
            use_primary=cloud is not None,
            on_failure=_cloud_failed,
        )
        async with aclosing(chunks):  # a barge-in closes the cloud request at once
            async for chunk in chunks:
                yield chunk

    async def _piper_speak(self, text: str, sample_rate: int, first: bool) -> AsyncIterator[bytes]:
        if self._lines.is_fixed(text):
            async for chunk in self._fixed_line(text, sample_rate, first):
                yield chunk
            return
        async for chunk in self._piper_parts(quick_start(text) if first else clauses(text), sample_rate, False):
            yield chunk

    async def _piper_parts(self, parts, sample_rate: int, deterministic: bool) -> AsyncIterator[bytes]:
        for part in parts:  # a long sentence starts sooner, part by part
            chunks = self._piper.synthesize(part, sample_rate, deterministic)
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                yield chunk

    async def _fixed_line(self, text: str, sample_rate: int, first: bool) -> AsyncIterator[bytes]:
        """A fixed line, always deterministic: from the cache when held, else made and kept once
        it has streamed to its end (a barge-in closes the stream before, and nothing is kept)."""
        key = self._key(text, sample_rate, first)
        if self._lines.cacheable(text):
            stored = self._lines.get(key)
            self._meters.inc("voice_tts_cache_lookups_total", {"result": "miss" if stored is None else "hit"})
            if stored is not None:
                for chunk in stored:  # the chunks as made: the Gateway paces them as it paces a fresh line
                    yield chunk
                return
        made = []
        async for chunk in self._piper_parts(key.parts, sample_rate, True):
            made.append(chunk)
            yield chunk
        if self._lines.put(key, made):
            self._meters.set("voice_tts_cache_bytes", self._lines.bytes_held)

    def _key(self, text: str, sample_rate: int, first: bool) -> LineKey:
        text = normalize_text(text)
        parts = tuple(quick_start(text) if first else clauses(text))
        return LineKey(self._piper.voice, parts, sample_rate, self._piper.length_scale)

    def _prewarm(self) -> None:
        """Make the lines callers hear first, as a reply's first sentence and as a later one."""
        made = 0
        for line in self._prewarm_lines:
            for first in (True, False):
                key = self._key(line, PREWARM_RATE, first)
                if key not in self._lines:
                    chunks = [c for part in key.parts for c in self._piper.synthesize(part, PREWARM_RATE, True)]
                    made += self._lines.put(key, chunks)
        self._meters.set("voice_tts_cache_bytes", self._lines.bytes_held)
        log.info("TTS cache pre-warmed: %d lines, %d bytes", made, self._lines.bytes_held)

    async def cache_stats(self) -> dict:
        """This replica's cache: hits, misses, bytes and lines held."""
        return self._lines.stats()


def _cloud_failed(exc: Exception) -> None:
    log.warning("cloud TTS failed, piper speaks this sentence: %s", exc)
