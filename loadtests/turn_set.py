"""The end-of-turn set (issue 17): what a caller says when the platform must decide whether they
have finished. Three kinds: `complete` sentences (support requests and short answers), `paused`
sentences with a 300 to 1200 ms pause at a point where they are plainly unfinished (after an
article, a preposition, a conjunction, a filler, "my", or inside a number), and `digits` said in
groups with a pause between groups (PINs, order numbers, phone-like numbers).

Written for this benchmark only: none of it may appear in platform code, intent examples or the
KB. A `|` marks a pause; the parts are synthesized apart and spliced (loadtests/utterances.py)
with that item's pause between their voiced audio, so each item knows where its pauses lie and
when its last voiced sample is. Voices and speeds rotate over the set; rendered WAVs share the
load tests' cache, keyed by voice, speed, pause and text.

`setup` says what the agent should just have asked for: "pin" (a fresh call whose agent asked
for the PIN; demo-alice's is 1234), "order" (a verified call asked about an order), or None.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.audio import leading_silence_s, read_wav, trailing_silence_s, write_wav
from loadtests.utterances import DEFAULT_CACHE, LENGTH_SCALES, RATE, VOICES, Synth, splice

KINDS = ("complete", "paused", "digits")
PAUSES_S = (0.3, 0.5, 0.7, 0.9, 1.1, 1.2, 0.4, 0.6, 0.8, 1.0)  # one per paused item, in turn
DIGIT_PAUSES_S = (0.3, 0.45, 0.6, 0.75, 0.9)  # between a digit item's groups

COMPLETE = [
    "I would like to know how my order is doing.",
    "Can you tell me when my parcel will arrive?",
    "I would like to send back a pair of boots.",
    "My refund has not shown up on my card yet.",
    "The courier left my box at the wrong house.",
    "How do I change the email address on my account?",
    "I never got a confirmation email for my purchase.",
    "Can I cancel an order I placed this morning?",
    "The speaker I received is missing its cable.",
    "I was charged twice for the same order.",
    "What is your return policy for electronics?",
    "My grinder arrived with a cracked lid.",
    "I need to update my delivery address.",
    "How long will the refund take to reach my bank?",
    "Can I exchange a shirt for a different colour?",
    "Where has my order got to?",
    "Has my parcel been sent out yet?",
    "I would like a refund, please.",
    "Can you check my order for me?",
    "Are you open on Sunday?",
    "Do you deliver to Mexico?",
    "How much does express shipping cost?",
    "I forgot the password for my account.",
    "The trousers I ordered are the wrong size.",
    "Can I return something without the original box?",
    "The tracking page has not changed in four days.",
    "My account says delivered, but nothing came.",
    "Can you send me a new invoice?",
    "How long is the warranty on a toaster?",
    "Is there a fee for returning an item?",
    "Yes.",
    "No.",
    "Yes, please.",
    "No, thank you.",
    "That's right.",
    "Sure, go ahead.",
    "Okay.",
    "Yes, that's correct.",
    "No, not yet.",
    "Yes, the first one.",
]

PAUSED = [
    "I would like to return the | lamp that came yesterday.",
    "I ordered a | kettle and it stopped working.",
    "Can you check on the | parcel I sent back last week?",
    "I need a refund for the | shoes that did not fit.",
    "There is a problem with the | charger you sent me.",
    "My daughter bought an | umbrella from your website.",
    "I am calling about | a missing delivery.",
    "The package was left outside | in the rain.",
    "I want to send this back to | your warehouse.",
    "Can I get the money back on | the same card?",
    "I have been waiting for | three weeks now.",
    "Is there a charge for | returning a large item?",
    "I need to change the address for | the next order.",
    "I opened the box and | the screen was cracked.",
    "I tried to sign in but | the page keeps failing.",
    "The coat is too small so | I would like a bigger one.",
    "I paid for express delivery because | I need it by Friday.",
    "I want to return it or | swap it for another model.",
    "The parcel came today and | half the items are missing.",
    "I think, um, | the order went to the old address.",
    "So, uh, | I was charged the wrong amount.",
    "Um, | I would like to check on a refund.",
    "I need, um, | some help with a return.",
    "The thing is, uh, | the blender makes a loud noise.",
    "Well, um, | can you tell me when it ships?",
    "My order number is one oh | oh four three.",
    "It cost two hundred and | fifty dollars.",
    "The order was placed on the twenty | second of May.",
    "I was charged forty | nine ninety nine.",
    "I ordered twenty | five boxes of paper.",
    "Order two oh | oh seven seven has not arrived.",
    "I would like to cancel my | subscription.",
    "Someone else signed into my | account last night.",
    "I want to update my | phone number.",
    "Can you tell me where my | package is?",
    "I need to talk to you about my | refund.",
    "I think you sent my | parcel to the wrong city.",
    "I lost the receipt for my | new headphones.",
    "The box with my | shoes was damaged.",
    "Could you tell me if my | return was received?",
]

# Said over the agent: a backchannel must not stop it; (kind, text) as TurnItems of their own.
BACKCHANNELS = ["mm-hm", "uh-huh", "right"]

# (setup, text): groups as a caller says them
DIGITS = [
    ("pin", "one two | three four"),
    ("pin", "one | two three four"),
    ("pin", "one two three | four"),
    ("pin", "twelve | thirty four"),
    ("pin", "my PIN is one two | three four"),
    ("pin", "it's one two | three four"),
    ("order", "one oh oh | four two"),
    ("order", "one zero zero | four three"),
    ("order", "ten oh | forty two"),
    ("order", "it's one oh | oh four two"),
    ("order", "order one oh oh | four three"),
    ("order", "one double oh | four two"),
    (None, "five five five | one two three | four five six seven"),
    (None, "my number is four one five | five five five | two six seven one"),
    (None, "the code is three eight | two nine"),
    (None, "the tracking number is nine four | one one | eight seven"),
    (None, "the card ends in six six | one two"),
    (None, "zero seven seven | nine oh oh | one two three"),
    (None, "it's two oh | oh seven seven"),
    (None, "eight eight | four one"),
    (None, "the reference is seven seven | three one | zero nine"),
    (None, "four four | two one | six three"),
    (None, "one two | three four | five six"),
    (None, "nine nine | zero one | two two | three"),
]


@dataclass(frozen=True)
class TurnItem:
    kind: str  # complete, paused or digits (or backchannel, said over the agent)
    text: str  # as said, without the pause marks
    written: str  # with `|` where the pauses are
    voice: str
    length_scale: float
    pause_s: float  # each pause's length; 0 for a complete sentence
    setup: str | None
    pcm: bytes = b""  # 16 kHz mono s16le; empty until rendered
    pauses: tuple[tuple[float, float], ...] = ()  # (last voiced before, first voiced after), s into the clip
    last_voiced_s: float = 0.0  # the last voiced sample, s into the clip

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / RATE


def items() -> list[TurnItem]:
    """The set as written, voices and speeds rotating (unrendered)."""
    written = [("complete", None, t, 0.0) for t in COMPLETE]
    written += [("paused", None, t, PAUSES_S[i % len(PAUSES_S)]) for i, t in enumerate(PAUSED)]
    written += [("digits", s, t, DIGIT_PAUSES_S[i % len(DIGIT_PAUSES_S)]) for i, (s, t) in enumerate(DIGITS)]
    out = []
    for i, (kind, setup, text, pause) in enumerate(written):
        voice, scale = VOICES[i % len(VOICES)], LENGTH_SCALES[(i // len(VOICES)) % len(LENGTH_SCALES)]
        said = " ".join(text.replace("|", " ").split())
        out.append(TurnItem(kind, said, text, voice, scale, pause, setup))
    return out


def backchannels(cache_dir: Path | None = None) -> list[TurnItem]:
    """Backchannels in each voice, rendered like the set; the first few differ in words and voice."""
    n = len(VOICES)
    said = [(t, VOICES[(i + k) % n]) for k in range(n) for i, t in enumerate(BACKCHANNELS)]
    return rendered([TurnItem("backchannel", t, t, v, 1.0, 0.0, None) for t, v in said], cache_dir)


def noise_burst(seconds: float, seed: int, level: float = 0.3) -> bytes:
    """A cough-like burst: noise under a fast-attack, slow-decay envelope, with 0.2 s of
    silence either side (not speech: it must not stop the agent)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = np.minimum(1.0, np.arange(n) / (0.01 * RATE)) * np.exp(-np.arange(n) / (0.35 * n))
    burst = (rng.standard_normal(n) * level * envelope).clip(-1, 1)
    pad = np.zeros(int(0.2 * RATE))
    return (np.concatenate([pad, burst, pad]) * 32767).astype(np.int16).tobytes()


