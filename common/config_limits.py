"""The platform's limits, read with the rest of the settings (common/config.py, which builds on
this class): capacity and the warm pool, load shedding, abuse limits, stage deadlines, security
and the phone line's public face. Apart only to keep each module small; one `Settings` to use.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode


class LimitSettings(BaseSettings):
    # Capacity and abuse limits per Gateway replica.
    max_calls_per_replica: int = Field(default=20, ge=1)
    # The warm pool (serve_app/warm_sizing.py): at least warm_sessions, at most warm_sessions_max,
    # else the calls expected to arrive (rate averaged over warm_window_s) during one spawn, times
    # warm_margin; refilled one spawn at a time, warm_spawn_pause_ms apart while calls talk. A new
    # call with none warm waits warm_wait_ms for one, else is refused (1013 `no_warm_session`).
    warm_sessions: int = Field(default=2, ge=0)
    warm_sessions_max: int = Field(default=8, ge=0)
    warm_window_s: float = Field(default=30.0, gt=0)
    warm_margin: float = Field(default=1.5, gt=0)
    warm_spawn_pause_ms: int = Field(default=500, ge=0)
    warm_wait_ms: int = Field(default=1500, ge=0)
    # Load shedding (serve_app/load_shed.py): new calls refused (1013 `overloaded`) and /ready 503
    # while the Gateway's event-loop lag P95 (last 5 s) or its calls' turn first-audio P95 (last
    # shed_window_s, at least shed_min_turns turns) is above its shed threshold; taken again once
    # both are below their resume thresholds. 0 turns a signal off.
    shed_loop_lag_ms: int = Field(default=250, ge=0)
    shed_loop_lag_resume_ms: int = Field(default=100, ge=0)
    shed_turn_p95_ms: int = Field(default=2500, ge=0)
    shed_turn_p95_resume_ms: int = Field(default=1800, ge=0)
    shed_window_s: float = Field(default=30.0, gt=0)
    shed_min_turns: int = Field(default=5, ge=1)
    session_actor_num_cpus: float = Field(default=0.01, ge=0)
    # Calls one session actor serves, one after another, before it is replaced: an ended call's
    # actor is reset and goes back to the warm pool instead of a new process being started (about
    # 2 CPU-seconds each, taken from the talking calls). 1: a fresh process for every call.
    session_actor_max_calls: int = Field(default=50, ge=1)
    # Ray custom resources each session actor asks for, as JSON ({"voice_session": 0.01}): on a
    # cluster, only nodes started with that resource take calls' actors (`ray start --resources`).
    session_actor_resources: Annotated[dict[str, float], NoDecode] = {}
    text_rate_per_s: float = Field(default=10.0, gt=0)
    text_burst: int = Field(default=20, ge=1)
    max_dropped_messages: int = Field(default=100, ge=1)
    max_frames_per_s: float = Field(default=200.0, gt=0)  # binary frames of any size; over it: close 1008 flooding
    frame_burst: int = Field(default=400, ge=1)  # frames a bursty network may deliver at once

    # Deadlines per stage (serve_app/deadlines.py): past one the caller hears a fallback or
    # gets an `error` event; a line is never held by a hung actor, dialogue or TTS.
    greeting_timeout_ms: int = Field(default=5000, gt=0)
    dialogue_timeout_ms: int = Field(default=10000, gt=0)  # a reply's first sentence, and each next one
    tts_first_audio_timeout_ms: int = Field(default=5000, gt=0)
    actor_start_timeout_ms: int = Field(default=10000, gt=0)  # session actor spawned and started
    actor_call_timeout_ms: int = Field(default=3000, gt=0)  # any other session-actor call on the call path
    checkpoint_timeout_ms: int = Field(default=1000, gt=0)  # final checkpoint; then the actor is killed

    # Security (README "Security"): PIN lockout per customer across calls, kept in the state store;
    # new calls per caller_id and per client address (per Gateway replica); origins and hosts allowed;
    # the admin token (a secret: it reaches replicas through Ray's KV store, never the runtime_env).
    pin_max_failures: int = Field(default=3, ge=1)
    pin_failure_window_s: float = Field(default=900.0, gt=0)
    pin_lockout_s: float = Field(default=900.0, gt=0)
    calls_per_minute_per_caller: int = Field(default=10, ge=1)
    calls_per_minute_per_address: int = Field(default=30, ge=1)
    allowed_origins: Annotated[list[str], NoDecode] = []  # empty: http://127.0.0.1:PORT, http://localhost:PORT
    allowed_hosts: Annotated[list[str], NoDecode] = []  # empty: 127.0.0.1 and localhost, with and without :PORT
    admin_token: SecretStr | None = None  # Bearer token for /admin/*; unset: /admin/* answers 404
    # Phone calls (README "Phone calls"): the public base URL carriers reach this Gateway at (https://host
    # behind a TLS proxy; its host is allowed as VOICE_ALLOWED_HOSTS' are); unset, /twilio/* answers 404.
    # With the auth token set, a webhook without a valid X-Twilio-Signature gets 403.
    public_url: str | None = None
    twilio_auth_token: SecretStr | None = None

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value):
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(f"{origin!r} is not an origin like https://example.com or http://host:8000")
        return [o.lower() for o in value]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        scheme, sep, rest = value.strip().partition("://")
        if scheme not in ("http", "https") or not sep or not rest.split("/")[0] or "?" in rest or "#" in rest:
            raise ValueError(f"{value!r} is not a base URL like https://voice.example.com")
        return value.strip().rstrip("/")

    @field_validator("session_actor_resources", mode="before")
    @classmethod
    def _json_object(cls, value):
        if isinstance(value, str):
            try:
                value = json.loads(value or "{}")
            except ValueError:
                raise ValueError('must be a JSON object such as {"voice_session": 0.01}') from None
        return value

    @field_validator("session_actor_resources")
    @classmethod
    def _custom_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory") or not name.strip():
                raise ValueError(f"{name!r} is not a custom resource name (CPUs: VOICE_SESSION_ACTOR_NUM_CPUS)")
            if amount <= 0 or (amount > 1 and amount != int(amount)):
                raise ValueError(f"{name}={amount:g}: Ray takes a fraction up to 1 or a whole number")
        return value

    @model_validator(mode="after")
    def _warm_pool_and_shedding(self) -> LimitSettings:
        if self.warm_sessions_max < self.warm_sessions:
            raise ValueError("VOICE_WARM_SESSIONS_MAX must be at least VOICE_WARM_SESSIONS")
        for shed in ("shed_loop_lag_ms", "shed_turn_p95_ms"):
            resume = shed.replace("_ms", "_resume_ms")
            if getattr(self, shed) and getattr(self, resume) >= getattr(self, shed):
                raise ValueError(f"VOICE_{resume.upper()} must be below VOICE_{shed.upper()} (hysteresis)")
        return self
