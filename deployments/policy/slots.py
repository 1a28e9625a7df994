"""Slot extraction from what callers say: numbers (PINs, order numbers) in digits or words.

One left-to-right pass over word tokens (linear time, no backtracking), in the shapes people
say and Whisper writes: "10042", "10,042", "1-0-0-4-2", "1, 2, 3, 4", "one oh oh four two",
"ten oh four two", "twelve thirty-four", "forty-three twenty-one", "double two",
"ten thousand and forty-two". Adjacent groups are read digit by digit, as people read codes:
"twelve thirty-four" is 1234, not 46.
"""

from __future__ import annotations

import re

_UNITS = {
    "zero": 0,
    "nought": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 2,
    "thirty": 3,
    "forty": 4,
    "fourty": 4,
    "fifty": 5,
    "sixty": 6,
    "seventy": 7,
    "eighty": 8,
    "ninety": 9,
}
# Words that sound like digits: "oh" is a zero next to any number; "to", "for", "ate" only
# between spoken digits ("one two three for"), never next to typed ones ("from 10042 to 10043").
_ZERO_LIKE = {"oh": "0", "o": "0"}
_HOMOPHONES = {"to": "2", "too": "2", "for": "4", "ate": "8"}
_FILLERS = {"uh", "um", "er", "erm", "uhm", "hmm", "ah", "mm"}
_REPEAT = {"double": 2, "triple": 3}
# Every word that can be part of a spoken number, and those that only sound like a digit.
SOUND_ALIKE = frozenset(_ZERO_LIKE) | frozenset(_HOMOPHONES)
NUMBER_WORDS = frozenset(_UNITS) | frozenset(_TEENS) | frozenset(_TENS) | frozenset(_REPEAT) | SOUND_ALIKE
NUMBER_WORDS |= {"hundred", "thousand"}
_TOKEN = re.compile(r"[a-z]+|\d+|[,?!]")  # "?" and "!" end a run: "the other one? 10043" is two things
# "one" as a pronoun, not a digit: after these ("the other one", "which one", "no one") or
# before these ("one of them", "one more thing", "one moment").
_ONE_AFTER = {
    "other",
    "this",
    "that",
    "which",
    "each",
    "every",
    "another",
    "no",
    "any",
    "same",
    "last",
    "first",
    "next",
    "new",
    "old",
    "right",
    "wrong",
    "little",
    "big",
    "cheaper",
    "blue",
    "black",
    "red",
    "white",
    "someone",
    "everyone",
    "anyone",
    "only",
    "better",
    "good",
    "bad",
    "second",
    "third",
    "latest",
    "newer",
    "older",
}
_ONE_BEFORE = {
    "of",
    "more",
    "thing",
    "moment",
    "sec",
    "second",
    "minute",
    "mo",
    "day",
    "time",
    "way",
    "last",
    "another",
    "i",
    "you",
    "we",
    "they",
    "is",
    "was",
    "that",
    "which",
    "with",
}


def _is_spoken_number(tok: str) -> bool:
    return tok in _UNITS or tok in _TEENS or tok in _TENS


def _sub_hundred(tokens: list[str], i: int) -> tuple[int, int]:
    """0..99 said at tokens[i] ("forty", "forty two", "twelve", "seven"): (value, next index)."""
    tok = tokens[i] if i < len(tokens) else ""
    if tok in _TENS:
        unit = tokens[i + 1] if i + 1 < len(tokens) else ""
        if unit in _UNITS and _UNITS[unit]:
            return _TENS[tok] * 10 + _UNITS[unit], i + 2
        return _TENS[tok] * 10, i + 1
    if tok in _TEENS:
        return _TEENS[tok], i + 1
    if tok in _UNITS:
        return _UNITS[tok], i + 1
    if tok.isdigit() and len(tok) <= 2:
        return int(tok), i + 1
    return 0, i


def _skip_and(tokens: list[str], i: int) -> int:
    return i + 1 if i < len(tokens) and tokens[i] == "and" else i


class _Runs:
    """The runs of digits found so far and the one being read."""

    def __init__(self):
        self.runs: list[str] = []
        self.chunks: list[str] = []
        self.spoken = False  # the current run has a spoken digit: homophones may join it

    def add(self, digits: str, spoken: bool) -> None:
        self.chunks.append(digits)
        self.spoken = self.spoken or spoken

    def end(self) -> None:
        if self.chunks:
            self.runs.append("".join(self.chunks))
        self.chunks, self.spoken = [], False


