"""Dialogue Serve deployment: the support agent (policy, tools, knowledge base) per replica.

Stateless per call: each turn brings the caller's memory and history (the Gateway's
`TurnContext`, from the session actor) and the updated memory goes back in the `TurnSummary`
that closes the reply stream; the Gateway hands it to the session actor. What outlives a call
(PIN lockout, the tool journal and cache, the audit trail, what a customer's calls leave for
the next) is in the state store's parts (`open_state`: SQLite, or Redis on a cluster).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from common.config import Settings, get_settings
from common.logs import mask_logs_in_this_process
from common.metrics import Meters
from deployments.dialogue.engine import IntentClassifier
from deployments.dialogue.fixed_lines import greeting_lines, notice_lines
from deployments.dialogue.remember import to_remember
from deployments.dialogue.support import SupportAgent, TurnResult
from deployments.dialogue.tools import support_router
from deployments.knowledge.engine import KnowledgeBase
from deployments.policy.consent import DECLINED_REPLY, carries_request, consent_after
from deployments.policy.engine import PolicyEngine
from deployments.policy.escalation import EscalationClassifier
from deployments.state import open_state
from deployments.state.retention_actor import retention_actor
from deployments.tools.breaker_actor import BreakerClient, breaker_actor
from deployments.tools.router import NoToolsRouter, RunAheadRefused, ToolRouter
from deployments.tools.support_store import SupportStore
from models.dialogue import DialogueRequest, Sentence, TurnSummary

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Dialogue:
    async def __init__(self, embeddings: DeploymentHandle):
        mask_logs_in_this_process()
        settings = get_settings()
        self._embeddings = embeddings
        self._store = SupportStore(settings.support_db_path)
        self._state = open_state(settings)
        breakers = BreakerClient(
            breaker_actor(settings.breaker_failure_threshold, settings.breaker_recovery_s), ttl_s=1.0
        )
        self._retention = retention_actor()  # the cluster's retention purge: started by the first replica
        self._meters = Meters("voice_tool_calls_total", "voice_tool_failures_total", "voice_escalations_total")
        self._router = support_router(
            self._store, self._state, breakers, cache_ttl_s=settings.tool_cache_ttl_s, on_call=self._tool_called
        )
        self._meters.allowed["tool"] = self._router.names
        self._kb = KnowledgeBase(settings.kb_store_path, self._embed_many)
        n = await self._kb.sync_folder(settings.kb_docs_path)
        if n is not None:
            log.info("knowledge base (re)indexed: %d sections from %s", n, settings.kb_docs_path)
        self._engine = await build_engine(settings, self._router, self._kb, self._embed_many)
        self._engine_ahead = copy.copy(self._engine)  # same engine, tools refused: for turns run ahead
        self._engine_ahead._tools = NoToolsRouter(self._router)
        self._last: tuple[str, list[float]] | None = None
        self._notice = notice_lines(settings.consent_notice_on, settings.consent_notice)
        self._greeting = greeting_lines(settings.greeting)

    def _tool_called(self, tool: str, failed: bool) -> None:
        self._meters.inc("voice_tool_calls_total", {"tool": tool})
        if failed:
            self._meters.inc("voice_tool_failures_total", {"tool": tool})

    async def _embed_many(self, texts: list[str]) -> list[list[float]]:
        """Intent routing and the knowledge base both embed the turn's text: the second asks
        for the vector the first just got, so remember the last single text (one round trip
        to Embeddings per turn, not two)."""
        if len(texts) == 1 and self._last is not None and self._last[0] == texts[0]:
            return [self._last[1]]
        vectors = await self._embeddings.embed_many.remote(texts)
        if len(texts) == 1:
            self._last = (texts[0], vectors[0])
        return vectors

    async def respond(self, request: DialogueRequest) -> AsyncIterator[Sentence | TurnSummary]:
        """Stream each `Sentence` as the engine makes it, then one `TurnSummary`.

        A turn run ahead (the caller may not have finished) is answered only if it needs no
        tool and no escalation (nothing that cannot be taken back); else `refused`."""
        result, started, first = None, time.monotonic(), True
        engine = self._engine_ahead if request.run_ahead else self._engine
        history = [e.model_dump() for e in request.history]
        consent = consent_after(request.memory.get("consent"), request.transcript) if request.from_caller else None
        if consent == "declined":  # said first, then the request it came with, if any
            first = False
            yield Sentence(text=DECLINED_REPLY, engine_ms=round((time.monotonic() - started) * 1000, 1))
            if not carries_request(request.transcript):
                yield Sentence(text=self._greeting[-1])
                yield TurnSummary(intent="consent_declined", score=1.0, memory={**request.memory, "consent": consent})
                return
        try:
            stream = engine.stream(
                request.transcript, request.memory, request.session_id, request.caller_id, history, request.turn_id
            )
            async for item in stream:
                if isinstance(item, TurnResult):
                    result = item
                elif first:  # the engine's own time to its first sentence, hops excluded
                    first = False
                    yield Sentence(text=item, engine_ms=round((time.monotonic() - started) * 1000, 1))
                else:
                    yield Sentence(text=item)
        except RunAheadRefused:
            yield TurnSummary(refused=True)
            return
        if request.run_ahead and result.escalate:
            yield TurnSummary(refused=True)
            return
        if result.escalate:
            self._meters.inc("voice_escalations_total", {"reason": result.escalate})
            intent = {"intent": result.intent}
            await asyncio.to_thread(
                self._state.audit.record, request.session_id, "escalation", result.escalate, "escalated", 0.0, intent
            )
        await self._remember(result)
        memory = result.memory if consent is None else {**(result.memory or request.memory), "consent": consent}
        if result.tool_results or result.escalate:
            await self._link(request, result)
        yield TurnSummary(
            intent=result.intent,
            score=result.score,
            end_call=result.end_call,
            escalate=result.escalate,
            memory=memory,
            policy=result.policy,
            tool_results=result.tool_results,
            sensitive=result.sensitive,
            kb_confidence=result.kb_confidence,
            model=result.model,
            usage=result.usage,
        )

    async def _remember(self, result: TurnResult) -> None:
        """Keep what this turn leaves for the customer's next call; a store that fails costs nothing else."""
        if (kept := to_remember(result.memory, result.tool_results)) is not None:
            try:
                await asyncio.to_thread(self._state.customers.remember, kept[0], **kept[1])
            except Exception as exc:
                log.warning("could not remember customer state: %r", exc)

    async def _link(self, request: DialogueRequest, result: TurnResult) -> None:
        """Tie the session's audit entries to its caller and customer (by digest), so that
        `voice-agent customers forget` finds them after the call state has expired."""
        customer_id = (result.memory or {}).get("customer_id")
        try:
            await asyncio.to_thread(self._state.audit.link, request.session_id, request.caller_id, customer_id)
        except Exception as exc:
            log.warning("could not link the audit entries of a call: %r", exc)

    async def greeting(self) -> AsyncIterator[Sentence | TurnSummary]:
        """The recording notice first when it is on (the caller's next turn answers it)."""
        for sentence in [*self._notice, *self._greeting]:
            yield Sentence(text=sentence)
        yield TurnSummary(intent="greeting", score=1.0, memory={"consent": "pending"} if self._notice else None)


async def build_engine(settings: Settings, router: ToolRouter, kb: KnowledgeBase, embed_many):
    """The engine `VOICE_DIALOGUE_PROVIDER` names, behind the one `stream` interface."""
    policy = PolicyEngine(settings.max_consecutive_failures)
    wants_human = EscalationClassifier(embed_many) if embed_many is not None else None  # beside the policy's patterns
    if wants_human is not None:
        await wants_human.warm_up()
    if settings.dialogue_provider == "openai":
        import openai

        from deployments.dialogue.openai_engine import OpenAIDialogueEngine

        client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout=settings.turn_timeout_ms / 1000,
        )
        return OpenAIDialogueEngine(client, settings.openai_model, router, policy, wants_human=wants_human)
    classify = IntentClassifier(embed_many)
    await classify.warm_up()  # embed the intent examples before the first caller waits
    return SupportAgent(classify, router, kb, policy, settings.confidence_threshold, wants_human=wants_human)
