"""Intent routing by embedding similarity to example phrases: the embedded engine's ears.

Anything that matches no intent well enough is a question for the knowledge base. Word cues
(`policy.cues`) back the nearest example where it is unsure: a clear return or order-status
request in words the examples lack ("I'm after sending back my boots"), a regional goodbye, a
"hold on a sec", a line check ("are you still there?").
"""

from __future__ import annotations

import math

from deployments.policy.cues import asks_to_wait, connectivity_check, farewell, lexical_intent
from deployments.policy.escalation import EmbedMany

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
    "greeting": ["hello", "hi there", "good morning", "hello, are you there", "can you hear me okay"],
    "thanks": [
        "thank you",
        "thanks a lot",
        "that's helpful thanks",
        "okay great, cheers",
        "perfect, thank you very much",
    ],
    "goodbye": ["goodbye", "bye bye", "that's all, goodbye", "I'm done, thanks, bye"],
}

GREETING = ["Hello, thanks for calling.", "How can I help you today?"]
# Below this the nearest example is a guess that a word cue overrules; above it, a cue only
# overrules intents that no request could be (a greeting before "I'd like to return...").
CUE_OVERRULES_BELOW = 0.55
_SOFT_INTENTS = {"unknown", "greeting", "help", "thanks", "faq"}


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
        intent = best_intent if best >= self._min_similarity else "unknown"
        return _with_cues(text, intent, best), round(best, 3)


def _with_cues(text: str, intent: str, score: float) -> str:
    """The embedding's intent, unless a word cue is clearer (see `CUE_OVERRULES_BELOW`)."""
    unsure = intent in _SOFT_INTENTS or score < CUE_OVERRULES_BELOW
    if cue := lexical_intent(text):
        return cue if unsure or intent not in ("order_status", "returns") and score < 0.7 else intent
    if intent in ("unknown", "greeting", "help", "human") or score < CUE_OVERRULES_BELOW:
        if connectivity_check(text):
            return "line_check"
        if asks_to_wait(text):
            return "wait"
    if intent != "goodbye" and farewell(text):
        return "goodbye"
    return intent
