"""The platform's metrics come from the catalog (common/metric_catalog.py) with bounded tag
values; the Gateway maps turn stages and end reasons onto them, the tool router counts calls
and failures. Pure parts only: tests/test_prometheus.py scrapes the real thing."""

import asyncio

import pytest

from common.metric_catalog import (
    BY_NAME,
    CATALOG,
    CONNECT_REJECTED_CODES,
    DYNAMIC_TAGS,
    ESCALATION_REASONS,
    OTHER,
    SESSION_OUTCOMES,
    bounded,
)
from common.metrics import Meters
from deployments.dialogue.support import HANDOFF
from deployments.tools.breaker import CLOSED, HALF_OPEN, OPEN
from deployments.tools.breaker_actor import STATE_VALUES
from deployments.tools.router import ToolRouter, ToolSpec
from models.protocol import ProtocolError, parse_connect
from serve_app.call_metrics import NAMES, OUTCOMES, STAGES, CallMeters, outcome
from tests.test_tools import FlakyBackend, LocalBreaker


class Fake:
    """A Ray metric's recording surface: what was recorded, with which tags."""

    def __init__(self, spec):
        self.spec, self.calls = spec, []

    def inc(self, value=1.0, tags=None):
        self.calls.append(("inc", value, tags))

    def set(self, value, tags=None):
        self.calls.append(("set", value, tags))

    def observe(self, value, tags=None):
        self.calls.append(("observe", value, tags))


def fake_meters(*names, **kw):
    made = {}

    def factory(spec):
        made[spec.name] = Fake(spec)
        return made[spec.name]

    return Meters(*names, factory=factory, refresh_s=None, **kw), made


def test_every_tag_is_enumerated_in_the_catalog_or_by_its_recorder():
    for spec in CATALOG:
        for key in spec.tag_keys:
            assert key in spec.values or key in DYNAMIC_TAGS, (spec.name, key)
            assert OTHER not in spec.values.get(key, ()), (spec.name, key)


def test_a_value_outside_its_set_is_recorded_as_other():
    spec = BY_NAME["voice_escalations_total"]
    assert bounded(spec, {"reason": "auth_locked"}) == {"reason": "auth_locked"}
    assert bounded(spec, {"reason": "card 4111 1111 1111 1111"}) == {"reason": OTHER}
    assert bounded(spec, None) == {"reason": OTHER}
    tools = BY_NAME["voice_tool_calls_total"]
    assert bounded(tools, {"tool": "verify_pin"}) == {"tool": OTHER}  # dynamic: nothing allowed unless passed
    assert bounded(tools, {"tool": "verify_pin"}, {"tool": ("verify_pin",)}) == {"tool": "verify_pin"}


def test_meters_build_each_catalog_metric_once_and_bound_its_tags():
    meters, made = fake_meters("voice_sessions_total", "voice_turn_latency_ms", "voice_active_sessions")
    meters.inc("voice_sessions_total", {"outcome": "completed"})
    meters.inc("voice_sessions_total", {"outcome": "whatever"})
    meters.observe("voice_turn_latency_ms", 812.5)
    meters.set("voice_active_sessions", 3)
    assert made["voice_sessions_total"].calls == [
        ("inc", 1.0, {"outcome": "completed"}),
        ("inc", 1.0, {"outcome": OTHER}),
    ]
    assert made["voice_turn_latency_ms"].calls == [("observe", 812.5, None)]
    assert made["voice_active_sessions"].calls == [("set", 3, None)]
    meters.set("voice_active_sessions", 1)
    meters.refresh()  # Ray forgets a gauge not set again within two export intervals: it is set again
    assert made["voice_active_sessions"].calls[-2:] == [("set", 1, None), ("set", 1, None)]
    assert made["voice_sessions_total"].calls[-1] == ("inc", 1.0, {"outcome": OTHER})  # counters are left alone
    with pytest.raises(KeyError):
        Meters("voice_made_up_total", factory=Fake)  # not in the catalog: fails at start, not at first use


