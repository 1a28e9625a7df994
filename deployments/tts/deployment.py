"""TTS Serve deployment: streams each sentence's audio as soon as it is synthesized.

With `VOICE_TTS_PROVIDER=openai` the cloud voice speaks (the caller's dialect picks it); piper
stays loaded beside it, so a sentence the cloud cannot start is still spoken, by piper.
Cancelling the stream (barge-in) closes the cloud request at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ray import serve

from common.config import get_settings
from deployments.tts.engine import clauses, quick_start

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class TTS:
    def __init__(self):
        from deployments.tts.engine import PiperEngine

        settings = get_settings()
        self._piper = PiperEngine(settings.piper_voice_path)
        self._cloud = None
        if settings.tts_provider == "openai":
            from deployments.tts.openai_tts import OpenAITTSEngine

            self._cloud = OpenAITTSEngine(
                settings.openai_api_key.get_secret_value(), settings.openai_base_url, settings.openai_tts_model
            )

    async def synthesize(
        self, text: str, sample_rate: int = 16000, locale: str = "en-US", first: bool = False
    ) -> AsyncIterator[bytes]:
        """`first`: the reply's first sentence, where time to first audio is what the caller waits for."""
        if self._cloud is not None:
            started = False
            try:
                async for chunk in self._cloud.synthesize(text, sample_rate, locale):
                    started = True
                    yield chunk
                return
            except Exception as exc:
                if started:
                    raise  # half a sentence was spoken: a second voice would repeat it
                log.warning("cloud TTS failed, piper speaks this sentence: %s", exc)
        for clause in quick_start(text) if first else clauses(text):  # a long sentence starts sooner, part by part
            chunks = self._piper.synthesize(clause, sample_rate)
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    break
                yield chunk
