"""Has the caller finished their turn? Decided at a pause from what the platform already has
then: the run-ahead transcript of the speech so far, what the agent is waiting for, and the pause.

A fixed silence makes every answer wait for it and cuts callers who pause mid-thought. Whisper
writes the cues we need: a trailing ellipsis or comma, a sentence ending on an article, a
conjunction, a preposition or a filler, a number still being read out. Rules, not a model: they
cost microseconds per pause, need no weights and say why (`TurnEnd.cue`).

The verdict only moves the endpoint: `complete` ends the turn after a short silence,
`unfinished` waits longer for more speech, `unsure` keeps the fixed silence. Nothing here runs a
tool or an escalation: a turn held open is just not over yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from deployments.policy.slots import NUMBER_WORDS, digit_runs

Verdict = Literal["complete", "unfinished", "unsure"]
# What the agent waits for (`TurnContext.awaiting`): the fewest digits that make the answer whole
# (deployments/policy/slots.py: a PIN has 4, an order number 5 to 8).
DIGITS_AWAITED = {"pin": 4, "order_id": 5}

# Words a finished spoken sentence (statement) does not end on.
_ARTICLES = frozenset({"a", "an", "the"})
_CONJUNCTIONS = frozenset(
    {"and", "or", "but", "so", "because", "cause", "cuz", "if", "when", "while", "although", "though"}
    | {"unless", "until", "than", "whether", "nor", "whereas"}
)
_SO_CLOSES = frozenset(
    {"think", "hope", "guess", "believe", "said", "do", "did", "not", "so", "suppose"}
)  # "I think so."
# Verbs that want what comes next ("I need", "I was wondering"); a question mark closes them.
_OPEN_VERBS = frozenset({"want", "wanted", "need", "needed", "wondering", "regarding"})
_POSSESSIVES = frozenset({"my", "your", "our", "their", "its"})
# Prepositions that can also close a question or a phrasal verb ("what is it about?", "log in").
_PARTICLES = frozenset({"about", "for", "from", "with", "in", "on", "at", "to", "of", "up", "out", "off", "over"})
_PREPOSITIONS = frozenset(
    {"into", "onto", "by", "under", "after", "before", "between", "through", "without", "within"}
    | {"via", "per", "toward", "towards", "regarding", "during", "like", "across", "against"}
)
_FILLERS = frozenset({"um", "uh", "er", "erm", "uhm", "hmm", "ah", "eh", "mm", "umm", "uhh"})
# "My order number is ...": a copula after the thing being given leaves the sentence open
# ("yes, it is" does not: a pronoun before it).
_COPULAS = frozenset({"is", "was", "are", "were"})
_GIVEN = frozenset({"number", "pin", "code", "name", "address", "email", "order", "problem", "issue", "reason", "it's"})
# One word is a whole turn only as an answer; "Wait." or "So." (Whisper's period after a word
# followed by a breath) usually opens one.
_ANSWERS = frozenset(
    {"yes", "yeah", "yep", "yup", "no", "nope", "nah", "okay", "ok", "sure", "right", "correct", "fine"}
    | {"thanks", "thank", "bye", "goodbye", "hello", "hi", "great", "perfect", "absolutely", "exactly"}
)
_SHORT_ANSWERS = 3  # words: "yes", "no thanks", "yes, that's right" answer a question whole

COMPLETE_CONFIDENCE = 0.7  # a weaker "complete" (a short unpunctuated phrase) keeps the fixed silence
UNFINISHED_CONFIDENCE = 0.6
_TOKEN = re.compile(r"[a-z0-9']+|\.\.\.|…|[.,?!;:-]")  # one pass, no backtracking
# The end of a transcript that is an amount: a currency sign or a decimal point before its last
# digits. Anchored at the end of a short tail, with no nested repetition: linear.
_AMOUNT_TAIL = re.compile(r"(?:[$£€]\s?[\d,]*|\d[.,]\d+|%)\W*$")


@dataclass(frozen=True)
class TurnEnd:
    verdict: Verdict
    confidence: float  # 0..1: how sure the cue is
    cue: str  # the rule that decided, enumerated: for turn.metrics and tuning, never caller text

    def endpoint_ms(self, min_ms: float, max_ms: float) -> float | None:
        """The silence that ends this pause's turn; None keeps the fixed one."""
        if self.verdict == "complete" and self.confidence >= COMPLETE_CONFIDENCE:
            return min_ms
        if self.verdict == "unfinished" and self.confidence >= UNFINISHED_CONFIDENCE:
            return max_ms
        return None

    def metrics(self) -> dict:
        return {"turn_end": self.verdict, "turn_end_confidence": self.confidence, "turn_end_cue": self.cue}


UNSURE = TurnEnd("unsure", 0.0, "no_cue")


