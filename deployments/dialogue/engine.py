"""The embedded dialogue engine: no LLM, intent routing by embedding similarity.

It streams its reply sentence by sentence through the same interface an LLM engine uses,
so the gateway can start speaking the first sentence before the rest exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from deployments.dialogue.text import split_sentences

EmbedMany = Callable[[list[str]], Awaitable[list[list[float]]]]

INTENT_EXAMPLES: dict[str, list[str]] = {
    "order_status": [
        "where is my order",
        "I want to check the status of my order",
        "has my package shipped yet",
        "track my delivery",
        "my parcel has not arrived",
    ],
    "returns": [
        "I want to return an item",
        "how do I send something back",
        "can I get a refund",
        "I'd like to exchange a product",
        "I want my money back",
    ],
    "hours": [
        "what are your opening hours",
        "when are you open",
        "are you open on the weekend",
    ],
    "human": [
        "let me talk to a person",
        "transfer me to an agent",
        "I want to speak to a human",
        "get me a real person please",
        "connect me to a customer service representative",
    ],
    "help": [
        "what can you do",
        "what can you help me with",
        "I need some help",
    ],
    "greeting": ["hello", "hi there", "good morning"],
    "thanks": ["thank you", "thanks a lot", "that's helpful thanks"],
    "goodbye": ["goodbye", "bye bye", "that's all, goodbye", "I'm done, thanks, bye"],
}

REPLIES: dict[str, str] = {
    "order_status": "You'd like to check on an order. Please tell me your order number and I'll look it up.",
    "returns": "You'd like to return or exchange something. Tell me the order number and the reason, and I'll start the return.",
    "hours": "You're asking about our opening hours. We're open Monday to Friday, nine to six, and Saturday, ten to four.",
    "human": "You'd like to speak with a person. I'll note that for a colleague.",
    "help": "I can check an order, start a return, or answer questions about shipping and opening hours. What would you like to do?",
    "greeting": "Hello again. What can I do for you?",
    "thanks": "You're welcome. Is there anything else?",
    "goodbye": "Thanks for calling. Goodbye.",
}

GREETING = "Hello, thanks for calling. How can I help you today?"
NOT_HEARD = "Sorry, I didn't catch that. Could you say it again?"


@dataclass
class ReplyPlan:
    intent: str
    score: float
    sentences: list[str]
    end_call: bool = False


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b))


class LocalDialogueEngine:
    def __init__(self, embed_many: EmbedMany, min_similarity: float = 0.42):
        self._embed_many = embed_many
        self._min_similarity = min_similarity
        self._examples: list[tuple[str, list[float]]] | None = None

    async def warm_up(self) -> None:
        await self._ensure_examples()

    async def _ensure_examples(self) -> None:
        if self._examples is None:
            phrases = [(intent, p) for intent, ps in INTENT_EXAMPLES.items() for p in ps]
            vectors = await self._embed_many([p for _, p in phrases])
            self._examples = [(intent, v) for (intent, _), v in zip(phrases, vectors)]

    async def classify(self, text: str) -> tuple[str, float]:
        await self._ensure_examples()
        [vector] = await self._embed_many([text])
        best_intent, best = "unknown", -1.0
        for intent, example in self._examples:
            score = _dot(vector, example)
            if score > best:
                best_intent, best = intent, score
        return (best_intent if best >= self._min_similarity else "unknown"), round(best, 3)

    async def plan(self, transcript: str) -> ReplyPlan:
        text = transcript.strip()
        if not text:
            return ReplyPlan("none", 0.0, [NOT_HEARD])
        intent, score = await self.classify(text)
        if intent == "unknown":
            heard = text.rstrip(".!?")
            sentences = [f"I heard you say: {heard}.", "I'm not sure I can help with that yet. Could you tell me a bit more?"]
        else:
            sentences = split_sentences(REPLIES[intent])
        return ReplyPlan(intent, score, sentences, end_call=intent == "goodbye")

    async def greeting(self) -> AsyncIterator[str]:
        for sentence in split_sentences(GREETING):
            yield sentence
