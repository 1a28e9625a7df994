"""Dialogue Serve deployment: the support agent (policy, tools, knowledge base) per replica.

Stateless per call: each turn brings the caller's memory from the session actor and the
updated memory goes back with the reply.
"""

from __future__ import annotations

import logging
from typing import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.dialogue.engine import GREETING, IntentClassifier
from deployments.dialogue.support import SupportAgent
from deployments.dialogue.tools import support_tools
from deployments.knowledge.engine import KnowledgeBase
from deployments.policy.engine import PolicyEngine
from deployments.tools.breaker_actor import BreakerClient, breaker_actor
from deployments.tools.router import ToolRouter
from deployments.tools.support_store import SupportStore
from serve_app.config import get_settings

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Dialogue:
    async def __init__(self, embeddings: DeploymentHandle):
        settings = get_settings()
        self._embeddings = embeddings
        self._store = SupportStore(settings.support_db_path)
        breakers = BreakerClient(breaker_actor(settings.breaker_failure_threshold, settings.breaker_recovery_s), ttl_s=1.0)
        self._router = ToolRouter(support_tools(self._store), breakers, self._store)
        self._kb = KnowledgeBase(settings.kb_store_path, self._embed_many)
        n = await self._kb.sync_folder(settings.kb_docs_path)
        if n is not None:
            log.info("knowledge base (re)indexed: %d sections from %s", n, settings.kb_docs_path)
        self._classify = IntentClassifier(self._embed_many)
        await self._classify.warm_up()  # embed the intent examples before the first caller waits
        self._agent = SupportAgent(
            self._classify, self._router, self._kb, PolicyEngine(settings.max_consecutive_failures), settings.confidence_threshold
        )

    async def _embed_many(self, texts: list[str]) -> list[list[float]]:
        return await self._embeddings.embed_many.remote(texts)

    async def respond(self, transcript: str, memory: dict, session_id: str = "", caller_id: str = "") -> AsyncIterator[dict]:
        """Stream `{"sentence": ...}` items, then one summary with the updated memory."""
        result = await self._agent.respond(transcript, memory, session_id, caller_id)
        for sentence in result.sentences:
            yield {"sentence": sentence}
        if result.escalate:
            self._store.record(session_id, "escalation", result.escalate, "escalated", 0.0, {"intent": result.intent})
        yield {
            "intent": result.intent,
            "score": result.score,
            "end_call": result.end_call,
            "escalate": result.escalate,
            "memory": result.memory,
            "policy": result.policy.model_dump(),
            "tool_results": [t.model_dump() for t in result.tool_results],
            "sensitive": result.sensitive,
            "kb_confidence": result.kb_confidence,
        }

    async def greeting(self) -> AsyncIterator[dict]:
        for sentence in GREETING:
            yield {"sentence": sentence}
        yield {"intent": "greeting", "score": 1.0, "end_call": False}
