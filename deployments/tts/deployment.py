"""TTS Serve deployment: streams each sentence's audio as soon as it is synthesized.

With `VOICE_TTS_PROVIDER=openai` the cloud voice speaks (the caller's dialect picks it); piper
stays loaded beside it, so a sentence the cloud cannot start is still spoken, by piper.
Cancelling the stream (barge-in) closes the cloud request at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from ray import serve

from common.config import get_settings
from common.failover import Failover
from common.logs import mask_logs_in_this_process
from deployments.tts.engine import clauses, quick_start

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class TTS:
    def __init__(self):
        mask_logs_in_this_process()
        from deployments.tts.engine import PiperEngine

        settings = get_settings()
        self._piper = PiperEngine(settings.piper_voice_path)
        self._cloud = None
        self._failover = Failover("openai", "piper")  # piper speaks a sentence the cloud cannot start
        if settings.tts_provider == "openai":
            from deployments.tts.openai_tts import OpenAITTSEngine

            self._cloud = OpenAITTSEngine(
                settings.openai_api_key.get_secret_value(), settings.openai_base_url, settings.openai_tts_model
            )

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
        for clause in quick_start(text) if first else clauses(text):  # a long sentence starts sooner, part by part
            chunks = self._piper.synthesize(clause, sample_rate)
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                yield chunk


def _cloud_failed(exc: Exception) -> None:
    log.warning("cloud TTS failed, piper speaks this sentence: %s", exc)