def test_ray_metrics_are_built_with_the_catalogs_kind_tags_and_buckets():
    from ray.serve import metrics

    from common.metrics import build

    latency = build(BY_NAME["voice_turn_latency_ms"])
    assert isinstance(latency, metrics.Histogram) and latency.info["name"] == "voice_turn_latency_ms"
    assert tuple(latency.boundaries) == BY_NAME["voice_turn_latency_ms"].boundaries
    assert isinstance(build(BY_NAME["voice_active_sessions"]), metrics.Gauge)
    tools = build(BY_NAME["voice_tool_calls_total"])
    assert isinstance(tools, metrics.Counter) and tools.info["tag_keys"] == ("tool",)


def test_call_meters_map_turn_stages_and_end_reasons():
    meters, made = fake_meters(*NAMES)
    latencies = []
    calls = CallMeters(5, latencies.append, meters)
    assert made["voice_capacity_sessions"].calls == [("set", 5, None)]
    assert made["voice_active_sessions"].calls == [("set", 0, None)]  # exported before the first call
    spoken = {
        "eos_to_first_audio_ms": 640.0,
        "eos_to_transcript_ms": 210.0,
        "asr_provider": "whisper",
        "dialogue_first_sentence_ms": 120.0,
        "tts_first_audio_ms": 80.0,
        "orchestration_ms": 9.0,
        "preempted": "none",
    }
    calls.turn(spoken)
    calls.turn({"eos_to_transcript_ms": 0.0, "preempted": "none"})  # typed: no ASR ran, no ASR latency
    assert made["voice_turn_latency_ms"].calls == [("observe", 640.0, None)]
    assert made["voice_asr_latency_ms"].calls == [("observe", 210.0, None)]
    assert made["voice_llm_latency_ms"].calls == [("observe", 120.0, None)]
    assert made["voice_tts_first_chunk_ms"].calls == [("observe", 80.0, None)]
    assert latencies == [640.0]  # the load shedder hears the turn latency alone
    calls.barge_in()
    calls.ended("hangup")
    calls.ended("escalated")
    calls.ended("server_error")
    calls.ended("protocol_violation_of_the_week")
    calls.rejected("overloaded")
    assert made["voice_barge_ins_total"].calls == [("inc", 1.0, None)]
    outcomes = [tags["outcome"] for _, _, tags in made["voice_sessions_total"].calls]
    assert outcomes == ["completed", "escalated", "error", OTHER]
    assert made["voice_connect_rejected_total"].calls == [("inc", 1.0, {"code": "overloaded"})]
    assert set(STAGES.values()) <= {s.name for s in CATALOG if s.kind == "histogram"}


def test_outcomes_and_reasons_are_the_catalogs_sets():
    assert set(OUTCOMES.values()) == set(SESSION_OUTCOMES)
    assert outcome("caller_disconnected") == "dropped" and outcome("draining") == "moved"
    assert set(HANDOFF) == set(ESCALATION_REASONS)  # every reason the agent escalates for is a known label
    assert {STATE_VALUES[CLOSED], STATE_VALUES[HALF_OPEN], STATE_VALUES[OPEN]} == {0, 1, 2}
    assert STATE_VALUES[OPEN] == 2  # "any breaker open": max(voice_breaker_state) == 2


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"caller_id": "a b"},
        {"caller_id": "a", "locale": "!!"},
        {"caller_id": "a", "sample_rate": "7"},
        {"caller_id": "a", "resume": "?"},
    ],
)
def test_every_connect_refusal_code_is_a_known_label(query):
    with pytest.raises(ProtocolError) as refused:
        parse_connect(query)
    assert refused.value.code in CONNECT_REJECTED_CODES


def test_the_router_reports_each_call_and_only_real_failures():
    seen = []
    tools = [
        ToolSpec("lookup", FlakyBackend(), idempotent=True),
        ToolSpec("refusing", FlakyBackend(refuse=True), idempotent=True),
        ToolSpec("down", FlakyBackend(fail_times=99), idempotent=True, retries=1, backoff_s=0.0),
    ]
    breaker = LocalBreaker(failure_threshold=99)
    router = ToolRouter(tools, breaker, on_call=lambda tool, failed: seen.append((tool, failed)))
    assert router.names == ("lookup", "refusing", "down")

    async def run():
        for name in ("lookup", "refusing", "down", "made_up"):
            await router.call(name, {})

    asyncio.run(run())
    # a tool's own "no" (not found) is an answer; a backend down and an unknown tool are failures
    assert seen == [("lookup", False), ("refusing", False), ("down", True), ("made_up", True)]
