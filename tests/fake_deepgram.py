"""A local server speaking Deepgram's live-transcription WebSocket protocol (`/v1/listen`).

Only a stand-in for the cloud we cannot reach. It checks the `Authorization: Token` header
and the query (model, language, encoding, sample_rate, keyterm), takes binary linear16
audio and the JSON control messages (KeepAlive, Finalize, CloseStream), and answers with
`Results` messages shaped like the real ones (channel.alternatives[].transcript/confidence/
words, start and duration tiling the audio, is_final, speech_final, from_finalize) and a
closing `Metadata`. The words come from the offline Whisper model, so what the caller says
is what Deepgram "hears". `fail()` drops every stream with 1011 and refuses new ones until
`recover()`: the outage the platform must survive.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

INTERIM_EVERY_S = 0.8


class FakeDeepgram:
    def __init__(self, api_key: str = "dg-test", whisper=None):
        self.api_key = api_key
        self.queries: list[dict] = []  # each accepted connection's query parameters
        self.finalizes = 0
        self.finals: list[str] = []
        self.down = False
        self._conns: set = set()
        self._server = None
        self._whisper = whisper  # a loaded WhisperEngine to share, else one is loaded on first use
        self.url = ""

    async def __aenter__(self):
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        await self._server.wait_closed()

    async def fail(self) -> None:
        """Deepgram goes down: open streams end with 1011, new ones get HTTP 503."""
        self.down = True
        for ws in list(self._conns):
            await ws.close(1011, "internal server error")

    def recover(self) -> None:
        self.down = False

    def _check(self, connection, request):
        if urlsplit(request.path).path != "/v1/listen":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        if self.down:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "service unavailable\n")
        return None

    def _transcribe(self, pcm: np.ndarray, rate: int) -> tuple[str, float]:
        from common.audio import resample
        from deployments.asr.engine import WhisperEngine

        if self._whisper is None:
            self._whisper = WhisperEngine(cpu_threads=1)
        result = self._whisper.transcribe(resample(pcm.tobytes(), rate, 16000))
        return result.text, result.confidence

    async def _handle(self, ws) -> None:
        query = {k: v if k == "keyterm" else v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        self.queries.append(query)
        if query.get("encoding") != "linear16" or "sample_rate" not in query:
            await ws.close(1008, "only linear16 with a sample_rate is supported by this fake")
            return
        rate = int(query["sample_rate"])
        request_id = str(uuid.uuid4())
        self._conns.add(ws)
        try:
            await self._serve(ws, query, rate, request_id)
        except ConnectionClosed:
            pass  # the client went away mid-answer, as clients do
        finally:
            self._conns.discard(ws)

    async def _serve(self, ws, query: dict, rate: int, request_id: str) -> None:
        pending = np.zeros(0, dtype=np.int16)
        pending_start = 0.0  # stream seconds where `pending` begins
        since_interim = 0.0

        async def result(is_final: bool, from_finalize: bool = False) -> None:
            text, confidence = await asyncio.to_thread(self._transcribe, pending, rate) if len(pending) else ("", 0.0)
            duration = len(pending) / rate
            words = [
                {
                    "word": w.strip(".,?!").lower(),
                    "start": pending_start,
                    "end": pending_start + duration,
                    "confidence": confidence,
                    "punctuated_word": w,
                }
                for w in text.split()
            ]
            msg = {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": duration,
                "start": pending_start,
                "is_final": is_final,
                "speech_final": is_final,
                "from_finalize": from_finalize,
                "channel": {"alternatives": [{"transcript": text, "confidence": confidence, "words": words}]},
                "metadata": {
                    "request_id": request_id,
                    "model_info": {"name": query.get("model", "nova-3"), "version": "fake", "arch": "whisper-tiny"},
                    "model_uuid": str(uuid.uuid4()),
                },
            }
            await ws.send(json.dumps(msg))
            if is_final and text:
                self.finals.append(text)

        async for message in ws:
            if isinstance(message, bytes):
                pending = np.concatenate([pending, np.frombuffer(message[: len(message) // 2 * 2], dtype=np.int16)])
                since_interim += len(message) / 2 / rate
                if since_interim >= INTERIM_EVERY_S and _voiced(pending, rate):
                    since_interim = 0.0
                    await result(is_final=False)
                elif len(pending) > 20 * rate:  # a long stretch: close it as the real service would
                    await result(is_final=True)
                    pending_start += len(pending) / rate
                    pending = pending[:0]
                continue
            kind = json.loads(message).get("type")
            if kind in ("Finalize", "CloseStream"):
                self.finalizes += kind == "Finalize"
                await result(is_final=True, from_finalize=kind == "Finalize")
                pending_start += len(pending) / rate
                pending, since_interim = pending[:0], 0.0
            if kind == "CloseStream":
                await ws.send(
                    json.dumps({"type": "Metadata", "request_id": request_id, "duration": pending_start, "channels": 1})
                )
                await ws.close()
                return


def _voiced(pcm: np.ndarray, rate: int) -> bool:
    return len(pcm) > rate // 4 and float(np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2))) > 0.01