def subset(all_items: list[TurnItem], limit: int | None) -> list[TurnItem]:
    """At most `limit` items spread evenly over the set (every kind kept in proportion)."""
    if not limit or limit >= len(all_items):
        return list(all_items)
    step = len(all_items) / limit
    return [all_items[int(i * step)] for i in range(limit)]


def load_turn_set(limit: int | None = None, cache_dir: Path | None = None) -> list[TurnItem]:
    """The set (or an even subset), rendered on first use and read from the cache after."""
    return rendered(subset(items(), limit), cache_dir)


def rendered(unrendered: list[TurnItem], cache_dir: Path | None = None) -> list[TurnItem]:
    folder = Path(cache_dir or os.environ.get("VOICE_LOADTEST_UTTERANCES", DEFAULT_CACHE))
    folder.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    return [render(item, folder, synth) for item in unrendered]


def render(item: TurnItem, folder: Path, synth: Synth) -> TurnItem:
    """The item's audio and where its pauses lie (kept beside the WAV: the parts are not
    synthesized again to find them)."""
    path = folder / f"turnset-{_key(item)}.wav"
    where = path.with_suffix(".json")
    if path.exists() and where.exists():
        pcm, _ = read_wav(str(path))
        pauses = [tuple(p) for p in json.loads(where.read_text())["pauses"]]
    else:
        parts = [synth.say(p.strip(), item.voice, item.length_scale) for p in item.written.split("|")]
        pcm, pauses = splice(parts, item.pause_s), pause_spans(parts, item.pause_s)
        for final, data in ((where, json.dumps({"pauses": pauses}).encode()), (path, None)):
            tmp = final.with_suffix(".tmp")
            write_wav(tmp, pcm, RATE) if data is None else tmp.write_bytes(data)
            tmp.replace(final)  # a run stopped mid-write leaves no half file in the cache
    last = len(pcm) / 2 / RATE - trailing_silence_s(pcm, RATE)
    return replace(item, pcm=pcm, pauses=tuple(pauses), last_voiced_s=last)


def pause_spans(parts: list[bytes], pause_s: float) -> list[tuple[float, float]]:
    """Each pause splice() puts between `parts`, as (last voiced before, first voiced after) in
    seconds into the spliced clip: the parts' own edge silence is trimmed the same way."""
    spans, at = [], 0.0
    for i, pcm in enumerate(parts[:-1]):
        lead = 0.0 if i == 0 else leading_silence_s(pcm, RATE)
        at += len(pcm) / 2 / RATE - lead - trailing_silence_s(pcm, RATE)
        spans.append((round(at, 4), round(at + pause_s, 4)))
        at += pause_s
    return spans


def _key(item: TurnItem) -> str:
    raw = f"{item.voice}|{item.length_scale}|{item.pause_s}|{item.written}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]
