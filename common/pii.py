"""PII masking applied before text reaches a log, a trace, a metric label or the store.

Text here is mostly what Whisper heard, so numbers come in every spoken shape: "4,111,111,111,111",
"for 111, 111, 111", "450.055.0.134", "four one one one". A run of digits and digit words is
therefore judged by how many digits it holds, not by its punctuation: 13 or more is a card,
nine shaped 3-2-4 (or after "social security") an SSN, 7 to 12 a phone number. Order numbers
(five digits) and prices stay readable. Over-masking a long number in a log is the safe error.

Every caller can reach these patterns, so each runs in linear time: quantifiers are possessive
(`*+`, `++`) or atomic (`(?>...)`) wherever a character could be read two ways, and the choices
a backtracking pattern used to make (where a number run ends, which "dot" separates an email)
are made in Python on what one pass found. What is masked is what the old backtracking patterns
masked (checked against them on random text); they took a minute on "28 digits and a letter".
"""

from __future__ import annotations

import re

_WORD_DIGITS = "zero|oh|one|two|three|four|five|six|seven|eight|nine"
_DIGIT = rf"(?:\d|{_WORD_DIGITS})"
_TOKEN = rf"(?:\d++|{_WORD_DIGITS})"
_SEP = r"[\s,.\-/()]"
# The longest run of number tokens from a start; where it may end is decided in _mask_run.
# (The lookahead only lets the engine skip ahead fast: a token starts with one of these.)
_RUN = re.compile(rf"(?=[\dzotfsen])(?<![\w.-]){_TOKEN}(?:{_SEP}*+{_TOKEN})*+", re.I)
_RUN_TOKEN = re.compile(rf"\d+|{_WORD_DIGITS}", re.I)
_WORD_CHAR = re.compile(r"\w")
_LAST_SEP = re.compile(rf"[^\s,.\-/()]*+({_SEP}*+)")  # on a reversed run: its tail block, then the separator before it
_SSN_CONTEXT = re.compile(r"(social security|\bssn\b|\bsocial\b)[^.?!]{0,30}+$", re.I)
_SSN_SHAPE = re.compile(r"\d{3}[- ]\d{2}[- ]\d{4}")
_DIGIT_VALUE = {w: str(i) for i, w in enumerate(_WORD_DIGITS.split("|"))} | {"oh": "0"}
_FOLD = str.maketrans({"ſ": "s", "ı": "i", "İ": "i", "K": "k"})  # what re.I also lets through

_TLD = r"(?:com|org|net|edu|gov|io|co|uk|de|fr|info|biz|us|ca|me|ai)"
_DOT = r"(?>\s*+\.\s*+|\s++dot\s++)"
_AT = r"(?>@|\s++at\s++)"
# written (a@b.com) and spoken ("jane dot doe at example dot com", Whisper's "jane.do at example.com"):
# the local part is read once (possessive); the domain backs off only a word at a time to find its TLD.
_EMAIL = re.compile(
    rf"\b[\w+-]++(?:{_DOT}[\w+-]++)*+(?:{_AT}(?P<domain>[\w-]++(?:{_DOT}[\w-]++)*{_DOT}{_TLD}\b))?", re.I
)
_AT_WORD = re.compile(r"\sat\s", re.I)
# an "at" or "@" after a word, then a domain with a TLD: without one there is no email to look for
_AT_DOMAIN = re.compile(rf"(?<=[\w+-]){_AT}[\w-]++(?:{_DOT}[\w-]++)*{_DOT}{_TLD}\b", re.I)
_DOT_DOT = re.compile(r"\bdot\s++(?:dot|at)\b", re.I)  # only then can a "dot" start another reading
_DOT_RUN = re.compile(r"(?<![\w+-])dot(?![\w+-])(?:\s++dot(?![\w+-]))*+", re.I)
_DOT_WORD = re.compile(r"(?<![\w+-])dot(?![\w+-])", re.I)
_SPACES = re.compile(r"\s*+")
# a PIN announced as one: "my pin is 1234", "PIN: one two three four"
_PIN = re.compile(
    r"\b(?:pin|passcode|pass code)\b(?:\s*+(?:number|code))?(?:\s*+(?:is|was|:|=))?"
    rf"\s*+{_DIGIT}(?:[\s,.-]*+{_DIGIT}){{3,7}}\b",
    re.I,
)


def _digits(run: str) -> str:
    return "".join(t if t.isdigit() else _DIGIT_VALUE[t.translate(_FOLD).lower()] for t in _RUN_TOKEN.findall(run))


def _classify(run: str, text: str, start: int) -> str:
    digits = _digits(run)
    if len(digits) >= 13:
        return "[CARD]"
    if len(digits) == 9 and (_SSN_SHAPE.fullmatch(run) or _ssn_said_before(text, start)):
        return "[SSN]"
    if len(digits) >= 7:
        return "[PHONE]"
    return run


def _ssn_said_before(text: str, start: int) -> bool:
    """Whether "social security" (or SSN) is said just before a nine-digit number; the context can only
    lie in the 46 characters before it, so the search is bounded."""
    return _SSN_CONTEXT.search(text, max(0, start - 48), start) is not None


def _mask_run(match: re.Match) -> str:
    """A number run ends where no word character follows: at its end, else before its last separator."""
    run = match.group(0)
    if len(run) < 7:  # fewer than 7 digits: nothing to mask
        return run
    end = len(run)
    if _WORD_CHAR.match(match.string, match.end()):
        tail = _LAST_SEP.match(run[::-1])
        if not tail.group(1):
            return run  # one block glued to a word ("1234abc"): not a number on its own
        end -= tail.end()
    return _classify(run[:end], match.string, match.start()) + run[end:]


