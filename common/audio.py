"""PCM helpers: resampling (whole clips and streams) and WAV files. PCM is s16le mono."""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr


def resample(pcm16: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a complete clip (a synthesized sentence, a recorded utterance)."""
    if in_rate == out_rate or not pcm16:
        return pcm16
    samples = np.frombuffer(pcm16, dtype=np.int16)
    return soxr.resample(samples, in_rate, out_rate, quality="HQ").astype(np.int16).tobytes()


class StreamResampler:
    """Resample a live stream chunk by chunk without clicks at chunk edges."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        )

    def process(self, pcm16: bytes, last: bool = False) -> bytes:
        if self._stream is None:
            return pcm16
        samples = np.frombuffer(pcm16, dtype=np.int16)
        return self._stream.resample_chunk(samples, last=last).tobytes()


def _voiced_hops(pcm16: bytes, rate: int, threshold: float) -> tuple[np.ndarray, int]:
    """Indices of the 10 ms hops louder than `threshold` (RMS), and how many whole hops there are."""
    hop = rate // 100
    x = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768
    hops = len(x) // hop
    rms = np.sqrt(np.mean(x[: hops * hop].reshape(hops, hop) ** 2, axis=1)) if hops else np.zeros(0)
    return np.flatnonzero(rms > threshold), hops


def trailing_silence_s(pcm16: bytes, rate: int = 16000, threshold: float = 0.01) -> float:
    """Silence after the last voiced 10 ms of a clip: a caller's voice-to-voice clock starts at the
    last speech, not at the end of the clip's tail."""
    voiced, hops = _voiced_hops(pcm16, rate, threshold)
    return float((hops - 1 - voiced[-1]) * (rate // 100) / rate) if len(voiced) else 0.0


def leading_silence_s(pcm16: bytes, rate: int = 16000, threshold: float = 0.01) -> float:
    """Silence before the first voiced 10 ms of a clip: a barge-in's clock starts at the first speech."""
    voiced, _ = _voiced_hops(pcm16, rate, threshold)
    return float(voiced[0] * (rate // 100) / rate) if len(voiced) else 0.0


def read_wav(path_or_bytes) -> tuple[bytes, int]:
    """Read a 16-bit PCM WAV, down-mixing to mono; returns (pcm16, sample_rate)."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with wave.open(src, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path_or_bytes!r:.60}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.tobytes(), rate


def write_wav(path, pcm16: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16)
