"""The support tools the agent may call, over the support store, behind the router.

`create_return` is the one side effect: the router never cuts it at its deadline (it waits
for the real outcome) and the store opens at most one return per order."""

from __future__ import annotations

import asyncio

from deployments.tools.router import ToolError, ToolSpec
from deployments.tools.support_store import SupportStore


def support_tools(store: SupportStore) -> list[ToolSpec]:
    async def verify_pin(caller_id: str, pin: str, session_id: str = "") -> dict:
        """The store decides, across calls: `auth_locked` whatever the PIN while the customer is
        locked out (this failure may have locked them); an unknown caller reads as `wrong_pin`."""
        check = await asyncio.to_thread(store.check_pin, caller_id, pin, session_id)
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
        ),
        ToolSpec(
            "create_return",
            create_return,
            idempotent=False,
            deadline_s=3.0,
            fallback="I couldn't start the return just now.",
        ),
    ]
