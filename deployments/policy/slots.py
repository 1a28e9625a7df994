"""Slot extraction from what callers say: spoken or typed digits (PINs, order numbers)."""

from __future__ import annotations

import re

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "to": "2", "too": "2", "three": "3",
    "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "ate": "8", "nine": "9",
}
_STRONG_WORDS = {w for w in _DIGIT_WORDS if w not in ("o", "oh", "to", "too", "for", "ate")}
_TOKEN = re.compile(r"[a-z]+|\d+")


def digit_runs(text: str) -> list[str]:
    """Runs of digits, whether typed ("10042", "1 0 0 4 2") or spoken ("one zero zero four two").

    Homophones ("to", "for", "oh") count only before another digit, or at the very end of a
    run: "I want to check" yields nothing, "one two three for" yields "1234", and
    "order two zero zero seven seven for me" yields "20077".
    """
    runs, current, strong = [], "", False
    tokens = _TOKEN.findall(text.lower().replace("-", " "))
    for i, tok in enumerate(tokens):
        if tok.isdigit():
            current, strong = current + tok, True
            continue
        if tok == "double" and i + 1 < len(tokens) and tokens[i + 1] in _DIGIT_WORDS:
            current += _DIGIT_WORDS[tokens[i + 1]]
            strong = strong or tokens[i + 1] in _STRONG_WORDS
            continue
        if tok in _DIGIT_WORDS and (tok in _STRONG_WORDS or _next_is_digit(tokens, i) or (current and _run_goes_on(tokens, i))):
            current += _DIGIT_WORDS[tok]
            strong = strong or tok in _STRONG_WORDS
            continue
        if i > 0 and tokens[i - 1] == "double":
            continue
        if current and strong:
            runs.append(current)
        current, strong = "", False
    if current and strong:
        runs.append(current)
    return runs


def _next_is_digit(tokens: list[str], i: int) -> bool:
    return i + 1 < len(tokens) and (tokens[i + 1].isdigit() or tokens[i + 1] in _STRONG_WORDS)


def _run_goes_on(tokens: list[str], i: int) -> bool:
    """Inside a run, a homophone is a digit if the run continues after it or the sentence ends."""
    return i + 1 == len(tokens) or tokens[i + 1] in _DIGIT_WORDS


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
