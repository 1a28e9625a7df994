"""A request for a person recognised by meaning, beside the patterns in `engine.py`.

Nearest labelled example over MiniLM sentence embeddings: the turn is a request when its
closest request example is similar enough and clearly closer than every example of the
near misses, sentences that mention people without asking for one ("my boss told me to ask
about delivery", "does someone have to sign for it"). The near misses keep the margin honest
where a bare similarity bar would fire on any sentence with "manager" in it, and a sentence
that names no person at all (a line check: "are you still there?") is never a request.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from deployments.policy.cues import connectivity_check
from deployments.policy.language import SCAN_CHARS, negated_request, words

EmbedMany = Callable[[list[str]], Awaitable[list[list[float]]]]  # texts in, vectors out (also for dialogue, knowledge)

REQUESTS = [
    "let me talk to a person",
    "I want to speak to a human",
    "transfer me to a live agent",
    "connect me with a customer service representative",
    "can I speak to your manager please",
    "get me a supervisor",
    "I would like to talk to someone from your team",
    "is there a real person I can talk to",
    "I don't want to talk to a machine",
    "I need a human being, not a robot",
    "put me through to an operator",
    "I need to speak with someone in charge",
    "you're a bot, get me someone real",
    "I'd prefer to speak to an actual person",
    "hand me over to one of your colleagues",
    "escalate this to your supervisor",
    "I want to complain to a manager",
    "this robot is useless, I want a real agent",
    "can someone from customer service take over",
    "I'd rather deal with a person",
    "can I be transferred to somebody",
    "I want a member of staff to call me back",
    "this automated system is no help, let me speak to your staff",
]
NEAR_MISSES = [
    "my boss told me to ask about delivery times",
    "a colleague recommended your shop to me",
    "will someone bring the parcel to my door",
    "does a person have to sign for the delivery",
    "the agent I spoke with last week was very helpful",
    "the delivery driver left it with my neighbour",
    "I'm calling on behalf of my manager",
    "my husband placed the order for me",
    "someone stole my parcel from the porch",
    "I spoke to somebody yesterday about this return",
    "is the warranty claim checked by a person",
    "I'd like to speak about my order",
    "can I talk about the refund",
    "who do I send the item back to",
    "my supervisor needs an invoice",
    "what can you help me with",
    "where is my order",
    "I want to return an item",
    "what are your opening hours",
    "thank you, that's all",
    "am I talking to a computer or a real person",
    "are you a bot or a human",
    "is this a machine I'm speaking with",
    "who is this I'm talking to",
    "is this an automated service",
    "I don't need to speak to anyone, just answer my question",
    "no, I don't want a human",
]


# Whom a request for a person names: without one of these words a sentence near the examples
# ("can you hear me alright?") is not a request, however close its embedding.
HUMAN_REFERENTS = {
    "person",
    "people",
    "human",
    "humans",
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "agent",
    "agents",
    "operator",
    "representative",
    "rep",
    "manager",
    "supervisor",
    "colleague",
    "colleagues",
    "staff",
    "real",
    "live",
    "actual",
    "boss",
    "team",
    "member",
    "advisor",
    "adviser",
    "employee",
    "robot",
    "machine",
    "bot",
    "computer",
    "automated",
    "charge",
    "transfer",
    "transferred",
    "escalate",
    "man",
    "woman",
    "lady",
    "guy",
    "being",
    "senior",
}


def names_a_person(text: str) -> bool:
    """The sentence names a person (or the machine it would rather not deal with)."""
    return bool(HUMAN_REFERENTS & set(words(text[:SCAN_CHARS])))


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b))


class EscalationClassifier:
    def __init__(self, embed_many: EmbedMany, min_similarity: float = 0.5, margin: float = 0.06):
        self._embed_many = embed_many
        self._min_similarity = min_similarity
        self._margin = margin
        self._examples: tuple[list[list[float]], list[list[float]]] | None = None

    async def warm_up(self) -> None:
        if self._examples is None:
            vectors = await self._embed_many(REQUESTS + NEAR_MISSES)
            self._examples = (vectors[: len(REQUESTS)], vectors[len(REQUESTS) :])

    async def scores(self, text: str) -> tuple[float, float]:
        """(closest request, closest near miss) similarities of `text`."""
        await self.warm_up()
        [vector] = await self._embed_many([text])
        requests, misses = self._examples
        return max(_dot(vector, v) for v in requests), max(_dot(vector, v) for v in misses)

    async def __call__(self, text: str) -> bool:
        if not text.strip() or negated_request(text) or not names_a_person(text) or connectivity_check(text):
            return False
        request, miss = await self.scores(text)
        return request >= self._min_similarity and request >= miss + self._margin
