"""The linear-time PII masker masks exactly what the old backtracking patterns masked.

The old patterns (serve_app/pii.py before issue 11, now common/pii.py) are kept here as the oracle. They are
exponential on long digit runs, so they only ever see short text; the property is checked on
text built from the pieces that decide a match: digits and digit words, separators, "dot" and
"at" said or written, SSN context, announced PINs, unicode digits and letters.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.pii import mask_pii

_WORD_DIGITS = "zero|oh|one|two|three|four|five|six|seven|eight|nine"
_DIGIT = rf"(?:\d|{_WORD_DIGITS})"
_TOKEN = rf"(?:\d+|{_WORD_DIGITS})"
_RUN = re.compile(rf"(?<![\w.-]){_TOKEN}(?:[\s,.\-/()]*{_TOKEN})*(?!\w)", re.I)
_SSN_CONTEXT = re.compile(r"(social security|\bssn\b|\bsocial\b)[^.?!]{0,30}$", re.I)
_TLD = r"(?:com|org|net|edu|gov|io|co|uk|de|fr|info|biz|us|ca|me|ai)"
_AT = r"(?:@|\s+at\s+)"
_DOT = r"(?:\s*\.\s*|\s+dot\s+)"
_EMAIL = re.compile(rf"\b[\w+-]+(?:{_DOT}[\w+-]+)*{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}{_TLD}\b", re.I)
_PIN = re.compile(
    r"\b(?:pin|passcode|pass code)\b(?:\s*(?:number|code))?(?:\s*(?:is|was|:|=))?"
    rf"\s*{_DIGIT}(?:[\s,.-]*{_DIGIT}){{3,7}}\b",
    re.I,
)
_VALUES = {w: str(i) for i, w in enumerate(_WORD_DIGITS.split("|"))} | {"oh": "0"}


def _old_number(match: re.Match) -> str:
    run = match.group(0)
    digits = "".join(t if t.isdigit() else _VALUES[t.lower()] for t in re.findall(rf"\d+|{_WORD_DIGITS}", run, re.I))
    if len(digits) >= 13:
        return "[CARD]"
    if len(digits) == 9 and (
        re.fullmatch(r"\d{3}[- ]\d{2}[- ]\d{4}", run) or _SSN_CONTEXT.search(match.string[: match.start()])
    ):
        return "[SSN]"
    if len(digits) >= 7:
        return "[PHONE]"
    return run


def old_mask_pii(text: str) -> str:
    return _RUN.sub(_old_number, _PIN.sub("[PIN]", _EMAIL.sub("[EMAIL]", text)))


_NUMBERS = [
    "1",
    "12",
    "123",
    "4567",
    "one",
    "oh",
    "two",
    "nine",
    "ZERO",
    "١٢",
    "²",
    " ",
    " ",
    ",",
    ".",
    "-",
    "/",
    "(",
    ")",
    "a",
    "x",
    "_",
    "social ",
    "security ",
    "ssn",
    "pin",
    " is ",
    ":",
    "code",
    "number",
    "?",
    "\n",
]
_EMAILS = [
    "a",
    "b",
    "jane",
    "dot",
    "dot",
    "DOT",
    "at",
    "at",
    " ",
    " ",
    "  ",
    ".",
    " . ",
    "@",
    "com",
    "co",
    "info",
    "x",
    "-",
    "+",
    "_",
    "-com",
    "comx",
    "dot-",
    "-dot",
    "\n",
    "é",
]


def _joined(pieces: list[str]):
    return (
        st.lists(st.sampled_from(pieces), max_size=16)
        .map("".join)
        .filter(
            lambda t: max(map(len, re.findall(r"\d+", t)), default=0) <= 12  # the oracle is exponential in this
        )
    )


# nine digits after SSN words, near and far: the context the masker looks back for
_SSN = st.tuples(
    st.sampled_from(["", "a ", "x."]),
    st.sampled_from(["social", "Social Security", "ssn", "xssn", "socialx", "SSN", "my social"]),
    st.text(" xy.\n?!,a", max_size=60),
    st.sampled_from(["123456789", "123 45 6789", "12 345 6789", "one two three 4 5 6 7 8 9"]),
    st.sampled_from(["", ".", " x", "\n"]),
).map("".join)


@settings(deadline=None, max_examples=1500, suppress_health_check=list(HealthCheck), database=None)
@given(st.one_of(_joined(_NUMBERS), _joined(_EMAILS), _joined(_NUMBERS + _EMAILS), _SSN))
def test_masks_what_the_backtracking_patterns_masked(text):
    assert mask_pii(text) == old_mask_pii(text)


def test_the_shapes_where_a_dot_is_read_two_ways():
    for text in [
        "a dot dot dot at b.com",
        "x dot at y.com",
        "a.dot dot.b@c.com",
        "w dot dot dot dot at x.com q",
        "a-dot dot at b dot com",
        "dot dot dot dot dot at b.co",
        "me at jane.do at example.com",
    ]:
        assert mask_pii(text) == old_mask_pii(text), text
