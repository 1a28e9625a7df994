"""ASR Serve deployment: one Whisper model per replica, shared by every call."""

from __future__ import annotations

import asyncio
import logging

from ray import serve

from common.config import get_settings
from common.logs import mask_logs_in_this_process

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class ASR:
    def __init__(self):
        mask_logs_in_this_process()
        import ray

        from deployments.asr.engine import WhisperEngine, replica_device

        settings = get_settings()
        gpus = len(ray.get_gpu_ids())
        device = replica_device(settings.whisper_device, gpus)
        if device == "cuda" and not gpus:
            log.warning(
                "VOICE_WHISPER_DEVICE=cuda but Ray reserved no GPU for this replica (num_gpus=0): using one unreserved"
            )
        self._engine = WhisperEngine(settings.whisper_model_path, device, settings.whisper_cpu_threads)
        self._lock = asyncio.Lock()  # one decode at a time: CTranslate2 already uses every thread given

    async def transcribe(self, pcm16: bytes, language: str = "en") -> dict:
        async with self._lock:
            result = await asyncio.to_thread(self._engine.transcribe, pcm16, language)
        return result.as_dict()

    def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("ASR model not loaded")
