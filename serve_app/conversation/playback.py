"""What the caller actually heard of a reply, and what counts as a real interruption.

Pure logic: the call handler feeds it audio durations and playback positions; tests feed it
numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Sounds a listener makes without taking the turn. Words ("yes", "wait") do take it.
BACKCHANNELS = {
    "uh",
    "huh",
    "uh-huh",
    "uhhuh",
    "mm",
    "mhm",
    "mmhmm",
    "mm-hmm",
    "hmm",
    "hm",
    "um",
    "umm",
    "ah",
    "oh",
    "er",
    "erm",
}


# Whisper spells hums many ways ("Mm-mm", "MMOM", "Hmmm", "Uhhh"): letters of a hum only.
# ("m" then an optional vowel and more m/h, written so no letter can be read two ways: linear time)
_HUM = re.compile(r"[mh]++(?:[uoa][mh]++)?|u+h*|a+h+|o+h*|e+r+m*|u+m+")
# a tag ends at its own closer and never spans another opener, so an unclosed "[[[[" is read once
_NOISE = re.compile(r"\[[^\][]*+\]|\([^)(]*+\)|\*[^*]*+\*")


def is_backchannel(text: str) -> bool:
    """Nothing said but noise or a filler: Whisper's "(coughs)", "[Music]", "Mm-hmm.", ""."""
    text = _NOISE.sub(" ", text.lower())
    words = re.findall(r"[a-z0-9]+(?:-[a-z]+)*", text)
    return all(w in BACKCHANNELS or all(_HUM.fullmatch(part) for part in w.split("-")) for w in words)


@dataclass
class Speech:
    """A reply being spoken: its sentences and how much audio each has so far."""

    turn_id: int | None
    start_bytes: int  # the pacer's byte count when this reply started
    sentences: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # seconds of audio per sentence

    def add_audio(self, index: int, seconds: float) -> None:
        while len(self.durations) <= index:
            self.durations.append(0.0)
        self.durations[index] += seconds


def heard(sentences: list[str], durations: list[float], heard_s: float) -> tuple[list[str], int]:
    """(the reply as heard, index of the sentence the cut fell in).

    A sentence cut part-way keeps its words in proportion to the audio played, ending in an
    ellipsis so the history shows it was cut. The index is where a resumed reply restarts."""
    out, start = [], 0.0
    for i, sentence in enumerate(sentences):
        d = durations[i] if i < len(durations) else 0.0
        if d <= 0 or heard_s < start + d - 0.05:
            words = sentence.split()
            n = int(len(words) * max(0.0, heard_s - start) / d) if d > 0 else 0
            if n:
                out.append(" ".join(words[:n]) + "…")
            return out, i
        out.append(sentence)
        start += d
    return out, len(sentences)
