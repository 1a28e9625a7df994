"""Text shaping for speech: sentence splitting and spoken-friendly cleanup."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s++(?=[A-Z0-9\"'])")  # possessive: a run of spaces is read once


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences so TTS can start on the first while the rest waits."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


_CONTRACTIONS = {
    "n't": " not",
    "'re": " are",
    "'ll": " will",
    "'ve": " have",
    "'m": " am",
    "'d": " would",
}
_IS = re.compile(r"\b(where|what|who|how|it|that|there|here|he|she|let)'s\b")


def normalize(text: str) -> str:
    """Lowercase words, contractions spelled out: for comparing what was said with what was heard."""
    text = text.lower().replace("’", "'").replace("won't", "will not").replace("can't", "cannot")
    text = _IS.sub(lambda m: m.group(1) + (" us" if m.group(1) == "let" else " is"), text)
    for short, full in _CONTRACTIONS.items():
        text = text.replace(short, full)
    return " ".join(re.findall(r"[a-z0-9']+", text))
