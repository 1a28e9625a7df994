"""Dialogue Serve deployment: picks the engine named by config and streams its reply."""

from __future__ import annotations

from typing import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.dialogue.engine import LocalDialogueEngine
from serve_app.config import get_settings


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Dialogue:
    async def __init__(self, embeddings: DeploymentHandle):
        get_settings()  # fail fast on bad configuration
        self._embeddings = embeddings
        self._engine = LocalDialogueEngine(self._embed_many)
        await self._engine.warm_up()  # embed the intent examples before the first caller waits

    async def _embed_many(self, texts: list[str]) -> list[list[float]]:
        return await self._embeddings.embed_many.remote(texts)

    async def respond(self, transcript: str, history: list[dict] | None = None) -> AsyncIterator[dict]:
        """Stream `{"sentence": ...}` items, then one `{"intent", "score", "end_call"}` summary."""
        plan = await self._engine.plan(transcript)
        for sentence in plan.sentences:
            yield {"sentence": sentence}
        yield {"intent": plan.intent, "score": plan.score, "end_call": plan.end_call}

    async def greeting(self) -> AsyncIterator[dict]:
        async for sentence in self._engine.greeting():
            yield {"sentence": sentence}
        yield {"intent": "greeting", "score": 1.0, "end_call": False}
