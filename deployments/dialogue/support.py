"""The customer-support agent without an LLM: policy first, then intent handlers that use
tools (PIN check, order status, returns) and the knowledge base.

Per-call memory (authentication, counters, workflow slots) comes in with each turn and
goes back updated: the engine is stateless, the session actor owns the state.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deployments.dialogue.knowledge_answers import KnowledgeAnswers
from deployments.dialogue.pin_check import PinVerdict, check_pin
from deployments.dialogue.returns import ReturnsFlow, note_reason, resume_prompt, spell
from deployments.dialogue.text import split_sentences
from deployments.policy.cues import accepts_offer, volunteered_pin
from deployments.policy.engine import PolicyContext, PolicyEngine
from deployments.policy.language import announces_pin, asks_about_account, confirmation, is_question, mentions_return
from deployments.policy.slots import extract_order_number, extract_pin
from models.state import PolicyDecision, ToolResult

Classify = Callable[[str], Awaitable[tuple[str, float]]]
WantsHuman = Callable[[str], Awaitable[bool]]
NEEDS_AUTH = {"order_status", "returns"}

HANDOFF = {
    "caller_request": "Of course. I'm connecting you with a colleague now. Please hold.",
    "consecutive_failures": "I'm sorry I haven't been able to help. Let me connect you with a colleague who can.",
    # Said for the lockout of this call and the store's (across calls) alike: both are true then.
    "auth_locked": (
        "Too many wrong PINs have been tried, so I can't verify you by phone for now. "
        "I'm connecting you with a colleague who can help. Please hold."
    ),
    "low_confidence": "I'm not sure about that one, so I'm connecting you with a colleague. Please hold.",
}
PIN_PROMPT = "Please tell me your four digit PIN."
VERIFY_FIRST = {
    topic: f"I can help with {topic}. First I need to verify it's you." for topic in ("your order", "your return")
}
REFUSAL = (
    "Sorry, I can't help with that. I can check an order, start a return, "
    "or answer questions about shipping, returns, warranty and our hours."
)
CANNED = {
    "greeting": "Hello again. What can I do for you?",
    "thanks": "You're welcome. Is there anything else?",
    "help": (
        "I can check an order, start a return, or answer questions about shipping, returns, "
        "warranty and opening hours. What would you like to do?"
    ),
    "goodbye": "Thanks for calling. Goodbye.",
    "line_check": "Yes, I can hear you. How can I help?",
    "wait": "Of course, take your time. I'm here when you're ready.",
}
ASIDES = {"human", "goodbye", "line_check", "wait"}  # said mid-workflow, these are not its next answer
MEMORY_DEFAULTS = {
    "authenticated": False,
    "customer_id": None,
    "customer_name": None,
    "auth_failures": 0,
    "auth_locked": False,
    "consecutive_failures": 0,
    "slots": {},
}


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
    turn_id: int | None = None  # the Gateway's number for the turn: a side effect runs once per turn
    model: str | None = None  # the language model that answered, if one did (the trace's generation)
    usage: dict[str, int] | None = None  # its tokens over the turn

    def say(self, *sentences: str) -> TurnResult:
        self.sentences.extend(sentences)
        return self


class SupportAgent(ReturnsFlow, KnowledgeAnswers):
    def __init__(
        self,
        classify: Classify,
        tools,
        kb,
        policy: PolicyEngine,
        confidence_threshold: float = 0.6,
        max_auth_failures: int = 3,
        wants_human: WantsHuman | None = None,
    ):
        self._classify = classify
        self._wants_human = wants_human  # the embedding classifier for requests of a person, beside the patterns
        self._tools = tools
        self._kb = kb
        self._policy = policy
        self._threshold = confidence_threshold
        self._max_auth_failures = max_auth_failures

    async def stream(
        self,
        text: str,
        memory: dict,
        session_id: str = "",
        caller_id: str = "",
        history: list[dict] | None = None,
        turn_id: int | None = None,
    ):
        """The engines' common interface: reply sentences, then the TurnResult."""
        result = await self.respond(text, memory, session_id, caller_id, turn_id)
        for sentence in result.sentences:
            yield sentence
        yield result

    async def respond(
        self, text: str, memory: dict, session_id: str = "", caller_id: str = "", turn_id: int | None = None
    ) -> TurnResult:
        m = copy.deepcopy({**MEMORY_DEFAULTS, **(memory or {})})
        slots = m["slots"]
        awaiting = slots.get("awaiting")
        if awaiting == "pin" and (pin := extract_pin(text)):
            r = TurnResult([], "authenticate", m, sensitive=True, turn_id=turn_id)
            return await self._verify_pin(pin, r, session_id, caller_id)
        offer = slots.pop("offer", None)  # the agent's own offer of a transfer stands for one turn
        intent, score = await self._classify(text)
        order_id = extract_order_number(text)
        if order_id and (awaiting == "order_id" or intent not in NEEDS_AUTH):
            # an order number continues the order flow, or names the order of a return
            intent = "returns" if mentions_return(text) else slots.get("pending_intent", "order_status")
        workflow = slots.get("workflow")
        if intent == "returns" and not workflow:
            note_reason(slots, text)  # "...because they're too small": not asked again
        if intent == "wait":  # "hold on a sec": nothing changes, the agent's offer still stands
            if offer:
                slots["offer"] = offer
            return self._succeeded(TurnResult([CANNED["wait"]], intent, m, score=score))
        volunteered = awaiting is None and intent not in NEEDS_AUTH and volunteered_pin(text)
        if (
            not m["authenticated"]
            and (announces_pin(text) or volunteered)
            and (pin := extract_pin(text))
            and not self._policy.is_injection(text)
        ):
            # "My PIN is 1234, where's order 10042?": the PIN said up front, before it was asked for;
            # or four digits alone where no PIN was asked for ("Okay, four three two one"): a PIN too
            slots.update(pending_intent=intent if intent in NEEDS_AUTH else slots.get("pending_intent"))
            if order_id:
                slots["order_id"] = order_id
            r = TurnResult([], "authenticate", m, sensitive=True, turn_id=turn_id)
            return await self._verify_pin(pin, r, session_id, caller_id)
        r = TurnResult([], intent, m, score=score, turn_id=turn_id)
        wants_human = bool(self._wants_human and await self._wants_human(text))
        if offer == "transfer" and not is_question(text):
            said = confirmation(text)
            if said == "yes" and accepts_offer(text):  # a bare yes: "Okay. 1, 2, 3, 4." is a new turn
                wants_human = True
            elif said == "no" and not wants_human:
                return r.say("Okay. What else can I help you with?")
        # A question about our policies never needs a PIN, even with "my" in it ("how long does my
        # refund take"), and one asked mid-workflow is answered there: the workflow keeps its step.
        kb_first = (workflow or awaiting or intent in NEEDS_AUTH) and not order_id
        policy_question = kb_first and is_question(text) and not asks_about_account(text)
        answer = await self._kb_answer(text, r) if policy_question else None
        needs_auth = intent in NEEDS_AUTH and answer is None
        ctx = PolicyContext(m["authenticated"], m["auth_locked"], needs_auth, m["consecutive_failures"], wants_human)
        r.policy = self._policy.decide(text, ctx)
        if r.policy.action == "authenticate":
            return self._ask_pin(intent, text, r)
        if r.policy.action == "escalate":
            return self._escalate(r.policy.reason, r)
        if r.policy.action == "refuse":
            return self._failed(r.say(REFUSAL))
        if answer is not None:
            r.intent = "knowledge"
            return self._succeeded(r.say(*split_sentences(answer.text), *filter(None, [resume_prompt(slots)])))
        if workflow and intent not in ASIDES:
            intent = "returns"
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
        return r.say(VERIFY_FIRST["your return" if intent == "returns" else "your order"], PIN_PROMPT)

    async def _verify_pin(self, pin: str, r: TurnResult, session_id: str, caller_id: str) -> TurnResult:
        m, slots = r.memory, r.memory["slots"]
        outcome = await check_pin(self._tools, pin, caller_id, session_id, m, r.tool_results, self._max_auth_failures)
        if outcome.verdict is PinVerdict.LOCKED:
            slots.clear()
            return self._escalate("auth_locked", r)
        if outcome.verdict is PinVerdict.UNAVAILABLE:
            slots.pop("awaiting", None)
            return self._failed(r.say("I can't check your PIN right now. Please try again in a moment."))
        if outcome.verdict is PinVerdict.WRONG_PIN:
            left = outcome.attempts_left
            return r.say(
                "That PIN didn't match.",
                f"Please try again. You have {left} {'attempt' if left == 1 else 'attempts'} left.",
            )
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
        last_call = slots.pop("last_order", None)  # the order of the caller's last call: offered once
        order_id = extract_order_number(text) or slots.pop("order_id", None)
        remembered = not order_id and last_call is not None
        order_id = order_id or last_call
        if not order_id:
            slots.update(awaiting="order_id", pending_intent="order_status")
            return r.say("Which order is it? Please tell me the order number.")
        slots.pop("awaiting", None)
        found = await self._lookup(order_id, r, session_id)
        if found is None:
            return r
        r.intent = "order_status"
        which = f"from your last call, {spell(order_id)}" if remembered else spell(order_id)
        return self._succeeded(r.say(f"Your order {which}, the {found['item']}, is {found['status']}.", _eta(found)))

    async def _lookup(self, order_id: str, r: TurnResult, session_id: str) -> dict | None:
        result = await self._tools.call(
            "order_status", {"customer_id": r.memory["customer_id"], "order_id": order_id}, session_id
        )
        r.tool_results.append(result)
        if result.ok:
            return result.output
        if result.error == "not_found":
            r.memory["slots"].update(
                awaiting="order_id", pending_intent=r.memory["slots"].get("pending_intent", "order_status")
            )
            self._failed(
                r.say(f"I couldn't find order {spell(order_id)} on your account.", "Could you check the number?")
            )
        else:
            self._failed(r.say(self._tools.spec("order_status").fallback))
        return None

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
