"""Text shaping for speech: sentence splitting and spoken-friendly cleanup."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences so TTS can start on the first while the rest waits."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def normalize(text: str) -> str:
    """Lowercase words only: for comparing what was said with what was heard."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))
