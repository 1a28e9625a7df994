"""PII masking applied before text reaches a log, a trace, a metric label or the store.

Text here is mostly what Whisper heard, so numbers come in every spoken shape: "4,111,111,111,111",
"for 111, 111, 111", "450.055.0.134", "four one one one". A run of digits and digit words is
therefore judged by how many digits it holds, not by its punctuation: 13 or more is a card,
nine shaped 3-2-4 (or after "social security") an SSN, 7 to 12 a phone number. Order numbers
(five digits) and prices stay readable. Over-masking a long number in a log is the safe error.
"""

from __future__ import annotations

import logging
import re

_WORD_DIGITS = "zero|oh|one|two|three|four|five|six|seven|eight|nine"
_DIGIT = rf"(?:\d|{_WORD_DIGITS})"
_TOKEN = rf"(?:\d+|{_WORD_DIGITS})"
_RUN = re.compile(rf"(?<![\w.-]){_TOKEN}(?:[\s,.\-/()]*{_TOKEN})*(?!\w)", re.I)
_SSN_CONTEXT = re.compile(r"(social security|\bssn\b|\bsocial\b)[^.?!]{0,30}$", re.I)
_TLD = r"(?:com|org|net|edu|gov|io|co|uk|de|fr|info|biz|us|ca|me|ai)"
_AT = r"(?:@|\s+at\s+)"
_DOT = r"(?:\s*\.\s*|\s+dot\s+)"
_PATTERNS = [
    # written (a@b.com) and spoken ("jane dot doe at example dot com", Whisper's "jane.do at example.com")
    ("[EMAIL]", re.compile(rf"\b[\w+-]+(?:{_DOT}[\w+-]+)*{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}{_TLD}\b", re.I)),
    # a PIN announced as one: "my pin is 1234", "PIN: one two three four"
    ("[PIN]", re.compile(rf"\b(?:pin|passcode|pass code)\b(?:\s*(?:number|code))?(?:\s*(?:is|was|:|=))?\s*{_DIGIT}(?:[\s,.-]*{_DIGIT}){{3,7}}\b", re.I)),
]


def _digits(run: str) -> str:
    words = {w: str(i) for i, w in enumerate(_WORD_DIGITS.split("|"))}
    words["oh"] = "0"
    return "".join(t if t.isdigit() else words[t.lower()] for t in re.findall(rf"\d+|{_WORD_DIGITS}", run, re.I))


def _mask_number(match: re.Match) -> str:
    run = match.group(0)
    digits = _digits(run)
    if len(digits) >= 13:
        return "[CARD]"
    if len(digits) == 9 and (re.fullmatch(r"\d{3}[- ]\d{2}[- ]\d{4}", run) or _SSN_CONTEXT.search(match.string[: match.start()])):
        return "[SSN]"
    if len(digits) >= 7:
        return "[PHONE]"
    return run


def mask_pii(text: str) -> str:
    """Replace card numbers, SSNs, emails, phone numbers and announced PINs with a placeholder."""
    for placeholder, pattern in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return _RUN.sub(_mask_number, text)


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
