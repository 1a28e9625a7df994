"""PII masking applied before text reaches a log, a trace or the store."""

from __future__ import annotations

import re

_PATTERNS = [
    ("[EMAIL]", re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b")),
    ("[CARD]", re.compile(r"\b\d(?:[ -]?\d){12,18}\b")),
    ("[SSN]", re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")),
    ("[PHONE]", re.compile(r"(?<!\w)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}\b")),
]


def mask_pii(text: str) -> str:
    """Replace card numbers, SSNs, emails and phone numbers with a placeholder."""
    for placeholder, pattern in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text