def decide(text: str, awaiting: str | None = None) -> TurnEnd:
    """The verdict on `text`, the transcript of everything the caller said in this turn so far."""
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    words = [t for t in tokens if t[0].isalnum()]
    if not words:
        return UNSURE
    last, end = words[-1], tokens[-1]
    trailing = end if not end[0].isalnum() else ""
    if trailing in ("...", "…"):
        if all(w in _ANSWERS for w in words):  # "No..." answers, hesitantly: neither sure nor open
            return UNSURE
        return TurnEnd("unfinished", 0.9, "ellipsis")
    if awaiting in DIGITS_AWAITED:
        if _longest_run(text) >= DIGITS_AWAITED[awaiting]:
            return TurnEnd("complete", 0.9, "digits_done")
        if 0 < _trailing_number(words)[1] < DIGITS_AWAITED[awaiting]:  # only a number being said now
            return TurnEnd("unfinished", 0.9, "digits_short")
    if last in _FILLERS:
        return TurnEnd("unfinished", 0.85, "filler")
    if trailing in (",", "-", ":", ";"):
        return TurnEnd("unfinished", 0.75, "comma")
    if last == "so" and len(words) > 1 and words[-2] in _SO_CLOSES:
        return TurnEnd("complete", 0.7, "punctuation") if trailing in (".", "?", "!") else UNSURE
    if last in _OPEN_VERBS and trailing != "?":
        return TurnEnd("unfinished", 0.7, "open_word")
    if last in _ARTICLES or last in _CONJUNCTIONS or last in _POSSESSIVES or last in _PREPOSITIONS:
        return TurnEnd("unfinished", 0.85, "open_word")
    if last in _PARTICLES:
        if trailing == "?":
            return TurnEnd("complete", 0.7, "question")
        return TurnEnd("unfinished", 0.7, "open_word")
    if _is_number(last) and _AMOUNT_TAIL.search(text[-40:]) is None:  # "$60." or "49.99" is whole
        if _number_unfinished(words, stopped=trailing in (".", "?", "!")) or _short_number_last(words, trailing):
            return TurnEnd("unfinished", 0.7, "number_going")
    if last in _COPULAS and len(words) > 1 and words[-2] in _GIVEN and trailing != "?":
        return TurnEnd("unfinished", 0.7, "lead_in")
    if len(words) == 1 and last not in _ANSWERS and trailing != "?":
        return UNSURE
    if trailing in (".", "?", "!"):
        return TurnEnd("complete", 0.8, "punctuation")
    if len(words) <= _SHORT_ANSWERS and words[0] in _ANSWERS:
        return TurnEnd("complete", 0.6, "short")
    # Whisper ends a sentence it heard finish with a stop; several words without one are most
    # often a fragment (a mishearing of half a sentence): wait for more rather than cut.
    return TurnEnd("unfinished", UNFINISHED_CONFIDENCE, "unpunctuated")


def _is_number(word: str) -> bool:
    return word.isdigit() or word in NUMBER_WORDS


def _longest_run(text: str) -> int:
    return max((len(run) for run in digit_runs(text)), default=0)


def _trailing_number(words: list[str]) -> tuple[str, int]:
    """The word before the number the transcript ends on ("" when it is all number) and that
    number's digits: 0 when it ends on a word, or on "one" that stands for a thing ("a bigger
    one") rather than a digit."""
    i = len(words) - 1
    while i >= 0 and _is_number(words[i]):
        i -= 1
    before, tail = (words[i] if i >= 0 else ""), words[i + 1 :]
    if tail == ["one"] and before and not (before in _COPULAS or before in _GIVEN):
        return before, 0
    runs = digit_runs(" ".join(tail))
    return before, (len(runs[-1]) if runs else 0)


def _short_number_last(words: list[str], trailing: str) -> bool:
    """A sentence that ends on a bare number of one to three digits ("I ordered 20.", "The card
    ends in 66."): a caller reading out a code or a figure in groups, whom Whisper gave a stop at
    the breath between them. Not a lone number (the fixed silence decides that), a question, or
    a short answer ("Yes, 2.")."""
    if len(words) < 2 or trailing == "?" or (words[0] in _ANSWERS and len(words) <= _SHORT_ANSWERS):
        return False
    return 0 < _trailing_number(words)[1] <= 3


def _number_unfinished(words: list[str], stopped: bool) -> bool:
    """A number at the end, too short for the codes callers read out (order numbers have five
    digits or more), after a lead-in ("my order number is one oh") or alone ("zero seven seven",
    a caller reading a code out in groups, unless Whisper heard it stop): still being said."""
    before, said = _trailing_number(words)
    lead_in = before in _COPULAS or before in _GIVEN or (before == "" and not stopped)
    return 0 < said < DIGITS_AWAITED["order_id"] and lead_in
