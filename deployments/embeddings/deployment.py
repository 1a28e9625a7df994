"""Embeddings Serve deployment: requests from every call are batched into one forward pass."""

from __future__ import annotations

import asyncio

from ray import serve

from common.config import get_settings
from common.logs import mask_logs_in_this_process


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Embeddings:
    def __init__(self):
        mask_logs_in_this_process()
        from deployments.embeddings.engine import Embedder

        self._engine = Embedder(get_settings().embeddings_model_path)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._engine.embed, texts)

    async def embed_many(self, texts: list[str]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._embed_batch(t) for t in texts)))
