"""Application builder: `import_path: serve_app.app:build_app` in serve_config.yaml."""

from __future__ import annotations

from ray.serve import Application, Deployment

from common.config import Settings, load_settings
from deployments.asr.deployment import ASR
from deployments.dialogue.deployment import Dialogue
from deployments.embeddings.deployment import Embeddings
from deployments.tts.deployment import TTS
from serve_app.gateway import Gateway


def asr_deployment(settings: Settings) -> Deployment:
    """ASR with a GPU from Ray when cuda is asked for. serve_config.yaml's ray_actor_options, when
    present, replace these whole (cluster.load_config writes num_gpus there too)."""
    if settings.whisper_device != "cuda":
        return ASR
    return ASR.options(ray_actor_options={**ASR.ray_actor_options, "num_gpus": 1})


def build_app(args: dict | None = None) -> Application:
    settings = load_settings()  # fail fast, naming the variable, before any replica starts
    dialogue = Dialogue.bind(Embeddings.bind())
    return Gateway.bind(asr_deployment(settings).bind(), TTS.bind(), dialogue)
