"""Every metric the platform exports, in one place: the Serve deployments create them from here,
and the alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard (deploy/grafana/)
are tested against it, so a name exists once across code, rules, dashboards and docs.

Ray exports custom metrics prefixed `ray_` (`voice_turn_latency_ms` is scraped as
`ray_voice_turn_latency_ms_bucket`, `_sum`, `_count`). Tag values are enumerated, never caller
data: an unbounded label would both leak and explode the series count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

LATENCY_BOUNDARIES_MS = (50, 100, 200, 300, 400, 500, 600, 700, 1000, 1200, 1500, 2000, 2500, 3000, 5000, 10000)
RAY_PREFIX = "ray_"
OTHER = "other"  # what any tag value outside its enumerated set is recorded as

# Tag values each labelled metric may carry (plus OTHER). `tool` and `breaker` take the names the
# tool registry (deployments/dialogue/tools.py) and the breaker actor hold: code's names, never
# caller data; the recorder passes those sets itself.
ESCALATION_REASONS = ("caller_request", "consecutive_failures", "auth_locked", "low_confidence")
CONNECT_REJECTED_CODES = (
    "invalid_caller_id",
    "invalid_locale",
    "unsupported_sample_rate",
    "invalid_resume",
    "origin_forbidden",
    "rate_limited",
    "draining",
    "replica_full",
    "resume_refused",
    "phone_refused",
    "no_warm_session",
    "at_capacity",
    "overloaded",
    "start_timeout",
    "server_error",
)
DYNAMIC_TAGS = ("tool", "breaker")

# voice_sessions_total{outcome}: a call's end reason folded into this fixed set, so the label stays
# bounded; the "session error rate above 5 %" alert (deploy/prometheus/alerts.yml) reads outcome="error".
# completed: hang-up by either side or max turns; timeout: idle or TTL; escalated: handed to a
# human; dropped: the line went away without a hang-up; moved: drained to another replica
# (resumable); error: the platform failed the call (server_error, start_timeout).
SESSION_OUTCOMES = ("completed", "escalated", "dropped", "timeout", "moved", "error")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # enumerated tag values, by tag

    def exported(self) -> tuple[str, ...]:
        """The series names Prometheus sees for this metric."""
        base = RAY_PREFIX + self.name
        if self.kind == "histogram":
            return (base + "_bucket", base + "_sum", base + "_count")
        return (base,)


CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec(
        "voice_turn_latency_ms",
        "histogram",
        "End of the caller's speech to the first agent audio sent",
        boundaries=LATENCY_BOUNDARIES_MS,
    ),
    MetricSpec(
        "voice_asr_latency_ms",
        "histogram",
        "End of the caller's speech to the final transcript",
        boundaries=LATENCY_BOUNDARIES_MS,
    ),
    MetricSpec(
        "voice_llm_latency_ms",
        "histogram",
        "Dialogue request to its first sentence",
        boundaries=LATENCY_BOUNDARIES_MS,
    ),
    MetricSpec(
        "voice_tts_first_chunk_ms",
        "histogram",
        "A sentence sent to TTS to its first audio chunk",
        boundaries=LATENCY_BOUNDARIES_MS,
    ),
    MetricSpec("voice_tool_calls_total", "counter", "Tool calls by tool", ("tool",)),
    MetricSpec("voice_tool_failures_total", "counter", "Tool calls that failed, by tool", ("tool",)),
    MetricSpec(
        "voice_escalations_total",
        "counter",
        "Calls handed to a human, by reason",
        ("reason",),
        values={"reason": ESCALATION_REASONS},
    ),
    MetricSpec("voice_barge_ins_total", "counter", "Agent speech cleared because the caller spoke over it"),
    MetricSpec("voice_active_sessions", "gauge", "Calls in progress on this Gateway replica"),
    MetricSpec("voice_capacity_sessions", "gauge", "Calls this Gateway replica admits at most"),
    MetricSpec(
        "voice_sessions_total", "counter", "Calls by how they ended", ("outcome",), values={"outcome": SESSION_OUTCOMES}
    ),
    MetricSpec("voice_breaker_state", "gauge", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ("breaker",)),
    MetricSpec(
        "voice_connect_rejected_total",
        "counter",
        "Connections refused before session.started",
        ("code",),
        values={"code": CONNECT_REJECTED_CODES},
    ),
    MetricSpec(
        "voice_tts_cache_lookups_total",
        "counter",
        "TTS line-cache lookups by result",
        ("result",),
        values={"result": ("hit", "miss")},
    ),
    MetricSpec("voice_tts_cache_bytes", "gauge", "Audio held by this TTS replica's line cache"),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in CATALOG}


def bounded(spec: MetricSpec, tags: Mapping[str, str] | None, allowed: Mapping[str, tuple[str, ...]] | None = None):
    """`tags` with every value outside its enumerated set (the catalog's, or `allowed` for a
    dynamic tag) recorded as OTHER, and a missing tag as OTHER: the series count stays bounded."""
    tags, allowed = tags or {}, allowed or {}
    out: dict[str, str] = {}
    for key in spec.tag_keys:
        known = allowed.get(key, spec.values.get(key, ()))
        value = tags.get(key)
        out[key] = value if value in known else OTHER
    return out


def exported_names() -> set[str]:
    """Every series name the platform's own metrics appear under in Prometheus."""
    return {name for m in CATALOG for name in m.exported()}
