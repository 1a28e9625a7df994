"""TTS Serve deployment: streams each sentence's audio as soon as it is synthesized."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from ray import serve

from serve_app.config import get_settings


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class TTS:
    def __init__(self):
        from deployments.tts.engine import PiperEngine

        self._engine = PiperEngine(get_settings().piper_voice_path)

    async def synthesize(self, text: str, sample_rate: int = 16000) -> AsyncIterator[bytes]:
        chunks = self._engine.synthesize(text, sample_rate)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk
