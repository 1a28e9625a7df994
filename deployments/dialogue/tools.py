"""The support tools the agent may call, over the support backend, behind the router.

`create_return` is the one side effect: the router never cuts it at its deadline (it waits
for the real outcome), runs it once per turn through the workflow journal (a turn retried
after its session actor died gets the first run's answer), and the backend opens at most one
return per order. `order_status` answers from the cache for `cache_ttl_s` (VOICE_TOOL_CACHE_TTL_S).
"""

from __future__ import annotations

import asyncio

from deployments.tools.pin_guard import PinGuard
from deployments.tools.router import ToolError, ToolRouter, ToolSpec, per_turn
from deployments.tools.support_store import SupportStore


def support_tools(store: SupportStore, pins: PinGuard, cache_ttl_s: float = 60.0) -> list[ToolSpec]:
    async def verify_pin(caller_id: str, pin: str, session_id: str = "") -> dict:
        """The guard decides, across calls: `auth_locked` whatever the PIN while the customer is
        locked out (this failure may have locked them); an unknown caller reads as `wrong_pin`."""
        check = await asyncio.to_thread(pins.check_pin, caller_id, pin, session_id)
        if check.outcome == "locked":
            raise ToolError("auth_locked", {"locked_until": check.locked_until})
        if check.customer is None:
            left = {"attempts_left": check.attempts_left} if check.attempts_left is not None else None
            raise ToolError("wrong_pin", left)
        return check.customer

    async def order_status(customer_id: str, order_id: str) -> dict:
        order = await asyncio.to_thread(store.order, customer_id, order_id)
        if order is None:
            raise ToolError("not_found")
        return order

    async def create_return(customer_id: str, order_id: str, reason: str) -> dict:
        created = await asyncio.to_thread(store.create_return, customer_id, order_id, reason)
        if created is None:
            raise ToolError("not_found")
        return created

    return [
        ToolSpec(
            "verify_pin", verify_pin, idempotent=True, deadline_s=2.0, fallback="I can't check your PIN right now."
        ),
        ToolSpec(
            "order_status",
            order_status,
            idempotent=True,
            deadline_s=2.0,
            fallback="I can't reach our order system right now. Please try again in a few minutes.",
            cache_ttl_s=cache_ttl_s,
        ),
        ToolSpec(
            "create_return",
            create_return,
            idempotent=False,
            deadline_s=3.0,
            fallback="I couldn't start the return just now.",
            idempotency_key=per_turn,
        ),
    ]


def support_router(
    store: SupportStore, state, breaker, pins: PinGuard | None = None, cache_ttl_s: float = 60.0, on_call=None
):
    """The support tools behind the router, over the backend and the state store's parts
    (`state`: deployments.state.State). `pins`: None guards PINs with the VOICE_PIN_* settings.
    `on_call(tool, failed)`: the router's metrics hook."""
    pins = pins or PinGuard(store, state.customers, state.audit)
    return ToolRouter(support_tools(store, pins, cache_ttl_s), breaker, state, on_call=on_call)
