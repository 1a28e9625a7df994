"""A side-effecting tool run at most once per idempotency key, through the `workflow` part.

The key (session, turn, arguments) is claimed pending before the call and marked done with
the tool's answer after it. A turn retried after its session actor died asks again with the
same key: done, it gets the journaled answer; still pending (another worker is running it),
it waits a moment, then reports `in_progress`; it never runs the side effect itself. A call
that failed (the backend never answered) gives its key back, as nothing was changed; a
refusal (not found) is journaled like an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from deployments.state.parts import JournalEntry, Workflow
from models.state import ToolResult

log = logging.getLogger(__name__)
POLL_S = 0.05


class Journaled:
    def __init__(self, workflow: Workflow, wait_s: float, refusal: type[Exception]):
        """`refusal`: the tool's own "no" (ToolError, with its `detail`), journaled as an answer."""
        self._workflow, self._wait_s, self._refusal = workflow, wait_s, refusal

    async def claim(self, tool: str, key: str) -> ToolResult | None:
        """None: this call holds `key` and runs the tool. Otherwise the earlier run's outcome."""
        try:
            entry = await asyncio.to_thread(self._workflow.begin, key)
        except Exception as exc:  # without the journal, once-only cannot be promised: refuse
            log.warning("workflow journal unavailable for %s: %r", tool, exc)
            return ToolResult(tool=tool, ok=False, error="journal_unavailable", attempts=0)
        if entry is None:
            return None
        deadline = time.monotonic() + self._wait_s
        while entry is not None and entry.status == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            entry = await self._get(key, entry)
        return replay(tool, entry)

    async def _get(self, key: str, last: JournalEntry) -> JournalEntry | None:
        try:
            return await asyncio.to_thread(self._workflow.get, key)
        except Exception as exc:
            log.warning("workflow journal unavailable: %r", exc)
            return last

    async def run(self, fn: Callable[..., Awaitable[dict]], args: dict, key: str) -> dict:
        """The tool under a claimed key; its outcome is journaled even if the turn is cancelled
        meanwhile (the router runs this as its own task)."""
        try:
            output = await fn(**args)
        except Exception as exc:
            if isinstance(exc, self._refusal):
                detail = getattr(exc, "detail", None) or {}
                await self._write(self._workflow.finish, key, {"ok": False, "error": str(exc), "output": detail})
            else:
                await self.abandon(key)
            raise
        await self._write(self._workflow.finish, key, {"ok": True, "output": output})
        return output

    async def abandon(self, key: str) -> None:
        await self._write(self._workflow.abandon, key)

    async def _write(self, op: Callable, *args) -> None:
        """A journal write that fails is logged: the tool's real outcome still goes to the caller."""
        try:
            await asyncio.to_thread(op, *args)
        except Exception as exc:
            log.warning("workflow journal write failed: %r", exc)


def replay(tool: str, entry: JournalEntry | None) -> ToolResult:
    """The earlier run's outcome as this call's result."""
    if entry is None:  # it failed meanwhile and gave its key back: nothing was changed
        return ToolResult(tool=tool, ok=False, error="failed", attempts=0, source="journal")
    if entry.status == "pending":
        return ToolResult(tool=tool, ok=False, error="in_progress", attempts=0, source="journal")
    r = entry.result or {}
    output, error = r.get("output") or {}, r.get("error")
    return ToolResult(tool=tool, ok=bool(r.get("ok")), output=output, error=error, attempts=0, source="journal")
