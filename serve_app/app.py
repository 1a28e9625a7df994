"""Application builder: `import_path: serve_app.app:build_app` in serve_config.yaml."""

from __future__ import annotations

from ray.serve import Application

from common.config import load_settings
from deployments.asr.deployment import ASR
from deployments.dialogue.deployment import Dialogue
from deployments.embeddings.deployment import Embeddings
from deployments.tts.deployment import TTS
from serve_app.gateway import Gateway


def build_app(args: dict | None = None) -> Application:
    load_settings()  # fail fast, naming the variable, before any replica starts
    dialogue = Dialogue.bind(Embeddings.bind())
    return Gateway.bind(ASR.bind(), TTS.bind(), dialogue)
