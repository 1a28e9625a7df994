"""PII masking applied before text reaches a log, a trace, a metric label or the store."""

from __future__ import annotations

import logging
import re

_DIGIT = r"(?:\d|zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_PATTERNS = [
    ("[EMAIL]", re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b")),
    ("[CARD]", re.compile(r"\b\d(?:[ -]?\d){12,18}\b")),
    ("[SSN]", re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")),
    ("[PHONE]", re.compile(r"(?<!\w)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}\b")),
    # a PIN announced as one: "my pin is 1234", "PIN: one two three four"
    ("[PIN]", re.compile(rf"\b(?:pin|passcode|pass code)\b(?:\s*(?:number|code))?(?:\s*(?:is|was|:|=))?\s*{_DIGIT}(?:[\s,.-]*{_DIGIT}){{3,7}}\b", re.I)),
]


def mask_pii(text: str) -> str:
    """Replace card numbers, SSNs, emails, phone numbers and announced PINs with a placeholder."""
    for placeholder, pattern in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def install_log_masking() -> None:
    """Mask every log record this process makes, whoever logs it (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_masks_pii", False):
        return

    def masked(*args, **kwargs):
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        clean = mask_pii(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    masked._masks_pii = True
    logging.setLogRecordFactory(masked)
