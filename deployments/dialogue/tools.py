"""The support tools the agent may call, over the support store, behind the router."""

from __future__ import annotations

import asyncio

from deployments.tools.router import ToolError, ToolSpec
from deployments.tools.support_store import SupportStore


def support_tools(store: SupportStore) -> list[ToolSpec]:
    async def verify_pin(caller_id: str, pin: str) -> dict:
        customer = await asyncio.to_thread(store.verify_pin, caller_id, pin)
        if customer is None:
            raise ToolError("wrong_pin")
        return customer

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
        ToolSpec("verify_pin", verify_pin, idempotent=True, deadline_s=2.0, fallback="I can't check your PIN right now."),
        ToolSpec("order_status", order_status, idempotent=True, deadline_s=2.0, fallback="I can't reach our order system right now. Please try again in a few minutes."),
        ToolSpec("create_return", create_return, idempotent=False, deadline_s=3.0, fallback="I couldn't start the return just now."),
    ]
