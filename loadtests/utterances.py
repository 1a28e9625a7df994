"""Spoken caller turns for load tests: support questions in our own wording, said by piper at
more than one speed, some with a pause in mid-sentence, cached as WAVs; and typed turns.

A paused utterance is its two halves synthesized apart and joined by `PAUSE_S` of silence:
long past the 100 ms pause that starts a run-ahead turn, short of the 500 ms endpoint, so the
platform has to throw its run-ahead away and wait for the rest of the sentence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.audio import read_wav, trailing_silence_s, write_wav

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "data" / "utterances"
RATE = 16000
VOICE = "joe"  # the piper voice the platform ships
LENGTH_SCALES = (0.85, 1.0, 1.2)  # faster and slower than piper's own pace
PAUSE_S = 0.4

QUESTIONS = [
    "Hi, what time do you open in the morning?",
    "Could you tell me, how long does delivery normally take?",
    "I was wondering, can I send something back if it does not fit?",
    "Does the guarantee cover a grinder that stopped working?",
    "Do you deliver to addresses in Canada?",
    "Is your shop open at the weekend?",
]
# the half after which the paused variant stops for PAUSE_S, by question
PAUSE_AFTER = {0: "Hi,", 1: "Could you tell me,", 2: "I was wondering,", 3: "Does the guarantee cover"}

TYPED_TURNS = [
    "How long is the warranty on electronics?",
    "What does shipping cost on a small order?",
    "How do I return something I bought?",
    "When is customer service open?",
]


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: bytes  # 16 kHz mono s16le
    voice: str
    length_scale: float
    paused: bool


def load_utterances(cache_dir: Path | None = None) -> list[Utterance]:
    """Every question at each speed, the paused ones also with their pause; synthesized once."""
    folder = Path(cache_dir or CACHE)
    folder.mkdir(parents=True, exist_ok=True)
    engine = None
    out = []
    for i, text in enumerate(QUESTIONS):
        for scale in LENGTH_SCALES:
            for paused in (False, True) if i in PAUSE_AFTER else (False,):
                key = hashlib.sha1(f"{VOICE}|{scale}|{paused}|{text}".encode()).hexdigest()[:16]
                path = folder / f"{key}.wav"
                if not path.exists():
                    if engine is None:
                        from deployments.tts.engine import PiperEngine

                        engine = PiperEngine()
                    parts = [text[: len(PAUSE_AFTER[i])], text[len(PAUSE_AFTER[i]) :]] if paused else [text]
                    write_wav(path, _join([_say(engine, p.strip(), scale) for p in parts]), RATE)
                pcm, _ = read_wav(str(path))
                out.append(Utterance(text, pcm, VOICE, scale, paused))
    return out


def _say(engine, text: str, scale: float) -> bytes:
    return b"".join(engine.synthesize(text, RATE, deterministic=True, length_scale=scale))


def _join(parts: list[bytes]) -> bytes:
    """Halves joined by exactly PAUSE_S of silence: the first's tail and the second's lead trimmed."""
    if len(parts) == 1:
        return parts[0]
    first, second = parts
    first = first[: len(first) - 2 * int(trailing_silence_s(first, RATE) * RATE)]
    x = np.frombuffer(second, dtype=np.int16)
    lead = int(np.argmax(np.abs(x) > 0.01 * 32768)) // (RATE // 100) * (RATE // 100)
    return first + bytes(2 * int(PAUSE_S * RATE)) + second[2 * lead :]
