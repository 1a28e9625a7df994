"""What a Gateway replica reports about its calls, under the catalog's names: each turn's
stage latencies (from `turn.metrics`), barge-ins, active calls against capacity, how calls
end and connections refused. The load shedder hears each turn's answer latency too."""

from __future__ import annotations

from collections.abc import Callable

from common.metric_catalog import OTHER
from common.metrics import Meters

# `turn.metrics` keys (serve_app/conversation/) -> the histogram each is recorded in.
STAGES = {
    "eos_to_first_audio_ms": "voice_turn_latency_ms",  # end of the caller's speech to the first agent audio sent
    "eos_to_transcript_ms": "voice_asr_latency_ms",
    "dialogue_first_sentence_ms": "voice_llm_latency_ms",
    "tts_first_audio_ms": "voice_tts_first_chunk_ms",
}
TURN_LATENCY_STAGE = "eos_to_first_audio_ms"
ASR_STAGE = "eos_to_transcript_ms"  # set for every turn; measured only for a spoken one (asr_provider set)

# A call's end reason (session.ended) -> its outcome in voice_sessions_total.
OUTCOMES = {
    "hangup": "completed",
    "agent_hangup": "completed",
    "max_turns": "completed",
    "closed": "completed",  # the session API's close
    "escalated": "escalated",
    "caller_disconnected": "dropped",
    "idle_timeout": "timeout",
    "session_ttl": "timeout",
    "draining": "moved",  # held and resumed on another replica
    "server_error": "error",
    "start_timeout": "error",
}

NAMES = (
    *STAGES.values(),
    "voice_barge_ins_total",
    "voice_active_sessions",
    "voice_capacity_sessions",
    "voice_sessions_total",
    "voice_connect_rejected_total",
)


def outcome(reason: str) -> str:
    return OUTCOMES.get(reason, OTHER)


class CallMeters:
    def __init__(self, capacity: int, on_turn_latency: Callable[[float], None], meters: Meters | None = None):
        self._meters = meters or Meters(*NAMES)
        self._on_turn_latency = on_turn_latency
        self._meters.set("voice_capacity_sessions", capacity)
        self._meters.set("voice_active_sessions", 0)  # the series exists before the first call

    def turn(self, metrics: dict) -> None:
        """One turn's `turn.metrics`: each stage it measured goes to its histogram; a typed turn's
        transcript latency (0: nothing was transcribed) is no ASR latency and is left out."""
        for stage, name in STAGES.items():
            ms = metrics.get(stage)
            if not isinstance(ms, (int, float)) or isinstance(ms, bool):
                continue
            if stage == ASR_STAGE and "asr_provider" not in metrics:
                continue
            self._meters.observe(name, ms)
            if stage == TURN_LATENCY_STAGE:  # a turn's answer latency: the shedder's second signal
                self._on_turn_latency(ms)

    def barge_in(self) -> None:
        self._meters.inc("voice_barge_ins_total")

    def active(self, calls: int) -> None:
        self._meters.set("voice_active_sessions", calls)

    def ended(self, reason: str) -> None:
        self._meters.inc("voice_sessions_total", {"outcome": outcome(reason)})

    def rejected(self, code: str) -> None:
        self._meters.inc("voice_connect_rejected_total", {"code": code})
