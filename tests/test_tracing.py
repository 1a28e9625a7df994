"""The call tracer's plain side (serve_app/tracing.py) with a fake sink: which spans a turn makes,
where they sit in time, what is masked, and that tracing off loads nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from common.config import ConfigError, load_settings
from common.secret_store import split_env
from models.dialogue import TurnSummary
from models.session import TurnRecord
from models.state import ToolResult
from serve_app.tracing import NO_TRACE, REDACTED, CallTrace, Tracing, caller_hash, turn_tree
from tests.conftest import ROOT

MS = 1_000_000
CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"


class FakeSink:
    def __init__(self, fail: bool = False):
        self.calls, self.turns, self.ended, self.flushed, self.fail = [], [], [], 0, fail

    def start_call(self, session_id, user, start_ns):
        self.calls.append((session_id, user, start_ns))
        return session_id

    def turn(self, call, node):
        if self.fail:
            raise RuntimeError("exporter down")
        self.turns.append((call, node))

    def end_call(self, call, reason, end_ns):
        self.ended.append((call, reason, end_ns))

    def flush(self):
        self.flushed += 1


def tool_turn(sensitive: bool = False, model: str | None = "gpt-test") -> dict:
    summary = TurnSummary(
        intent="order_status",
        tool_results=[
            ToolResult(tool="verify_pin", ok=True, latency_ms=40.0),
            ToolResult(tool="order_status", ok=True, latency_ms=60.0, source="cache"),
        ],
        sensitive=sensitive,
        model=model,
        usage={"input": 120, "output": 30, "total": 150} if model else None,
    )
    record = TurnRecord(
        turn_id=3,
        source="speech",
        transcript=f"my card is {CARD}",
        sentences=[f"I will email {EMAIL}.", "Your order shipped."],
        summary=summary,
    )
    return {"eos_ns": 1_000 * MS, "source": "speech", "record": record, "transcript": f"card {CARD}"}


METRICS = {
    "endpoint_delay_ms": 500.0,
    "preempted": "none",
    "asr_provider": "whisper",
    "asr_compute_ms": 180.0,
    "eos_to_transcript_ms": 250.0,
    "dialogue_first_sentence_ms": 300.0,
    "dialogue_engine_ms": 280.0,
    "tts_first_audio_ms": 90.0,
    "eos_to_first_audio_ms": 700.0,
    "restored": True,
}


def test_a_turn_is_asr_dialogue_with_its_tools_and_tts_in_time_order():
    turn = tool_turn() | {"recorded_ns": 1_900 * MS}
    node = turn_tree(3, turn, METRICS, False, 4_000 * MS)
    assert node.name == "turn 3" and [c.name for c in node.children] == ["asr", "dialogue", "tts"]
    asr, dialogue, tts = node.children
    assert (node.start_ns, node.end_ns) == (1_000 * MS, 4_000 * MS)
    assert (asr.start_ns, asr.end_ns) == (1_000 * MS, 1_250 * MS)  # end of speech to the transcript
    assert (dialogue.start_ns, dialogue.end_ns) == (1_250 * MS, 1_900 * MS)  # to the reply stream's close
    assert dialogue.kind == "generation" and dialogue.model == "gpt-test" and dialogue.usage["total"] == 150
    assert dialogue.first_output_ns == 1_550 * MS
    tools = dialogue.children
    assert [(t.name, t.kind) for t in tools] == [("tool:verify_pin", "tool"), ("tool:order_status", "tool")]
    assert tools[0].start_ns == dialogue.start_ns and tools[0].end_ns == tools[1].start_ns == 1_290 * MS
    assert tools[1].end_ns == 1_350 * MS and tools[1].attributes["source"] == "cache"
    assert (tts.start_ns, tts.end_ns) == (1_610 * MS, 4_000 * MS)  # first audio at 1700 after 90 ms of TTS
    assert node.attributes["eos_to_first_audio_ms"] == 700.0 and "restored" not in node.attributes


def test_text_is_masked_and_a_secret_turn_keeps_no_transcript():
    node = turn_tree(3, tool_turn() | {"recorded_ns": 1_900 * MS}, METRICS, False, 4_000 * MS)
    dumped = json.dumps([node.attributes, *(c.attributes for c in node.children)])
    assert CARD not in dumped and EMAIL not in dumped and "[CARD]" in dumped and "[EMAIL]" in dumped
    secret = turn_tree(3, tool_turn(sensitive=True) | {"recorded_ns": 1_900 * MS}, METRICS, False, 4_000 * MS)
    assert secret.children[0].attributes["output"] == secret.children[1].attributes["input"] == REDACTED


def test_the_local_engine_gives_a_plain_dialogue_span():
    node = turn_tree(3, tool_turn(model=None) | {"recorded_ns": 1_900 * MS}, METRICS, False, 4_000 * MS)
    assert node.children[1].kind == "span" and node.children[1].usage is None


def test_a_turn_without_audio_has_no_tts_span_and_spans_never_run_backwards():
    metrics = {"endpoint_delay_ms": 0.0, "eos_to_transcript_ms": 0.0}  # typed text, the reply failed to speak
    node = turn_tree(3, tool_turn() | {"recorded_ns": 500 * MS}, metrics, False, 900 * MS)  # clock skew
    assert [c.name for c in node.children] == ["asr", "dialogue"]
    for span in [node, *node.children, *node.children[1].children]:
        assert span.end_ns >= span.start_ns


async def test_the_hooks_send_one_span_per_turn_and_flush_at_the_end():
    sink = FakeSink()
    trace = CallTrace(sink, "sess-1", "caller-555-0100", "secret")
    assert sink.calls[0][:2] == ("sess-1", caller_hash("caller-555-0100", "secret"))
    trace.turn_finished(1, None, False)  # the greeting: never started, not traced
    eos = time.monotonic() - 1.0
    trace.turn_started(2, eos, "speech")
    record = tool_turn()["record"].model_copy(update={"turn_id": 2})
    trace.turn_recorded(record, "my card is [CARD]")
    trace.turn_finished(2, METRICS, True)
    trace.turn_finished(2, METRICS, True)  # closed once
    await trace.end("caller_hangup")
    assert len(sink.turns) == 1 and sink.turns[0][1].attributes["interrupted"] is True
    assert abs(sink.turns[0][1].start_ns - (time.time_ns() - 1_000 * MS)) < 200 * MS  # eos on the wall clock
    assert sink.ended[0][:2] == ("sess-1", "caller_hangup") and sink.flushed == 1


async def test_a_failing_sink_costs_the_call_nothing():
    trace = CallTrace(FakeSink(fail=True), "sess-1", "c", "k")
    trace.turn_started(2, time.monotonic(), "text")
    trace.turn_recorded(tool_turn()["record"].model_copy(update={"turn_id": 2}), "")
    trace.turn_finished(2, METRICS, False)  # logged, not raised
    await trace.end("caller_hangup")


def test_the_caller_id_is_a_keyed_hash():
    assert caller_hash("+15550100", "k1") == caller_hash("+15550100", "k1") != caller_hash("+15550100", "k2")
    assert "5550100" not in caller_hash("+15550100", "k1") and len(caller_hash("+15550100", "k1")) == 16


def test_langfuse_needs_all_three_variables_and_its_secret_stays_a_secret(monkeypatch):
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert Tracing.from_settings(load_settings()).call("s", "c") is NO_TRACE
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    monkeypatch.setenv("LANGFUSE_HOST", "http://127.0.0.1:3000")
    with pytest.raises(ConfigError, match="set LANGFUSE_SECRET_KEY$"):
        load_settings()
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-1")
    monkeypatch.setenv("LANGFUSE_HOST", "127.0.0.1:3000")
    with pytest.raises(ConfigError, match="LANGFUSE_HOST must be an http"):
        load_settings()
    plain, secret = split_env({"LANGFUSE_PUBLIC_KEY": "pk", "LANGFUSE_SECRET_KEY": "sk", "LANGFUSE_HOST": "h"})
    assert set(secret) == {"LANGFUSE_SECRET_KEY"} and set(plain) == {"LANGFUSE_PUBLIC_KEY", "LANGFUSE_HOST"}


def test_tracing_off_never_imports_langfuse():
    probe = (
        "import sys; from common.config import load_settings; from serve_app.tracing import Tracing;"
        "import serve_app.conversation.call;"
        "t = Tracing.from_settings(load_settings()).call('s', 'c');"
        "print(type(t).__name__, 'langfuse' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["NoTrace", "False"]


async def test_a_call_that_declined_recording_sends_no_words_to_the_trace():
    from models.session import TurnContext, TurnRecorded
    from serve_app.conversation.record import Record

    class Session:
        async def record(self, record):
            ctx = TurnContext(session_id="s", caller_id="c", version=1, next_turn_id=3, memory={"consent": "declined"})
            return TurnRecorded(transcript="Jane Roe speaking", context=ctx)

    sink = FakeSink()
    trace = CallTrace(sink, "sess-1", "caller-1", "secret")
    record_of = Record(None, Session(), None, lambda metrics: None, lambda awaiting: None, trace)
    trace.turn_started(2, time.monotonic() - 1.0, "speech")
    turn = tool_turn()["record"].model_copy(update={"turn_id": 2, "transcript": "Jane Roe speaking"})
    await record_of.record(turn)
    trace.turn_finished(2, METRICS, False)
    assert len(sink.turns) == 1
    sent = repr(sink.turns)
    assert "Jane" not in sent and not any(s in sent for s in turn.sentences if s), sent
