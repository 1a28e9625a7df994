"""Calls tools safely: a deadline per call, retries with backoff only for idempotent tools,
the shared circuit breaker, a fallback reply, and an audit record for every call.

A side-effecting tool (not idempotent) is never cut at its deadline: cancelling the await
does not stop the worker thread under it, which could still open the return while the
caller hears "nothing was changed". Past its deadline it is logged as slow and the caller
hears its real outcome; if the turn itself is cancelled meanwhile, the outcome still lands
in the audit trail when it comes.

Over the state store's parts (`deployments/state/`): an idempotent tool with `cache_ttl_s`
answers from the `cache` part that long (successes only), and a side-effecting tool with an
`idempotency_key` runs at most once per key through the `workflow` journal (`journal.py`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deployments.state.parts import Audit, Cache, Workflow
from deployments.tools.journal import Journaled
from models.state import ToolResult

log = logging.getLogger(__name__)


class Breaker(Protocol):
    async def allow(self, tool: str) -> bool: ...
    async def record(self, tool: str, ok: bool) -> None: ...


class StateParts(Protocol):
    """What the router uses of the state store (deployments.state.State)."""

    audit: Audit
    cache: Cache
    workflow: Workflow


@dataclass
class ToolSpec:
    name: str
    fn: Callable[..., Awaitable[dict]]
    idempotent: bool
    deadline_s: float = 2.0
    retries: int = 2  # extra attempts, idempotent tools only
    backoff_s: float = 0.1
    fallback: str = "I can't reach that system right now."
    cache_ttl_s: float = 0.0  # idempotent tools: a success is answered from the cache this long, by tool+args
    # Side-effecting tools: (session_id, turn_id, args) -> the key the workflow journal runs it once under.
    idempotency_key: Callable[[str, int | None, dict], str] | None = None


def per_turn(session_id: str, turn_id: int | None, args: dict) -> str:
    """One key per session, turn and arguments: the same turn retried finds its first run."""
    return digest([session_id, turn_id, args])


def digest(value) -> str:
    """A short stable digest (keys carry no personal data in clear)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ToolError(Exception):
    """A tool's own 'no': not found, not allowed. Not retried, not a breaker failure.

    `detail` goes back to the caller in the result's `output` (e.g. attempts left)."""

    def __init__(self, error: str, detail: dict | None = None):
        super().__init__(error)
        self.detail = detail


class RunAheadRefused(Exception):
    """A turn run ahead of the endpoint wanted a tool: it must wait for the real turn."""


class NoToolsRouter:
    """The router a run-ahead dialogue sees: specs readable, every call refused.

    A speculative turn may be thrown away, so it must not touch the world: no tool call,
    no audit record, no breaker count."""

    def __init__(self, router: ToolRouter):
        self._router = router

    def spec(self, name: str) -> ToolSpec:
        return self._router.spec(name)

    async def call(self, name: str, args: dict[str, Any], session_id: str = "", turn_id: int | None = None):
        raise RunAheadRefused(name)