def _email_at(text: str, pos: int, dotty: bool, rev: list[str]) -> tuple[int, int] | None:
    """The first email at or after `pos`, as the old leftmost-backtracking pattern found it."""
    for m in _EMAIL.finditer(text, pos):
        if m.group("domain"):
            return m.start(), m.end()
        if dotty and _DOT_DOT.search(text, m.start(), m.end()):
            found = _other_reading(text, m.start(), m.end(), rev)
            if found:
                return found
    return None


def _other_reading(text: str, start: int, end: int, rev: list[str]) -> tuple[int, int] | None:
    """In "a dot dot dot at b.com" the words alternate as part and separator, and a start on a
    separator "dot" reads the run the other way. Each run of "dot"s is tried once that way."""
    for run in _DOT_RUN.finditer(text, start, end):
        if run.start() == start:
            other = 1  # the chain starts on this run's first word, so its second is a separator
        else:
            if not rev:
                rev.append(text[::-1])
            before = _SPACES.match(rev[0], len(text) - run.start()).end()
            other = 1 if before < len(text) and rev[0][before] == "." else 0  # "x.dot dot": first is a part
        word = run.start()
        if other:
            second = _DOT_WORD.search(text, word + 3, run.end())
            if second is None:
                continue
            word = second.start()
        if word >= end:
            continue
        m = _EMAIL.match(text, word)
        if m and m.group("domain"):
            return m.start(), m.end()
    return None


def _mask_emails(text: str) -> str:
    if ("@" not in text and not _AT_WORD.search(text)) or not _AT_DOMAIN.search(text):
        return text
    out, pos, rev, dotty = [], 0, [], _DOT_DOT.search(text) is not None
    while (found := _email_at(text, pos, dotty, rev)) is not None:
        out += [text[pos : found[0]], "[EMAIL]"]
        pos = found[1]
    return "".join(out) + text[pos:]


def mask_pii(text: str) -> str:
    """Replace card numbers, SSNs, emails, phone numbers and announced PINs with a placeholder."""
    text = _PIN.sub("[PIN]", _mask_emails(text))
    return _RUN.sub(_mask_run, text)


# Log lines also carry the platform's own figures ("took 1234567 ms", a table of counts), so there a
# run of plain digits is masked by its shape, not its length: a card is 13-19 digits in 4s (or 4-6-5)
# or in one block, first digit 2-6, passing Luhn; a phone is grouped like one (+44 20 7946 0958, (555) 123-4567,
# 555-123-4567, 212 555 0134); an SSN is 123-45-6789, or nine digits after "social security".
# Each pattern reads at most ~25 characters from a start: linear time.
_NOT_BEFORE, _NOT_AFTER = r"(?<![\w.+-])", r"(?![\w-]|[.,]\d)"  # not a piece of a word, a float or a range
_LOG_CARD = re.compile(
    rf"{_NOT_BEFORE}[2-6]\d{{3}}"
    rf"(?:\d{{9,15}}|(?:[ -]\d{{4}}){{2,3}}(?:[ -]\d{{1,3}})?|[ -]\d{{6}}[ -]\d{{5}}){_NOT_AFTER}"
)
_LOG_SSN = re.compile(rf"{_NOT_BEFORE}\d{{3}}([ -])\d{{2}}\1\d{{4}}{_NOT_AFTER}")
_LOG_SSN_DIGITS = re.compile(rf"{_NOT_BEFORE}\d{{9}}{_NOT_AFTER}")
_LOG_PHONE = re.compile(
    rf"{_NOT_BEFORE}(?:\+\d{{1,3}}[ .-]?(?:\(\d{{1,4}}\)|\d{{1,4}})(?:[ .-]\d{{2,4}}){{1,3}}[ .-]?\d{{2,4}}"
    r"|(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[ .-]\d{4}"
    r"|(?:1 )?[2-9]\d{2} [2-9]\d{2} \d{4}"
    rf"|\+\d{{10,14}}){_NOT_AFTER}"
)
# Whisper writes a said number in thousands ("4,111,111,111,111,111"); our figures never run to 13 digits so.
_LOG_THOUSANDS = re.compile(rf"(?<![\w.+,-])\d{{1,3}}(?:,\d{{3}}){{4,}}+{_NOT_AFTER}")
_SPOKEN_RUN = re.compile(_WORD_DIGITS, re.I)


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _log_card(match: re.Match) -> str:
    digits = "".join(c for c in match.group(0) if c.isdigit())
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _log_ssn(match: re.Match) -> str:
    return "[SSN]" if _ssn_said_before(match.string, match.start()) else match.group(0)


def _spoken_run(match: re.Match) -> str:
    """A run with digit words is the caller's speech, never a figure: judged as mask_pii judges it."""
    return _mask_run(match) if _SPOKEN_RUN.search(match.group(0)) else match.group(0)


def mask_log_text(text: str) -> str:
    """mask_pii for a log line: the same emails, PINs and spoken numbers; plain digits by their shape."""
    text = _RUN.sub(_spoken_run, _PIN.sub("[PIN]", _mask_emails(text)))
    text = _LOG_THOUSANDS.sub("[CARD]", text)
    text = _LOG_SSN_DIGITS.sub(_log_ssn, _LOG_SSN.sub("[SSN]", _LOG_CARD.sub(_log_card, text)))
    return _LOG_PHONE.sub("[PHONE]", text)
