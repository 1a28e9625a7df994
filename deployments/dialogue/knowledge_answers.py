"""Answers from the knowledge base for the local support agent, and what it says when it has none.

It never reads the caller's words back (they may hold personal data): an unanswered turn is
asked again in general terms, with the agent's offer of a transfer remembered for one turn so
that a "yes" transfers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployments.dialogue.text import split_sentences

if TYPE_CHECKING:
    from deployments.dialogue.support import TurnResult

NOT_SURE = [
    "I'm not sure I know the answer to that.",
    "Could you put it another way, or shall I transfer you to a colleague?",
]


class KnowledgeAnswers:
    """Mixed into SupportAgent: uses its `_kb`, `_threshold`, `_policy` and outcome helpers."""

    async def _kb_answer(self, text: str, r: TurnResult):
        """The knowledge base's answer if it is confident enough, else None; notes the confidence."""
        answer = await self._kb.answer(text) if self._kb is not None else None
        r.kb_confidence = answer.confidence if answer else 0.0
        return answer if answer is not None and answer.confidence >= self._threshold else None

    async def _knowledge(self, text: str, r: TurnResult) -> TurnResult:
        if answer := await self._kb_answer(text, r):
            r.intent = "knowledge"
            return self._succeeded(r.say(*split_sentences(answer.text)))  # one TTS request per sentence
        if r.memory["consecutive_failures"] + 1 >= self._policy.max_consecutive_failures:
            return self._escalate("low_confidence", r)
        # Never read the caller's words back (they may hold personal data): ask again in general terms.
        slots = r.memory["slots"]
        if slots.get("awaiting") == "pin":
            slots["offer"] = "transfer"
            r.say(
                "Sorry, I need your four digit PIN to go on.",
                "Please say the four digits, or I can transfer you to a colleague.",
            )
            return self._failed(r)
        if slots.get("awaiting") == "order_id":
            return self._failed(r.say("Sorry, I didn't catch an order number.", "Please say it one digit at a time."))
        slots["offer"] = "transfer"
        return self._failed(r.say(*NOT_SURE))
