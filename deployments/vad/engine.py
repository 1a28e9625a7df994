"""Voice activity detection (silero ONNX through onnxruntime) and utterance endpointing.

No torch: the model file is found inside the silero-vad package without importing it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # silero needs exactly 512 new samples per call at 16 kHz (32 ms)
CONTEXT_SAMPLES = 64
FRAME_MS = FRAME_SAMPLES * 1000 / SAMPLE_RATE
VAD_RATES = (16000, 8000)  # silero's two models: 8 kHz takes 256 samples (the same 32 ms) and 32 of context


def silero_model_path() -> str:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise RuntimeError("silero-vad is not installed: run the setup script")
    return os.path.join(os.path.dirname(spec.origin), "data", "silero_vad.onnx")


class SileroVAD:
    """One ONNX session shared by every call of a process; state lives in each VADStream."""

    def __init__(self, model_path: str | None = None, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model_path or silero_model_path(), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def stream(self, rate: int = SAMPLE_RATE) -> VADStream:
        return VADStream(self, rate)

    def _run(self, window: np.ndarray, state: np.ndarray, sr: np.ndarray) -> tuple[float, np.ndarray]:
        out, new_state = self._session.run(None, {"input": window[None, :], "state": state, "sr": sr})
        return float(out[0][0]), new_state


class VADStream:
    """Per-call recurrent state: feed 512-sample float32 frames at 16 kHz, get speech probabilities.

    rate=8000 judges every second sample with silero's 8 kHz model: for a phone call's audio,
    upsampled from 8 kHz and so empty above 4 kHz, that is the narrowband signal itself, which
    the 8 kHz model was trained on (benchmarks/phone_hearing.py measures the difference)."""

    def __init__(self, vad: SileroVAD, rate: int = SAMPLE_RATE):
        if rate not in VAD_RATES:
            raise ValueError(f"silero VAD runs at {VAD_RATES}, not {rate} Hz")
        self._vad = vad
        self.rate = rate
        self._step = SAMPLE_RATE // rate
        self._sr = np.array(rate, dtype=np.int64)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES // self._step, dtype=np.float32)

    def prob(self, frame: np.ndarray) -> float:
        frame = frame[:: self._step]
        window = np.concatenate([self._context, frame])
        p, self._state = self._vad._run(window, self._state, self._sr)
        self._context = frame[-len(self._context) :]
        return p


@dataclass
class SpeechStarted:
    at_sample: int


@dataclass
class SpeechPaused:
    """The caller has been silent for `preemptive_ms`: a good moment to transcribe early."""

    audio: bytes  # the utterance so far, pre-roll included
    at_sample: int


@dataclass
class SpeechResumed:
    """Speech again after a SpeechPaused: anything started early on that audio is stale."""

    at_sample: int


@dataclass
class SpeechEnded:
    audio: bytes  # PCM s16le 16 kHz, pre-roll included
    speech_ms: float
    at_sample: int  # stream position where the endpoint was decided
    trailing_silence_ms: float = 0.0  # how long after the last speech the endpoint fired
    forced: bool = False  # cut at max_utterance_s rather than at silence


@dataclass
class Endpointer:
    """Cuts a 16 kHz PCM stream into utterances: speech for min_speech_ms starts one,
    end_silence_ms of silence ends it. Speech too short to count is dropped as noise.
    A frame is voiced at `threshold` and silent under `release` (None: 0.15 under the threshold);
    in between it counts as neither, so a wavering probability neither starts nor ends speech."""

    stream: VADStream
    threshold: float = 0.5
    release: float | None = None
    min_speech_ms: float = 200
    end_silence_ms: float = 500
    max_utterance_s: float = 30.0
    pre_roll_ms: float = 300
    preemptive_ms: float = 200  # silence that emits SpeechPaused; 0 turns it off
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    _history: list = field(default_factory=list)  # recent frames for pre-roll
    _utterance: list = field(default_factory=list)
    _speaking: bool = False
    _speech_frames: int = 0
    _silence_frames: int = 0
    _candidate_frames: int = 0
    _position: int = 0
    _paused: bool = False
    _end_after_ms: float | None = None  # this pause's endpoint, from the end-of-turn decision

    def end_after(self, silence_ms: float | None) -> None:
        """End the utterance in progress after this much silence instead of end_silence_ms
        (None: back to it). Only for the current pause: speech resuming or the end clears it."""
        if self._speaking:
            self._end_after_ms = silence_ms

    @property
    def position(self) -> int:
        """Samples consumed so far: where the stream is now."""
        return self._position

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def hearing_voice(self) -> bool:
        """Speech, or voiced frames that may yet become speech (not enough for an utterance yet)."""
        return self._speaking or self._candidate_frames > 0

    @property
    def speech_ms(self) -> float:
        """Voiced time in the utterance in progress (0 when none)."""
        return self._speech_frames * FRAME_MS if self._speaking else 0.0

    @property
    def silence_ms(self) -> float:
        """Silence since the utterance in progress last had voice (0 when none)."""
        return self._silence_frames * FRAME_MS if self._speaking else 0.0

    def utterance_audio(self) -> bytes:
        """The utterance in progress so far (for partial transcripts)."""
        return np.concatenate(self._utterance).tobytes() if self._speaking and self._utterance else b""

    def feed(self, pcm16: bytes) -> list:
        """Consume PCM s16le at 16 kHz; return the SpeechStarted/SpeechEnded events it caused."""
        samples = np.frombuffer(pcm16, dtype=np.int16)
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        events = []
        n_frames = len(buf) // FRAME_SAMPLES
        for i in range(n_frames):
            frame = buf[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            events.extend(self._frame(frame))
        self._pending = buf[n_frames * FRAME_SAMPLES :].copy()
        return events

    def _frame(self, frame: np.ndarray) -> list:
        self._position += FRAME_SAMPLES
        p = self.stream.prob(frame.astype(np.float32) / 32768.0)
        voiced = p >= self.threshold
        unvoiced = p < (max(self.threshold - 0.15, 0.05) if self.release is None else self.release)
        pre_roll_frames = max(1, int(self.pre_roll_ms / FRAME_MS))
        min_speech_frames = max(1, round(self.min_speech_ms / FRAME_MS))
        if not self._speaking:
            self._history.append(frame)
            if voiced:
                self._candidate_frames += 1
            elif unvoiced:
                self._candidate_frames = 0
            if self._candidate_frames >= min_speech_frames:
                keep = pre_roll_frames + self._candidate_frames
                self._utterance = self._history[-keep:]
                self._history = []
                self._speaking = True
                self._speech_frames = self._candidate_frames
                self._silence_frames = 0
                self._candidate_frames = 0
                return [SpeechStarted(at_sample=self._position)]
            del self._history[: -(pre_roll_frames + min_speech_frames)]
            return []
        self._utterance.append(frame)
        events = []
        if voiced:
            self._speech_frames += 1
            self._silence_frames = 0
            if self._paused:
                self._paused = False
                self._end_after_ms = None  # the decision was about a pause that is over
                events.append(SpeechResumed(at_sample=self._position))
        elif unvoiced:
            self._silence_frames += 1
        end_ms = self.end_silence_ms if self._end_after_ms is None else self._end_after_ms
        if self._silence_frames * FRAME_MS >= end_ms:
            self._paused = False
            return [*events, self._end(forced=False)]
        if self.preemptive_ms and not self._paused and self._silence_frames * FRAME_MS >= self.preemptive_ms:
            self._paused = True
            events.append(SpeechPaused(audio=np.concatenate(self._utterance).tobytes(), at_sample=self._position))
        if len(self._utterance) * FRAME_MS >= self.max_utterance_s * 1000:
            self._paused = False
            return [*events, self._end(forced=True)]
        return events

    def _end(self, forced: bool) -> SpeechEnded:
        audio = np.concatenate(self._utterance).tobytes() if self._utterance else b""
        ev = SpeechEnded(
            audio=audio,
            speech_ms=self._speech_frames * FRAME_MS,
            at_sample=self._position,
            trailing_silence_ms=self._silence_frames * FRAME_MS,
            forced=forced,
        )
        self._utterance = []
        self._end_after_ms = None
        self._speaking = False
        self._speech_frames = 0
        self._silence_frames = 0
        return ev
