"""What load-test callers say: support questions spoken in two voices at three speeds, some with a
hesitation mid-sentence, and the questions they type instead.

Voices: piper's `joe` (deployments.tts.engine.PiperEngine, the agent's own voice) and Debian's
`espeak-ng` with its `en-us+f3` variant (a formant synthesizer, female pitch: nothing like the
agent, so the ASR does not only ever hear its own TTS). Speeds: piper `length_scale` 0.85, 1.0
and 1.2 (espeak-ng gets the matching words per minute). A sentence written with `|` is said in
two parts with a pause spliced between them at that word boundary: the two parts are synthesized
apart, their own edge silence trimmed, and PAUSE_S of silence put between the voiced parts, a
hesitation just under the Gateway's 500 ms endpoint, which a run-ahead turn may start on and must
then throw away. Rendered once and cached as WAVs (16 kHz mono s16le) keyed by voice, speed and
text, so changing any of them renders that utterance again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common.audio import leading_silence_s, read_wav, resample, trailing_silence_s, write_wav

RATE = 16000
PAUSE_S = 0.45
VOICES = ("piper:joe", "espeak-ng:en-us+f3")
LENGTH_SCALES = (1.0, 0.85, 1.2)
ESPEAK_WPM = 165  # espeak-ng's words per minute at length_scale 1.0
DEFAULT_CACHE = Path.home() / ".cache" / "voice-agent" / "loadtest-utterances"

# Support questions a caller might ask, in our own words; `|` marks a mid-sentence pause.
SPOKEN = [
    "Could you tell me where my package is right now?",
    "I ordered a lamp last week | and it still has not arrived.",
    "Can I send back a pair of shoes that do not fit?",
    "How many days do I have to return something I bought?",
    "What time does your support line close tonight?",
    "Is anyone there to help me | on a Saturday morning?",
    "How long does delivery usually take to Texas?",
    "Do you charge more if I want it delivered faster?",
    "My blender stopped working after two months, | is that covered?",
    "What does the guarantee on your headphones include?",
    "I would like to know if my refund has gone through.",
    "Can I change the delivery address | on my order?",
    "Are your phone lines open on bank holidays?",
    "Do you deliver to addresses in other countries?",
    "If my kettle arrives broken, do I pay to send it back?",
    "How do I get a faulty toaster repaired | under warranty?",
    "When will my parcel leave your warehouse?",
    "Can I swap a jacket for a bigger size?",
]

TYPED_TURNS: list[str] = [
    "what are your hours on weekdays",
    "how much is standard shipping",
    "can i return an opened item",
    "how long is the warranty on electronics",
    "has my order shipped yet",
    "do you ship overseas",
    "are you open on sundays",
    "how do i start a return",
]


@dataclass(frozen=True)
class Utterance:
    text: str
    pcm: bytes  # 16 kHz mono s16le
    voice: str
    length_scale: float
    paused: bool


def load_utterances(cache_dir: Path | None = None) -> list[Utterance]:
    """Every spoken question, rendered on first use and read from the cache after."""
    folder = Path(cache_dir or os.environ.get("VOICE_LOADTEST_UTTERANCES", DEFAULT_CACHE))
    folder.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    out = []
    for i, written in enumerate(SPOKEN):
        voice, scale = VOICES[i % len(VOICES)], LENGTH_SCALES[(i // len(VOICES)) % len(LENGTH_SCALES)]
        path = folder / f"{_key(written, voice, scale)}.wav"
        if path.exists():
            pcm, _ = read_wav(str(path))
        else:
            parts = [synth.say(p.strip(), voice, scale) for p in written.split("|")]
            pcm = splice(parts, PAUSE_S) if len(parts) > 1 else parts[0]
            tmp = path.with_suffix(".tmp")
            write_wav(tmp, pcm, RATE)
            tmp.replace(path)  # a run stopped mid-write leaves no half WAV in the cache
        text = " ".join(written.replace("|", " ").split())
        out.append(Utterance(text, pcm, voice, scale, "|" in written))
    return out


def splice(parts: list[bytes], pause_s: float, rate: int = RATE) -> bytes:
    """Join spoken parts with exactly `pause_s` between the voiced audio of each (their own edge
    silence trimmed), keeping the first part's lead-in and the last part's tail."""
    gap = bytes(int(pause_s * rate) * 2)
    pieces = []
    for i, pcm in enumerate(parts):
        start = 0 if i == 0 else _bytes(leading_silence_s(pcm, rate), rate)
        end = len(pcm) - (0 if i == len(parts) - 1 else _bytes(trailing_silence_s(pcm, rate), rate))
        pieces.append(pcm[start:end])
    return gap.join(pieces)


def _bytes(seconds: float, rate: int) -> int:
    return int(round(seconds * rate)) * 2


def _key(written: str, voice: str, scale: float) -> str:
    return hashlib.sha256(f"{voice}|{scale}|{PAUSE_S}|{written}".encode()).hexdigest()[:20]


class Synth:
    """Both voices, each loaded only if an utterance in it is missing from the cache (also the
    end-of-turn set's: loadtests/turn_set.py)."""

    def __init__(self):
        self._piper = None

    def say(self, text: str, voice: str, length_scale: float) -> bytes:
        engine, _, variant = voice.partition(":")
        if engine == "piper":
            if self._piper is None:
                from deployments.tts.engine import PiperEngine

                self._piper = PiperEngine()
            return b"".join(self._piper.synthesize(text, RATE, deterministic=True, length_scale=length_scale))
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise RuntimeError("espeak-ng not found: scripts/setup.sh installs it (Debian package espeak-ng)")
        wpm = str(round(ESPEAK_WPM / length_scale))
        wav = subprocess.run([exe, "-v", variant, "-s", wpm, "--stdout", text], capture_output=True, check=True).stdout
        pcm, rate = read_wav(wav)
        return resample(pcm, rate, RATE)
