"""Dialogue through any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp).

The same policy runs first (prompt injection never reaches the model); the model sees tool
schemas and streams its answer, which is cut into sentences as it arrives. Tool calls take
the two-call flow (call, then answer with the results), capped at `max_tool_steps`. The
caller's identity is never taken from the model: tools get it from the session.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator

from common.pii import mask_pii
from deployments.dialogue.pin_check import PinVerdict, check_pin
from deployments.dialogue.support import HANDOFF, MEMORY_DEFAULTS, REFUSAL, TurnResult
from deployments.dialogue.text import split_sentences
from deployments.policy.engine import PolicyContext, PolicyEngine
from deployments.policy.language import confirmation
from deployments.tools.router import RunAheadRefused
from models.state import ToolResult

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a customer-support voice agent for an online shop, speaking on the phone. "
    "Answer in one to three short sentences written for the ear: no lists, no markdown, no emoji, "
    "numbers spoken plainly. Never invent order data: use the tools. Order and return questions need "
    "the caller's four-digit PIN: ask for it, then call verify_pin. Before opening a return, name the "
    "order and the kind of reason and get a clear yes. Never read the caller's own words back to them. "
    "If the caller wants a person, call escalate_to_human."
)
TOOL_SCHEMAS = [
    {
        "type": "function",
        "function": {
            "name": "verify_pin",
            "description": "Check the caller's four-digit PIN.",
            "parameters": {
                "type": "object",
                "properties": {"pin": {"type": "string", "pattern": "^[0-9]{4}$"}},
                "required": ["pin"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "order_status",
            "description": "Status of one of the verified caller's orders.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "create_return",
            "description": "Open a return, only after the caller confirmed.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["order_id", "reason"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "escalate_to_human",
            "description": "Hand the call to a human colleague.",
            "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": []},
        },
    },
]
ACCOUNT_TOOLS = {"order_status", "create_return"}
_REQUIRED = {t["function"]["name"]: t["function"]["parameters"].get("required", []) for t in TOOL_SCHEMAS}
TOO_MANY_STEPS = "Sorry, I'm having trouble with that request. Could you put it another way?"
MODEL_DOWN = "Sorry, I'm having trouble answering right now. Please try again in a moment."


class OpenAIDialogueEngine:
    def __init__(
        self,
        client,
        model: str,
        tools,
        policy: PolicyEngine,
        max_tool_steps: int = 3,
        max_auth_failures: int = 3,
        wants_human=None,
    ):
        self._client = client  # openai.AsyncOpenAI, base_url pointing at any compatible server
        self._wants_human = wants_human  # the same embedding classifier as the local engine's, beside the patterns
        self._model = model
        self._tools = tools
        self._policy = policy
        self._max_steps = max_tool_steps
        self._max_auth_failures = max_auth_failures

    async def stream(
        self,
        text: str,
        memory: dict,
        session_id: str = "",
        caller_id: str = "",
        history: list[dict] | None = None,
        turn_id: int | None = None,
    ) -> AsyncIterator:
        """Yield reply sentences as the model produces them, then the TurnResult."""
        m = copy.deepcopy({**MEMORY_DEFAULTS, **(memory or {})})
        r = TurnResult([], "llm", m, turn_id=turn_id, model=self._model)
        wants_human = bool(self._wants_human and await self._wants_human(text))
        ctx = PolicyContext(m["authenticated"], m["auth_locked"], False, m["consecutive_failures"], wants_human)
        r.policy = self._policy.decide(text, ctx)
        if r.policy.action in ("escalate", "refuse"):
            if r.policy.action == "escalate":
                r.escalate, r.end_call, r.intent = r.policy.reason, True, "escalation"
            sentence = HANDOFF.get(r.policy.reason, REFUSAL) if r.policy.action == "escalate" else REFUSAL
            r.sentences.append(sentence)
            yield sentence
            yield r
            return
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for turn in (history or [])[-10:]:
            messages += [{"role": "user", "content": turn["user"]}, {"role": "assistant", "content": turn["agent"]}]
        messages.append({"role": "user", "content": text})
        try:
            for step in range(self._max_steps + 1):
                offer_tools = step < self._max_steps  # the last call must answer in words
                tool_calls = []
                async for item in self._completion(messages, offer_tools, r):
                    if isinstance(item, str):
                        r.sentences.append(item)
                        yield item
                    else:
                        tool_calls = item
                if not tool_calls:
                    break
                if not offer_tools:
                    r.sentences.append(TOO_MANY_STEPS)
                    yield TOO_MANY_STEPS
                    break
                messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
                for call in tool_calls:
                    output = await self._run_tool(call, r, session_id, caller_id, text)
                    messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(output)})
                if r.escalate:
                    break
        except RunAheadRefused:
            raise
        except Exception as exc:  # the model server failed: say so, count it, keep the call
            log.warning("chat completion failed: %r", exc)
            r.memory["consecutive_failures"] += 1
            r.sentences.append(MODEL_DOWN)
            yield MODEL_DOWN
            yield r
            return
        if r.escalate:
            r.sentences.append(HANDOFF[r.escalate])
            yield HANDOFF[r.escalate]
        r.memory["consecutive_failures"] = 0 if r.sentences else r.memory["consecutive_failures"] + 1
        yield r

    async def _completion(self, messages: list[dict], tools: bool, r: TurnResult) -> AsyncIterator:
        """Stream one completion: sentences (str) as they complete, then the tool calls (list); its
        token usage (the stream's last chunk, when the server sends one) is added to the turn's."""
        kwargs = {"tools": TOOL_SCHEMAS} if tools else {}
        stream = await self._client.chat.completions.create(
            model=self._model, messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs
        )
        buffer, calls = "", {}
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                add_usage(r, chunk.usage)
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                buffer += delta.content
                *done, buffer = split_sentences(buffer + "\x00") or [""]
                buffer = buffer.rstrip("\x00")
                for sentence in done:
                    yield sentence
            for tc in delta.tool_calls or []:
                slot = calls.setdefault(
                    tc.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = tc.id or slot["id"]
                if tc.function and tc.function.name:
                    slot["function"]["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["function"]["arguments"] += tc.function.arguments
        if buffer.strip():
            yield buffer.strip()
        if calls:
            yield [calls[i] for i in sorted(calls)]

    async def _run_tool(self, call: dict, r: TurnResult, session_id: str, caller_id: str, said: str = "") -> dict:
        name = call["function"]["name"]
        try:
            args = json.loads(call["function"]["arguments"] or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            missing = [k for k in _REQUIRED.get(name, ()) if not str(args.get(k, "")).strip()]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except ValueError as exc:
            r.tool_results.append(ToolResult(tool=name, ok=False, error="invalid_arguments"))
            return {"error": f"invalid_arguments: {exc}"}
        m = r.memory
        if name == "escalate_to_human":
            r.escalate, r.end_call, r.intent = "caller_request", True, "escalation"
            return {"ok": True}
        if name == "verify_pin":
            if m["auth_locked"]:
                return {"error": "locked: too many wrong PINs, escalate to a human"}
            r.sensitive = True
            pin, most = str(args.get("pin", "")), self._max_auth_failures
            outcome = await check_pin(self._tools, pin, caller_id, session_id, m, r.tool_results, most)
            if outcome.verdict is PinVerdict.LOCKED:
                r.escalate, r.end_call, r.intent = "auth_locked", True, "escalation"
                if outcome.by_store:
                    return {"verified": False, "error": "locked: too many wrong PINs, the call goes to a human"}
            if outcome.verdict is PinVerdict.VERIFIED:  # with what earlier calls left, for the model to offer
                kept = {k: r.tool_results[-1].output.get(k) for k in ("last_order", "locale")}
                return {"verified": True, "name": outcome.name} | {k: v for k, v in kept.items() if v}
            if outcome.verdict is PinVerdict.UNAVAILABLE:
                return {"error": outcome.error}
            # a wrong PIN (what the store still allows), or this call's last one (the call goes to a human)
            return {"verified": False, "attempts_left": outcome.attempts_left}
        if name in ACCOUNT_TOOLS:
            if not m["authenticated"]:
                return {"error": "not_authenticated: ask the caller for their four-digit PIN first"}
            if name == "create_return" and confirmation(said) != "yes":
                # The side effect needs the caller's clear yes in this very turn, as in the local engine:
                # "No, don't do it" or "yes... no, wait" never opens a return, whatever the model read.
                r.tool_results.append(ToolResult(tool=name, ok=False, error="not_confirmed"))
                return {"error": "not_confirmed: repeat the order and reason and ask the caller for a clear yes or no"}
            args = {k: str(v) for k, v in args.items() if k in ("order_id", "reason")}
            if "reason" in args:
                args["reason"] = mask_pii(args["reason"])[:200]  # stored: masked, as the local engine does
            args = {"customer_id": m["customer_id"], **args}
            result = await self._tools.call(name, args, session_id, turn_id=r.turn_id)
            r.tool_results.append(result)
            return result.output if result.ok else {"error": result.error}
        r.tool_results.append(ToolResult(tool=name, ok=False, error="unknown_tool"))
        return {"error": f"unknown tool {name}"}


def add_usage(r: TurnResult, usage) -> None:
    """A completion's tokens added to the turn's, in Langfuse's usage names."""
    total = r.usage if r.usage is not None else {"input": 0, "output": 0, "total": 0}
    total["input"] += usage.prompt_tokens or 0
    total["output"] += usage.completion_tokens or 0
    total["total"] += usage.total_tokens or 0
    r.usage = total
