"""The caller's answer to the recording and consent notice (VOICE_CONSENT_NOTICE), in one pass
over the turn's words (linear time, no regular expressions beyond `language.words`).

Right after the notice (`pending`) a bare refusal declines: "no", "nope, thanks", "I'd rather
not", "please don't", "I don't consent". Any later turn declines only when it objects to the
recording itself ("stop recording", "I don't want this transcribed", "opt out"), so a "no" that
answers another question is never taken for it. "No problem", "I don't mind being recorded"
and "no objection" consent. A decline may carry a request ("no, where's my order?"): the agent
acknowledges the decline, then answers it.

Consent is kept in the call's memory: None (no notice said), `pending`, `given`, `declined`.
"""

from __future__ import annotations

from typing import Literal

from deployments.policy.language import SCAN_CHARS, content, words

Consent = Literal["pending", "given", "declined"]

DECLINED_REPLY = "Understood. This call won't be recorded, and no transcript of it will be kept."

_NEGATIONS = {"no", "not", "never", "nope", "nah", "without", "stop", "decline", "refuse", "object", "disagree"}
_RECORDING = set(
    "record records recorded recording recordings transcribe transcribed transcribing transcript transcripts"
    " transcription consent tape taped taping".split()
)
# After a negation these make it an agreement: "no problem", "I don't mind", "no objection".
_AGREEING = {"problem", "problems", "mind", "objection", "objections", "issue", "worries", "worry", "fine", "okay"}
_AGREEING_PHRASES = [("go", "ahead"), ("that", "is", "ok"), ("it", "is", "ok")]
_REFUSAL_OPENINGS = [
    ("no",),
    ("nope",),
    ("nah",),
    ("never",),
    ("do", "not"),
    ("please", "do", "not"),
    ("i", "would", "rather", "not"),
    ("i", "had", "rather", "not"),
    ("rather", "not"),
    ("not", "really"),
    ("i", "decline"),
    ("i", "refuse"),
    ("i", "object"),
    ("decline",),
]
_NEAR = 6  # a negation this many words before a recording word objects to it
# Words a decline is made of: what is left beside them is a request to answer.
_DECLINE_WORDS = (
    _NEGATIONS
    | _RECORDING
    | {"i", "you", "me", "my", "we", "it", "this", "that", "call", "do", "does", "would", "had", "rather", "want"}
    | {"to", "be", "being", "thanks", "thank", "please", "really", "am", "is", "are", "any", "of", "the", "a", "ok"}
    | {"okay", "sorry", "kept", "keep", "have", "store", "stored", "save", "saved", "opt", "out", "just", "say"}
)


def _agreeing(ws: list[str], start: int, end: int) -> bool:
    span = ws[start:end]
    if any(w in _AGREEING for w in span):
        return True
    return any(tuple(span[i : i + len(p)]) == p for p in _AGREEING_PHRASES for i in range(len(span)))


def objects_to_recording(ws: list[str]) -> bool:
    """A negation shortly before a recording word ("don't record", "stop recording", "no
    transcripts"), or "opt out"; not when it agrees ("I don't mind being recorded")."""
    last_negation = None
    for i, w in enumerate(ws):
        if w == "opt" and i + 1 < len(ws) and ws[i + 1] == "out":
            return True
        if w in _NEGATIONS:
            last_negation = i
        elif w in _RECORDING and last_negation is not None and i - last_negation <= _NEAR:
            if not _agreeing(ws, last_negation, i + 1):
                return True
    return False


def _refuses(ws: list[str]) -> bool:
    """A bare refusal, the answer to the notice itself: "no", "I'd rather not", "please don't"."""
    for opening in _REFUSAL_OPENINGS:
        if tuple(ws[: len(opening)]) == opening:
            return not _agreeing(ws, len(opening), len(opening) + 4)
    return False


def consent_after(consent: str | None, text: str) -> Consent | None:
    """The call's consent after this caller turn; None when it stays as it is."""
    if consent not in ("pending", "given"):
        return None  # no notice was said, or already declined (for the rest of the call)
    ws = content(words(text[:SCAN_CHARS]))
    if objects_to_recording(ws) or (consent == "pending" and _refuses(ws)):
        return "declined"
    return "given" if consent == "pending" else None


def carries_request(text: str) -> bool:
    """Words beside the decline: "no, where is my order?" asks something too."""
    return sum(1 for w in content(words(text[:SCAN_CHARS])) if w not in _DECLINE_WORDS) >= 2
