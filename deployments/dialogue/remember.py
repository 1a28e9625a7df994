"""What a turn leaves for the customer's later calls (the state store's `customers` part): the
last order discussed and the call's locale, once the caller is verified. Engine-agnostic: read
from the turn's tool results, so the local agent and the LLM engine remember alike."""

from __future__ import annotations

ORDER_TOOLS = ("order_status", "create_return")


def to_remember(memory: dict, tool_results: list) -> tuple[str, dict] | None:
    """(customer_id, fields for `Customers.remember`), or None when there is nothing to keep."""
    if not memory.get("authenticated") or not memory.get("customer_id"):
        return None
    fields = {}
    for result in tool_results:
        if not result.ok:
            continue
        if result.tool == "verify_pin" and memory.get("locale"):
            fields["locale"] = memory["locale"]
        if result.tool in ORDER_TOOLS and result.output.get("order_id"):
            fields["last_order"] = str(result.output["order_id"])
    return (memory["customer_id"], fields) if fields else None