def digit_runs(text: str) -> list[str]:
    """Runs of digits in `text`, each as a string of digits, in order of appearance.

    Commas, hyphens and fillers ("uh") inside a number do not end it; any other word does.
    """
    tokens = _TOKEN.findall(text.lower().replace("-", " "))
    out, i, n = _Runs(), 0, len(tokens)

    def next_tok(j: int) -> str:
        return tokens[j] if j < n else ""

    while i < n:
        tok = tokens[i]
        if tok == "," or tok in _FILLERS:
            i += 1
        elif tok.isdigit():
            out.add(tok, False)
            i += 1
        elif tok in _REPEAT and _repeatable(next_tok(i + 1)):
            word = next_tok(i + 1)
            digit = str(_UNITS[word]) if word in _UNITS else _ZERO_LIKE.get(word, word)
            out.add(digit * _REPEAT[tok], True)
            i += 2
        elif tok == "one" and _pronoun_one(tokens, i):
            out.end()
            i += 1
        elif tok in _TENS or tok in _TEENS or tok in _UNITS:
            value, i = _sub_hundred(tokens, i)
            out.add(str(value), True)
        elif tok == "hundred" and out.chunks and len(out.chunks[-1]) == 1:
            value, i = _sub_hundred(tokens, _skip_and(tokens, i + 1))
            out.chunks[-1] = f"{int(out.chunks[-1]) * 100 + value:03d}"
        elif tok == "thousand" and out.chunks and len(out.chunks[-1]) <= 3:
            base, j = int(out.chunks.pop()) * 1000, _skip_and(tokens, i + 1)
            if next_tok(j + 1) == "hundred" and next_tok(j) in _UNITS:
                base, j = base + _UNITS[next_tok(j)] * 100, _skip_and(tokens, j + 2)
            value, i = _sub_hundred(tokens, j)
            out.add(str(base + value), True)
        elif tok in _ZERO_LIKE and (
            _number_follows(tokens, i + 1, typed_too=True) or (out.chunks and _run_goes_on(tokens, i + 1))
        ):
            out.add("0", True)
            i += 1
        elif tok in _HOMOPHONES and (_number_follows(tokens, i + 1) or (out.spoken and _run_goes_on(tokens, i + 1))):
            out.add(_HOMOPHONES[tok], True)
            i += 1
        else:
            out.end()
            i += 1
    out.end()
    return out.runs


def _pronoun_one(tokens: list[str], i: int) -> bool:
    """ "one" standing for a thing ("the other one", "one of them"), unless a number goes on from it."""
    before, after = tokens[i - 1] if i else "", tokens[i + 1] if i + 1 < len(tokens) else ""
    if after in _ONE_BEFORE:
        return True
    return before in _ONE_AFTER or (
        before == "the" and not (_is_spoken_number(after) or after.isdigit() or after in _ZERO_LIKE or after in _REPEAT)
    )


def _repeatable(tok: str) -> bool:
    """What "double" or "triple" may repeat: one digit, said or typed."""
    return tok in _UNITS or tok in _ZERO_LIKE or (tok.isdigit() and len(tok) == 1)


def _number_follows(tokens: list[str], j: int, typed_too: bool = False) -> bool:
    """The very next token (no comma between) is a spoken number, or typed digits if allowed."""
    tok = tokens[j] if j < len(tokens) else ""
    return _is_spoken_number(tok) or tok in _REPEAT or (typed_too and tok.isdigit())


def _run_goes_on(tokens: list[str], j: int) -> bool:
    """Inside a run, a sound-alike is a digit if the run continues after it (commas and fillers
    between) or the text ends: "one, oh, oh, four, two"."""
    while j < len(tokens) and (tokens[j] == "," or tokens[j] in _FILLERS):
        j += 1
    tok = tokens[j] if j < len(tokens) else ""
    return not tok or _is_spoken_number(tok) or tok in _ZERO_LIKE or tok in _HOMOPHONES or tok.isdigit()


def extract_pin(text: str, length: int = 4) -> str | None:
    """The caller's PIN: a run of exactly `length` digits."""
    for run in digit_runs(text):
        if len(run) == length:
            return run
    return None


def extract_order_number(text: str, min_len: int = 5, max_len: int = 8) -> str | None:
    for run in digit_runs(text):
        if min_len <= len(run) <= max_len:
            return run
    return None
