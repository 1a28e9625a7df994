"""Keyword overlap beside the embeddings: a question worded apart from the knowledge base
("does the guarantee cover it if I drop it?") still shares its key words, once a few synonyms
map the caller's words onto the documents' ("guarantee" -> "warranty", "drop" -> "accidental
damage"). BM25 over each section's heading (counted twice) and text; rare words weigh most, so
the most specific section that holds them wins over a general one.

One pass over the question's words (linear time); the index is rebuilt only when the documents change.
"""

from __future__ import annotations

import math
from collections import Counter

from deployments.policy.language import words

_STOP = {
    "a",
    "an",
    "the",
    "and",
    "or",
    "but",
    "if",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "by",
    "with",
    "from",
    "about",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "am",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "i",
    "you",
    "we",
    "it",
    "my",
    "your",
    "our",
    "me",
    "us",
    "they",
    "them",
    "this",
    "that",
    "these",
    "those",
    "what",
    "which",
    "who",
    "how",
    "when",
    "where",
    "why",
    "can",
    "could",
    "will",
    "would",
    "should",
    "may",
    "might",
    "must",
    "there",
    "here",
    "so",
    "not",
    "no",
    "any",
    "some",
    "all",
    "just",
    "please",
    "um",
    "uh",
    "er",
    "oh",
    "well",
    "okay",
    "ok",
    "hi",
    "hello",
    "hey",
    "then",
    "than",
    "too",
    "very",
    "also",
    "get",
    "got",
    "want",
    "like",
    "know",
    "tell",
    "say",
    "said",
    "its",
    "their",
    "as",
    "into",
    "out",
    "up",
    "yes",
    "yeah",
    "one",
    "thing",
    "things",
    "item",
    "items",
    "question",
    "time",
    "times",
    "long",
    "much",
    "take",
    "takes",
    "go",
    "gets",
    "come",
    "through",
    "ever",
    "happen",
    "happens",
    "still",
    "mean",
    "need",
}
# The caller's word -> the documents' words for the same thing.
SYNONYMS = {
    "guarantee": ("warranty",),
    "guaranteed": ("warranty",),
    "guarantees": ("warranty",),
    "drop": ("accidental", "damage"),
    "dropped": ("accidental", "damage"),
    "smash": ("accidental", "damage"),
    "smashed": ("accidental", "damage"),
    "crack": ("accidental", "damage"),
    "cracked": ("accidental", "damage"),
    "broke": ("damage",),
    "break": ("damage",),
    "broken": ("damage",),
    "accident": ("accidental",),
    "damaged": ("damage",),
    "spill": ("accidental", "damage"),
    "spilled": ("accidental", "damage"),
    "bank": ("public",),
    "holiday": ("holidays",),
    "christmas": ("holidays",),
    "easter": ("holidays",),
    "open": ("hours", "available"),
    "opening": ("hours",),
    "close": ("closed",),
    "closing": ("closed", "hours"),
    "courier": ("delivery", "shipping"),
    "post": ("shipping", "delivery"),
    "postage": ("shipping", "costs"),
    "ship": ("shipping",),
    "shipped": ("shipping",),
    "deliver": ("delivery",),
    "delivered": ("delivery",),
    "abroad": ("international",),
    "overseas": ("international",),
    "uk": ("united", "kingdom"),
    "britain": ("kingdom",),
    "price": ("costs",),
    "cost": ("costs",),
    "charge": ("costs",),
    "fee": ("fees",),
    "money": ("refund",),
    "reimburse": ("refund",),
    "repay": ("refund",),
    "refunds": ("refund",),
    "fix": ("repaired",),
    "repair": ("repaired",),
    "replace": ("replace",),
    "faulty": ("defects", "fault"),
    "shop": ("store",),
    "address": ("location", "street"),
    "located": ("location",),
    "based": ("location",),
    "worn": ("unused",),
    "wore": ("unused",),
    "used": ("unused",),
    "opened": ("unused", "packaging"),
    "weekend": ("saturday", "sundays"),
    "sunday": ("sundays",),
    "send": ("return",),
    "back": ("return",),
    "quick": ("express",),
    "fast": ("express",),
    "shut": ("closed", "hours"),
    "apart": ("modified",),
    "tampered": ("modified",),
    "altered": ("modified",),
    "void": ("cover",),
    "covered": ("cover",),
    "exclude": ("cover",),
    "excluded": ("cover",),
    "wear": ("wear", "tear"),
    "customs": ("customs", "fees"),
    "duty": ("customs",),
    "duties": ("customs",),
    "tax": ("customs",),
}


def _stem(w: str) -> str:
    """Plural and simple verb endings off, so "returns" meets "return" ("holidays" stays whole)."""
    for end in ("ing", "ed", "es", "s"):
        if len(w) > len(end) + 3 and w.endswith(end):
            return w[: -len(end)]
    return w


def terms(text: str, expand: bool = False) -> list[str]:
    out = []
    for w in words(text):
        if w in _STOP or w.isdigit():
            continue
        out.append(_stem(w))
        if expand:
            out += [_stem(s) for s in SYNONYMS.get(w, ())]
    return out


class LexicalIndex:
    """BM25 over sections: `scores(question)` gives each section's match, 0..1 of the best possible
    (each word's share capped at its idf, the whole squared: only a question the section mostly
    covers earns much)."""

    K1, B = 1.2, 0.75

    def __init__(self, sections: dict[str, str]):
        # the section's own heading twice, the document's title once: "Returns and refunds" is
        # every returns section's, "Refund timing" one section's
        self._docs = {
            title: Counter(terms(title.split(" - ")[-1]) * 2 + terms(title.split(" - ")[0]) + terms(text))
            for title, text in sections.items()
        }
        n = len(self._docs) or 1
        df = Counter(t for doc in self._docs.values() for t in doc)
        self._idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self._avg = sum(sum(d.values()) for d in self._docs.values()) / n or 1.0

    def scores(self, question: str) -> dict[str, float]:
        """Each word said counts once, through itself or its best synonym; a word the documents
        never use counts against every section ("weather on holiday" is half known)."""
        groups = []
        for w in words(question[:2000]):
            if w in _STOP or w.isdigit():
                continue
            found = {_stem(w)} | {_stem(x) for x in SYNONYMS.get(w, SYNONYMS.get(_stem(w), ()))}
            groups.append(found & set(self._idf))
        if not any(groups):
            return {}
        unknown = max(self._idf.values())  # a word the documents never use is as telling as their rarest
        best = sum(max((self._idf[t] for t in g), default=unknown) for g in groups)
        out = {}
        for title, doc in self._docs.items():
            norm = self.K1 * (1 - self.B + self.B * sum(doc.values()) / self._avg)
            s = sum(
                max(
                    (
                        min(self._idf[t], self._idf[t] * doc[t] * (self.K1 + 1) / (doc[t] + norm))
                        for t in g
                        if doc.get(t)
                    ),
                    default=0.0,
                )
                for g in groups
            )
            if s:
                out[title] = (s / best) ** 2  # a half-known question ("job openings") earns a quarter
        return out
