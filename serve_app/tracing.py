"""A trace per call (Langfuse when configured): the call, a span per turn, and under it the
turn's ASR, dialogue (with its tool calls) and TTS, built from the timings the turn already
measures (`turn.metrics`) and its record (transcript, reply, tool results).

The pipeline calls four hooks on a `CallTrace`; with tracing off it gets `NO_TRACE`, whose hooks
do nothing, and `langfuse` is never imported. Spans are built when a turn closes, from its
metrics: tool calls run in the Dialogue replica, so their times only come back as latencies.
Every text put on a span is masked here (common/pii.py); the caller id is kept only as a keyed
hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from common.pii import mask_pii
from models.session import TurnRecord

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"


@dataclass
class SpanNode:
    """One span to send: times in epoch nanoseconds, attributes already masked."""

    name: str
    kind: str  # span, generation, tool
    start_ns: int
    end_ns: int
    attributes: dict = field(default_factory=dict)
    children: list[SpanNode] = field(default_factory=list)
    model: str | None = None  # a generation's
    usage: dict[str, int] | None = None
    first_output_ns: int | None = None  # a generation's completion start


class Sink(Protocol):
    """Where spans go (Langfuse, or a test's list). Called from the call's event loop, except flush."""

    def start_call(self, session_id: str, user: str, start_ns: int) -> object: ...

    def turn(self, call: object, node: SpanNode) -> None: ...

    def end_call(self, call: object, reason: str, end_ns: int) -> None: ...

    def flush(self) -> None: ...


class NoTrace:
    """Tracing off: every hook is a no-op."""

    def turn_started(self, turn_id: int, eos_at: float, source: str) -> None:
        pass

    def turn_recorded(self, record: TurnRecord, stored_transcript: str) -> None:
        pass

    def turn_finished(self, turn_id: int, metrics: dict | None, interrupted: bool) -> None:
        pass

    def end(self, reason: str) -> asyncio.Task | None:
        return None


NO_TRACE = NoTrace()
_FLUSHING: set[asyncio.Task] = set()  # flushes under way, held until done


def caller_hash(caller_id: str, key: str) -> str:
    """A stable pseudonym for the caller: keyed, so a phone number cannot be found by trying them all."""
    return hmac.new(key.encode(), caller_id.encode(), hashlib.sha256).hexdigest()[:16]


def mask_value(value):
    """mask_pii through any JSON-like value (the Langfuse client's `mask` too)."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    return value


def _ns(ms: float) -> int:
    return int(ms * 1_000_000)


class CallTrace:
    """One call's trace: the turns between `turn_started` and `turn_finished`, sent as each closes."""

    def __init__(self, sink: Sink, session_id: str, caller_id: str, key: str):
        self._sink = sink
        self._call = sink.start_call(session_id, caller_hash(caller_id, key), time.time_ns())
        self._open: dict[int, dict] = {}

    @staticmethod
    def _wall_ns(monotonic: float) -> int:
        return time.time_ns() - _ns((time.monotonic() - monotonic) * 1000)

    def turn_started(self, turn_id: int, eos_at: float, source: str) -> None:
        self._open[turn_id] = {"eos_ns": self._wall_ns(eos_at), "source": source}

    def turn_recorded(self, record: TurnRecord, stored_transcript: str) -> None:
        """The reply stream closed (its end is the dialogue's); the transcript as the store keeps it."""
        if (turn := self._open.get(record.turn_id)) is not None:
            turn.update(record=record, transcript=stored_transcript, recorded_ns=time.time_ns())

    def turn_finished(self, turn_id: int, metrics: dict | None, interrupted: bool) -> None:
        turn = self._open.pop(turn_id, None)
        if turn is None or metrics is None or "record" not in turn:
            return
        try:
            node = turn_tree(turn_id, turn, metrics, interrupted, time.time_ns())
            self._sink.turn(self._call, node)
        except Exception as exc:  # tracing never costs the call anything
            log.warning("turn %s not traced: %r", turn_id, exc)

    def end(self, reason: str) -> asyncio.Task | None:
        """Close the call's trace and send what is buffered: in a thread (the exporter blocks, up to
        its timeout when Langfuse is down), and not awaited, so the call's line is released now."""
        try:
            self._sink.end_call(self._call, reason, time.time_ns())
        except Exception as exc:
            log.warning("trace not closed: %r", exc)
            return None
        task = asyncio.get_running_loop().create_task(_flush(self._sink))
        _FLUSHING.add(task)
        task.add_done_callback(_FLUSHING.discard)
        return task


async def _flush(sink: Sink) -> None:
    try:
        await asyncio.to_thread(sink.flush)
    except Exception as exc:
        log.warning("trace not flushed: %r", exc)


def turn_tree(turn_id: int, turn: dict, metrics: dict, interrupted: bool, end_ns: int) -> SpanNode:
    """The turn's span and its children, placed by the turn's own metrics from the end of
    speech (`eos_ns`): ASR until the transcript, the dialogue from then until its stream closed
    (tool calls inside it, one after another), TTS from its request to the end of the audio."""
    record: TurnRecord = turn["record"]
    summary = record.summary
    eos = turn["eos_ns"]
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    transcript_at = eos + _ns(max(0.0, numbers.get("eos_to_transcript_ms", 0.0)))
    sensitive = bool(summary and summary.sensitive)
    heard = REDACTED if sensitive else mask_pii(turn["transcript"])
    asr = SpanNode(
        "asr",
        "span",
        eos,
        transcript_at,
        {"provider": str(metrics.get("asr_provider", "")), "output": heard, "confidence": record.confidence}
        | {k: numbers[k] for k in ("asr_compute_ms", "eos_to_transcript_ms") if k in numbers},
    )
    dialogue_end = max(transcript_at, turn["recorded_ns"])
    first = numbers.get("dialogue_first_sentence_ms")
    dialogue = SpanNode(
        "dialogue",
        "generation" if summary and summary.model else "span",
        transcript_at,
        dialogue_end,
        {
            "input": heard,
            "output": mask_pii(" ".join(record.sentences)),
            "intent": summary.intent if summary else None,
            "escalate": summary.escalate if summary else None,
        }
        | {k: numbers[k] for k in ("dialogue_first_sentence_ms", "dialogue_engine_ms") if k in numbers},
        model=summary.model if summary else None,
        usage=summary.usage if summary else None,
        first_output_ns=transcript_at + _ns(first) if first is not None else None,
    )
    cursor = transcript_at
    for result in summary.tool_results if summary else []:
        stop = min(dialogue_end, cursor + _ns(result.latency_ms))
        attrs = {"ok": result.ok, "error": result.error, "source": result.source, "attempts": result.attempts}
        attrs["latency_ms"] = result.latency_ms
        dialogue.children.append(SpanNode(f"tool:{result.tool}", "tool", cursor, stop, attrs))
        cursor = stop
    children = [asr, dialogue]
    if "eos_to_first_audio_ms" in numbers:
        first_audio = eos + _ns(numbers["eos_to_first_audio_ms"])
        tts_start = max(eos, first_audio - _ns(numbers.get("tts_first_audio_ms", 0.0)))
        tts_attrs = {"tts_first_audio_ms": numbers.get("tts_first_audio_ms"), "interrupted": interrupted}
        children.append(SpanNode("tts", "span", tts_start, max(tts_start, end_ns), tts_attrs))
    attrs = {"turn_id": turn_id, "source": turn["source"], "interrupted": interrupted}
    attrs |= {"preempted": str(metrics.get("preempted", "")), **numbers}
    return SpanNode(f"turn {turn_id}", "span", eos, max(eos, end_ns), attrs, children)


class Tracing:
    """Per replica: a `CallTrace` for each call, or `NO_TRACE` when no sink is configured."""

    def __init__(self, sink: Sink | None = None, key: str = ""):
        self._sink, self._key = sink, key
        self.on = sink is not None

    @classmethod
    def from_settings(cls, settings) -> Tracing:
        if settings.langfuse_host is None:
            return cls()
        from serve_app.tracing_langfuse import LangfuseSink  # only now: langfuse is heavy

        secret = settings.langfuse_secret_key.get_secret_value()
        return cls(LangfuseSink(settings.langfuse_public_key, secret, settings.langfuse_host), secret)

    def call(self, session_id: str, caller_id: str) -> CallTrace | NoTrace:
        if self._sink is None:
            return NO_TRACE
        try:
            return CallTrace(self._sink, session_id, caller_id, self._key)
        except Exception as exc:
            log.warning("call %s not traced: %r", session_id, exc)
            return NO_TRACE
