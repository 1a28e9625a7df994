"""Masking for partial transcripts while the agent waits for a PIN.

A final transcript said in answer to "what's your PIN?" is stored and echoed as `[PIN]` by the
session actor. Partials come earlier and incomplete ("one two three"), before any PIN can be
recognised, so from the moment a PIN is asked for every run of number words or digits in a
partial is masked, whole. One linear pass over the tokens: no backtracking.
"""

from __future__ import annotations

import re

PIN = "[PIN]"
_SPLIT = re.compile(r"([A-Za-z]+|[0-9]+)")  # one capture group: tokens kept between separators
NUMBER_WORDS = frozenset(
    "zero oh o one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "double triple".split()
)
# Words Whisper writes for digits ("one two three for"): numbers only beside another number.
HOMOPHONES = frozenset("to too for fore ate won niner".split())


def mask_number_runs(text: str) -> str:
    """Replace each run of digits or number words (and homophones beside them) with [PIN]."""
    parts = _SPLIT.split(text)  # separator, token, separator, ..., token, separator
    words = [w.lower() for w in parts[1::2]]
    numeric = [w.isdigit() or w in NUMBER_WORDS for w in words]
    last = len(words) - 1
    masked = [
        numeric[i] or (w in HOMOPHONES and ((i > 0 and numeric[i - 1]) or (i < last and numeric[i + 1])))
        for i, w in enumerate(words)
    ]
    out = [parts[0]]
    for i, hit in enumerate(masked):
        if not hit:
            out.append(parts[2 * i + 1])
        elif i == 0 or not masked[i - 1]:
            out.append(PIN)  # a run starts
        if not (hit and i < last and masked[i + 1]):
            out.append(parts[2 * i + 2])  # the separator after a token, unless inside a run
    return "".join(out)
