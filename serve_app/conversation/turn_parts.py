"""The pieces a call's turn is made of: what came in, what was run ahead, what was cut off."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from serve_app.conversation.prefetch import Prefetch
from serve_app.conversation.session_client import Prepared


@dataclass
class TurnInput:
    source: str  # speech, text; reply (session API); say, checkin, goodbye (agent speaks as is)
    eos_at: float  # monotonic time the caller stopped speaking (or sent the text)
    endpoint_ms: float = 0.0
    audio: bytes = b""
    end_sample: int = 0  # where the utterance ended in the call's 16 kHz stream
    text: str = ""
    ahead: asyncio.Task | None = None  # the run-ahead started when the caller paused
    over_agent: bool = False  # said while the agent was talking
    turn_end: dict | None = None  # the end-of-turn decision that set the endpoint (turn.metrics)


@dataclass
class Ahead:
    """A turn run ahead of the endpoint: transcript, and maybe the reply and its first audio."""

    text: str
    confidence: float | None
    ready_at: float
    prepared: Prepared | None = None  # the reply, run ahead
    audio: Prefetch | None = None  # the first sentence's audio: begun, still streaming
    dialogue_ms: float = 0.0
    tts_ms: float = 0.0
    provider: str = "whisper"  # who transcribed it


@dataclass
class Interrupted:
    """A reply stopped by a barge-in, waiting to learn if the caller really took the turn."""

    turn_id: int | None
    sentences: list[str]
    heard: list[str]
    resume_at: int
    metrics: dict


def discard_ahead(task: asyncio.Task | None) -> None:
    """Drop a run-ahead: cancel it, or stop the audio it left streaming."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    elif not task.cancelled() and task.exception() is None and task.result().audio is not None:
        task.result().audio.cancel()


OWN_STAGES = ("endpoint_delay_ms", "asr_compute_ms", "dialogue_engine_ms", "tts_first_audio_ms")


def orchestration_ms(metrics: dict) -> float | None:
    """Server time to first audio spent outside the endpoint wait, ASR, the dialogue engine and
    TTS: the hops and queues between them. Only for a turn run at its endpoint (not ahead),
    where each of those stages was measured."""
    if metrics.get("preempted") != "none" or "eos_to_first_audio_ms" not in metrics:
        return None
    if any(not isinstance(metrics.get(stage), (int, float)) for stage in OWN_STAGES):
        return None
    return round(metrics["eos_to_first_audio_ms"] - sum(metrics[stage] for stage in OWN_STAGES), 1)


def ms_since(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)


async def aiter_of(items):
    for item in items:
        yield item
