"""The customer-support agent without an LLM: policy first, then intent handlers that use
tools (PIN check, order status, returns) and the knowledge base.

Per-call memory (authentication, counters, workflow slots) comes in with each turn and
goes back updated: the engine is stateless, the session actor owns the state.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from deployments.policy.engine import PolicyContext, PolicyEngine
from deployments.policy.slots import extract_order_number, extract_pin
from models.state import PolicyDecision, ToolResult
from deployments.dialogue.text import split_sentences
from serve_app.pii import mask_pii

Classify = Callable[[str], Awaitable[tuple[str, float]]]
NEEDS_AUTH = {"order_status", "returns"}

HANDOFF = {
    "caller_request": "Of course. I'm connecting you with a colleague now. Please hold.",
    "consecutive_failures": "I'm sorry I haven't been able to help. Let me connect you with a colleague who can.",
    "auth_locked": "I couldn't verify your PIN, so I'm connecting you with a colleague who can help. Please hold.",
    "low_confidence": "I'm not sure about that one, so I'm connecting you with a colleague. Please hold.",
}
REFUSAL = "Sorry, I can't help with that. I can check an order, start a return, or answer questions about shipping, returns, warranty and our hours."
CANNED = {
    "greeting": "Hello again. What can I do for you?",
    "thanks": "You're welcome. Is there anything else?",
    "help": "I can check an order, start a return, or answer questions about shipping, returns, warranty and opening hours. What would you like to do?",
    "goodbye": "Thanks for calling. Goodbye.",
}
_YES = re.compile(r"\b(yes|yeah|yep|sure|correct|go ahead|please do|do it|that's right|ok(ay)?)\b", re.I)
_GENERAL_QUESTION = re.compile(r"^\s*(how|what|when|where|which|why|do you|does|is|are|can i|can you|could i)\b", re.I)
_NO = re.compile(r"\b(no|nope|don't|do not|cancel|stop|never mind|wait)\b", re.I)
MEMORY_DEFAULTS = {
    "authenticated": False,
    "customer_id": None,
    "customer_name": None,
    "auth_failures": 0,
    "auth_locked": False,
    "consecutive_failures": 0,
    "slots": {},
}


def spell(digits: str) -> str:
    """Digits read one by one, as people say order numbers."""
    return " ".join(digits)


@dataclass
class TurnResult:
    sentences: list[str]
    intent: str
    memory: dict
    score: float = 0.0
    policy: PolicyDecision = field(default_factory=PolicyDecision)
    tool_results: list[ToolResult] = field(default_factory=list)
    escalate: str | None = None
    end_call: bool = False
    sensitive: bool = False  # the caller said a secret (a PIN): keep the transcript out of the store
    kb_confidence: float | None = None

    def say(self, *sentences: str) -> "TurnResult":
        self.sentences.extend(sentences)
        return self


class SupportAgent:
    def __init__(self, classify: Classify, tools, kb, policy: PolicyEngine, confidence_threshold: float = 0.6, max_auth_failures: int = 3):
        self._classify = classify
        self._tools = tools
        self._kb = kb
        self._policy = policy
        self._threshold = confidence_threshold
        self._max_auth_failures = max_auth_failures

    async def stream(self, text: str, memory: dict, session_id: str = "", caller_id: str = "", history: list[dict] | None = None):
        """The engines' common interface: reply sentences, then the TurnResult."""
        result = await self.respond(text, memory, session_id, caller_id)
        for sentence in result.sentences:
            yield sentence
        yield result

    async def respond(self, text: str, memory: dict, session_id: str = "", caller_id: str = "") -> TurnResult:
        m = copy.deepcopy({**MEMORY_DEFAULTS, **(memory or {})})
        slots = m["slots"]
        awaiting = slots.get("awaiting")
        if awaiting == "pin" and (pin := extract_pin(text)):
            r = TurnResult([], "authenticate", m, sensitive=True)
            return await self._verify_pin(pin, r, session_id, caller_id)
        intent, score = await self._classify(text)
        if extract_order_number(text) and (awaiting == "order_id" or intent == "unknown"):
            intent = slots.get("pending_intent", "order_status")  # a bare order number continues the order flow
        workflow = slots.get("workflow")
        if workflow and intent not in ("human", "goodbye"):
            intent = "returns"
        r = TurnResult([], intent, m, score=score)
        general = _GENERAL_QUESTION.match(text) and not re.search(r"\bmy\b", text, re.I) and not extract_order_number(text)
        if intent in NEEDS_AUTH and not workflow and general:
            # "how long do I have to send something back" asks about the policy, not an account
            if await self._answer_from_kb(text, r):
                return r
        ctx = PolicyContext(m["authenticated"], m["auth_locked"], intent in NEEDS_AUTH, m["consecutive_failures"])
        r.policy = self._policy.decide(text, ctx)
        if r.policy.action == "authenticate":
            return self._ask_pin(intent, text, r)
        if r.policy.action == "escalate":
            return self._escalate(r.policy.reason, r)
        if r.policy.action == "refuse":
            return self._failed(r.say(REFUSAL))
        return await self._handle(intent, text, r, session_id)

    # --- handlers ------------------------------------------------------------

    async def _handle(self, intent: str, text: str, r: TurnResult, session_id: str) -> TurnResult:
        if intent == "order_status":
            return await self._order_status(text, r, session_id)
        if intent == "returns":
            return await self._returns(text, r, session_id)
        if intent in CANNED:
            r.end_call = intent == "goodbye"
            return self._succeeded(r.say(CANNED[intent]))
        return await self._knowledge(text, r)

    def _ask_pin(self, intent: str, text: str, r: TurnResult) -> TurnResult:
        slots = r.memory["slots"]
        slots.update(awaiting="pin", pending_intent=intent)
        if order_id := extract_order_number(text):
            slots["order_id"] = order_id
        topic = "your return" if intent == "returns" else "your order"
        return r.say(f"I can help with {topic}. First I need to verify it's you.", "Please tell me your four digit PIN.")

    async def _verify_pin(self, pin: str, r: TurnResult, session_id: str, caller_id: str) -> TurnResult:
        m, slots = r.memory, r.memory["slots"]
        result = await self._tools.call("verify_pin", {"caller_id": caller_id, "pin": pin}, session_id)
        r.tool_results.append(result)
        if not result.ok and result.error != "wrong_pin":
            slots.pop("awaiting", None)
            return self._failed(r.say("I can't check your PIN right now. Please try again in a moment."))
        if not result.ok:
            m["auth_failures"] += 1
            if m["auth_failures"] >= self._max_auth_failures:
                m["auth_locked"] = True
                slots.clear()
                return self._escalate("auth_locked", r)
            left = self._max_auth_failures - m["auth_failures"]
            return r.say("That PIN didn't match.", f"Please try again. You have {left} {'attempt' if left == 1 else 'attempts'} left.")
        m.update(authenticated=True, customer_id=result.output["customer_id"], customer_name=result.output["name"], auth_failures=0)
        slots.pop("awaiting", None)
        pending = slots.pop("pending_intent", None)
        r.say(f"Thanks, {m['customer_name']}, you're verified.")
        if pending == "order_status":
            return await self._order_status("", r, session_id)
        if pending == "returns":
            return await self._returns("", r, session_id)
        return self._succeeded(r.say("What can I do for you?"))

    async def _order_status(self, text: str, r: TurnResult, session_id: str) -> TurnResult:
        slots = r.memory["slots"]
        order_id = extract_order_number(text) or slots.pop("order_id", None)
        if not order_id:
            slots.update(awaiting="order_id", pending_intent="order_status")
            return r.say("Which order is it? Please tell me the order number.")
        slots.pop("awaiting", None)
        found = await self._lookup(order_id, r, session_id)
        if found is None:
            return r
        r.intent = "order_status"
        return self._succeeded(r.say(f"Your order {spell(order_id)}, the {found['item']}, is {found['status']}.", _eta(found)))

    async def _lookup(self, order_id: str, r: TurnResult, session_id: str) -> dict | None:
        result = await self._tools.call("order_status", {"customer_id": r.memory["customer_id"], "order_id": order_id}, session_id)
        r.tool_results.append(result)
        if result.ok:
            return result.output
        if result.error == "not_found":
            r.memory["slots"].update(awaiting="order_id", pending_intent=r.memory["slots"].get("pending_intent", "order_status"))
            self._failed(r.say(f"I couldn't find order {spell(order_id)} on your account.", "Could you check the number?"))
        else:
            self._failed(r.say(self._tools.spec("order_status").fallback))
        return None

    async def _returns(self, text: str, r: TurnResult, session_id: str) -> TurnResult:
        """Collect the order, then the reason, confirm, and only then open the return."""
        slots = r.memory["slots"]
        wf = slots.setdefault("workflow", {"name": "return", "step": "order"})
        r.intent = "returns"
        if wf["step"] == "order":
            order_id = extract_order_number(text) or slots.pop("order_id", None)
            if not order_id:
                return r.say("Which order would you like to return? Please tell me the order number.")
            found = await self._lookup(order_id, r, session_id)
            if found is None:
                return r
            slots.pop("awaiting", None)
            wf.update(step="reason", order_id=order_id, item=found["item"])
            return self._succeeded(r.say(f"Okay, the {found['item']} from order {spell(order_id)}.", "Why are you returning it?"))
        if wf["step"] == "reason":
            wf.update(step="confirm", reason=text.strip().rstrip(".!?")[:200])
            return self._succeeded(
                r.say(f"To confirm: return the {wf['item']} from order {spell(wf['order_id'])}, because {wf['reason']}.", "Shall I go ahead?")
            )
        # step == "confirm"
        if _NO.search(text) and not _YES.search(text):
            slots.pop("workflow", None)
            return self._succeeded(r.say("Okay, I won't start the return. Is there anything else?"))
        if not _YES.search(text):
            return r.say("Sorry, shall I start the return? Please say yes or no.")
        args = {"customer_id": r.memory["customer_id"], "order_id": wf["order_id"], "reason": wf["reason"]}
        result = await self._tools.call("create_return", args, session_id)
        r.tool_results.append(result)
        slots.pop("workflow", None)
        if not result.ok:
            return self._failed(r.say("I couldn't start the return just now. Nothing was changed; please try again later."))
        return self._succeeded(
            r.say(f"Done. Your return reference is {spell(result.output['return_id'].split('-')[0])}.", "We'll email you a prepaid return label.")
        )

    async def _answer_from_kb(self, text: str, r: TurnResult) -> bool:
        """Answer from the knowledge base if it is confident enough; note the confidence."""
        answer = await self._kb.answer(text) if self._kb is not None else None
        r.kb_confidence = answer.confidence if answer else 0.0
        if answer is None or answer.confidence < self._threshold:
            return False
        r.intent = "knowledge"
        self._succeeded(r.say(*split_sentences(answer.text)))  # one TTS request per sentence
        return True

    async def _knowledge(self, text: str, r: TurnResult) -> TurnResult:
        if await self._answer_from_kb(text, r):
            return r
        if r.memory["consecutive_failures"] + 1 >= self._policy.max_consecutive_failures:
            return self._escalate("low_confidence", r)
        heard = text.strip().rstrip(".!?")
        echo = [f"I heard: {heard}."] if mask_pii(heard) == heard else []  # never read personal data back
        return self._failed(r.say(*echo, "I'm not sure I know the answer to that. Could you put it another way, or shall I transfer you to a colleague?"))

    # --- outcomes ------------------------------------------------------------

    def _escalate(self, reason: str, r: TurnResult) -> TurnResult:
        r.escalate, r.end_call, r.intent = reason, True, "escalation"
        r.memory["slots"].pop("workflow", None)
        return r.say(HANDOFF[reason])

    @staticmethod
    def _succeeded(r: TurnResult) -> TurnResult:
        r.memory["consecutive_failures"] = 0
        return r

    @staticmethod
    def _failed(r: TurnResult) -> TurnResult:
        r.memory["consecutive_failures"] += 1
        return r


def _eta(order: dict) -> str:
    if order["status"] == "delivered":
        return f"It was delivered {order['eta']}."
    return f"It should arrive {order['eta']}."