class ToolRouter:
    def __init__(
        self,
        tools: list[ToolSpec],
        breaker: Breaker,
        state: StateParts | None = None,
        wait_s: float = 1.0,
        on_call: Callable[[str, bool], None] | None = None,
    ):
        """`state`: None keeps no audit, cache or journal. `wait_s`: how long a call that finds its
        key pending (another worker runs it) waits for that outcome before `in_progress`.
        `on_call(tool, failed)`: told of every call; failed: it did not get the tool's own answer
        (deadline, circuit open, the backend's error), not a "no" such as a wrong PIN."""
        self._tools = {t.name: t for t in tools}
        self._on_call = on_call or (lambda tool, failed: None)
        self._breaker = breaker
        self._audit = state.audit if state is not None else None
        self._cache = state.cache if state is not None else None
        self._journal = Journaled(state.workflow, wait_s, ToolError) if state is not None else None

    def spec(self, name: str) -> ToolSpec:
        return self._tools[name]

    @property
    def names(self) -> tuple[str, ...]:
        """The registry's tool names: the only values metrics label a tool with."""
        return tuple(self._tools)

    async def call(
        self, name: str, args: dict[str, Any], session_id: str = "", turn_id: int | None = None
    ) -> ToolResult:
        spec = self._tools.get(name)
        if spec is None:
            self._on_call(name, True)
            return ToolResult(tool=name, ok=False, error="unknown_tool")
        started = time.monotonic()
        if (hit := await self._cached(spec, args)) is not None:
            return self._done(session_id, spec, hit, started)
        key = None
        if spec.idempotency_key is not None and self._journal is not None and not spec.idempotent:
            key = f"{name}:{spec.idempotency_key(session_id, turn_id, args)}"
            if (earlier := await self._journal.claim(name, key)) is not None:
                return self._done(session_id, spec, earlier, started)
        if not await self._breaker.allow(name):
            if key is not None:
                await self._journal.abandon(key)
            return self._done(
                session_id, spec, ToolResult(tool=name, ok=False, error="circuit_open", attempts=0), started
            )
        attempts = 1 + (spec.retries if spec.idempotent else 0)
        error = "failed"
        for attempt in range(1, attempts + 1):
            try:
                output = await self._attempt(spec, args, session_id, started, key)
                await self._breaker.record(name, True)
                await self._keep(spec, args, output)
                return self._done(
                    session_id, spec, ToolResult(tool=name, ok=True, output=output, attempts=attempt), started
                )
            except ToolError as exc:
                await self._breaker.record(name, True)  # the backend answered
                result = ToolResult(tool=name, ok=False, error=str(exc), output=exc.detail or {}, attempts=attempt)
                return self._done(session_id, spec, result, started, refused=True)
            except TimeoutError:
                error = "deadline_exceeded"
            except Exception as exc:  # the backend failed
                error = f"error: {type(exc).__name__}"
            await self._breaker.record(name, False)
            if attempt < attempts:
                await asyncio.sleep(spec.backoff_s * 2 ** (attempt - 1))
                if not await self._breaker.allow(name):
                    error = "circuit_open"
                    break
        return self._done(session_id, spec, ToolResult(tool=name, ok=False, error=error, attempts=attempt), started)

    async def _cached(self, spec: ToolSpec, args: dict[str, Any]) -> ToolResult | None:
        """A success kept within its TTL; a cache that fails is a miss, never the tool's failure."""
        if not (spec.idempotent and spec.cache_ttl_s > 0 and self._cache is not None):
            return None
        try:
            output = await asyncio.to_thread(self._cache.get, f"{spec.name}:{digest(args)}")
        except Exception as exc:
            log.warning("tool cache unavailable for %s: %r", spec.name, exc)
            return None
        if output is None:
            return None
        return ToolResult(tool=spec.name, ok=True, output=output, attempts=0, source="cache")

    async def _keep(self, spec: ToolSpec, args: dict[str, Any], output: dict) -> None:
        if spec.idempotent and spec.cache_ttl_s > 0 and self._cache is not None:
            try:
                await asyncio.to_thread(self._cache.put, f"{spec.name}:{digest(args)}", output, spec.cache_ttl_s)
            except Exception as exc:
                log.warning("tool cache unavailable for %s: %r", spec.name, exc)

    async def _attempt(
        self, spec: ToolSpec, args: dict[str, Any], session_id: str, started: float, key: str | None = None
    ) -> dict:
        if spec.idempotent:
            return await asyncio.wait_for(spec.fn(**args), spec.deadline_s)
        task = asyncio.ensure_future(spec.fn(**args) if key is None else self._journal.run(spec.fn, args, key))
        try:
            try:
                return await asyncio.wait_for(asyncio.shield(task), spec.deadline_s)
            except TimeoutError:
                log.warning("tool %s passed its %.1f s deadline; waiting for its outcome", spec.name, spec.deadline_s)
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._late(session_id, spec, t, started))
            raise

    def _late(self, session_id: str, spec: ToolSpec, task: asyncio.Future, started: float) -> None:
        """The outcome of a side-effecting call whose turn was cancelled: audited all the same."""
        exc = None if task.cancelled() else task.exception()
        ok = not task.cancelled() and exc is None
        if ok:
            error = None
        elif task.cancelled():
            error = "cancelled"
        else:
            error = str(exc) if isinstance(exc, ToolError) else f"error: {type(exc).__name__}"
        log.warning("tool %s finished after its turn was cancelled: %s", spec.name, "ok" if ok else error)
        result = ToolResult(tool=spec.name, ok=ok, error=error, attempts=1)
        self._done(session_id, spec, result, started, refused=isinstance(exc, ToolError))

    def _done(
        self, session_id: str, spec: ToolSpec, result: ToolResult, started: float, refused: bool = False
    ) -> ToolResult:
        """`refused`: the tool's own "no" (ToolError), an answer and not a failure."""
        result.latency_ms = round((time.monotonic() - started) * 1000, 1)
        self._on_call(spec.name, not result.ok and not refused)
        if self._audit is not None:
            outcome = "ok" if result.ok else result.error or "failed"
            detail = {"attempts": result.attempts} | ({"source": result.source} if result.source != "live" else {})
            try:
                self._audit.record(session_id, "tool", spec.name, outcome, result.latency_ms, detail)
            except Exception as exc:  # the caller still gets the tool's real outcome
                log.error("audit record of tool %s lost: %r", spec.name, exc)
        return result
