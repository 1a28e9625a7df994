"""Intent routing by embedding similarity to example phrases: the embedded engine's ears.

Anything that matches no intent well enough is a question for the knowledge base.
"""

from __future__ import annotations

import math
from typing import Awaitable, Callable

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
        "I'd like to send something back",
        "start a return for me",
        "I want my money back for an order",
        "I'd like to exchange a product",
    ],
    "faq": [
        "what is your return policy",
        "how long does shipping take",
        "what does the warranty cover",
        "what are your opening hours",
        "do you ship abroad",
    ],
    "human": [
        "let me talk to a person",
        "transfer me to an agent",
        "I want to speak to a human",
        "connect me to a customer service representative",
    ],
    "help": ["what can you do", "what can you help me with", "I need some help"],
    "greeting": ["hello", "hi there", "good morning"],
    "thanks": ["thank you", "thanks a lot", "that's helpful thanks"],
    "goodbye": ["goodbye", "bye bye", "that's all, goodbye", "I'm done, thanks, bye"],
}

GREETING = ["Hello, thanks for calling.", "How can I help you today?"]


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b))


class IntentClassifier:
    def __init__(self, embed_many: EmbedMany, min_similarity: float = 0.42):
        self._embed_many = embed_many
        self._min_similarity = min_similarity
        self._examples: list[tuple[str, list[float]]] | None = None

    async def warm_up(self) -> None:
        if self._examples is None:
            phrases = [(intent, p) for intent, ps in INTENT_EXAMPLES.items() for p in ps]
            vectors = await self._embed_many([p for _, p in phrases])
            self._examples = [(intent, v) for (intent, _), v in zip(phrases, vectors)]

    async def __call__(self, text: str) -> tuple[str, float]:
        """(intent, similarity); intent is "unknown" under the similarity bar or for no text."""
        if not text.strip():
            return "unknown", 0.0
        await self.warm_up()
        [vector] = await self._embed_many([text])
        best_intent, best = "unknown", -1.0
        for intent, example in self._examples:
            score = _dot(vector, example)
            if score > best:
                best_intent, best = intent, score
        return (best_intent if best >= self._min_similarity else "unknown"), round(best, 3)
