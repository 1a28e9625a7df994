"""ASR Serve deployment: one Whisper model per replica, shared by every call.

Requests from several calls are decoded together (`@serve.batch`): one `generate` over a batch
costs less than the same utterances one by one. Features are computed per request before the
batch forms; `AsrGate` keeps partial transcripts from taking the CPU from turns under load.
"""

from __future__ import annotations

import asyncio
import logging

from ray import serve

from common.config import get_settings
from common.logs import mask_logs_in_this_process
from deployments.asr.gate import AsrGate, Ticket
from models.asr import AsrRequest, AsrShed

log = logging.getLogger(__name__)


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=16)
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
        self._gate = AsrGate(settings.asr_partial_max_wait_ms / 1000)
        self._decode.set_max_batch_size(settings.asr_batch_max)
        self._decode.set_batch_wait_timeout_s(settings.asr_batch_wait_ms / 1000)
        self._batches: dict[int, int] = {}  # utterances decoded together -> how many times

    async def transcribe(self, request: AsrRequest) -> dict:
        """`Transcript.as_dict()`; raises AsrShed for a partial the replica had no time for."""
        ticket = self._gate.admit(request.kind, request.call_id)
        if ticket is None:
            raise AsrShed("partial shed: turn work pending")
        try:
            prepare = self._engine.prepare
            utterance = await asyncio.to_thread(prepare, request.pcm16, request.language, request.kind != "partial")
            result = await self._decode((ticket, utterance))
        finally:
            self._gate.done(ticket)
        if result is None:
            raise AsrShed("partial shed when its batch came")
        return result.as_dict()

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def _decode(self, jobs: list[tuple[Ticket, object]]) -> list:
        """One batch at a time (serve.batch's default): CTranslate2 already uses every thread given."""
        kept = [self._gate.keep(ticket) for ticket, _ in jobs]
        utterances = [utterance for (_, utterance), keep in zip(jobs, kept) if keep]
        if utterances:
            self._batches[len(utterances)] = self._batches.get(len(utterances), 0) + 1
        results = iter(await asyncio.to_thread(self._engine.decode, utterances) if utterances else [])
        return [next(results) if keep else None for keep in kept]

    async def stats(self) -> dict:
        """Batches by size and partials shed since start: what batching and shedding did here."""
        return {"batches": dict(self._batches), "partials_shed": self._gate.shed}

    def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("ASR model not loaded")
