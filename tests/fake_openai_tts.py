"""A local server speaking OpenAI's `POST /v1/audio/speech` wire format, streaming real speech.

Only a stand-in for the cloud we cannot reach: the audio is piper saying `input` (24 kHz s16le
mono, headerless, as OpenAI's `pcm` format), sent chunked in ~40 ms pieces with a short pause
between them so a test can hang up mid-stream and see the server notice. Errors have OpenAI's
shape (`{"error": {"message", "type", "param", "code"}}`). It runs on its own event loop in a
background thread: piper's synthesis blocks that loop, never the test's.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

PCM_RATE = 24000
CHUNK_BYTES = PCM_RATE * 2 * 40 // 1000  # 40 ms of s16le mono
VOICES = {
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
}


def _error(
    status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
):
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status
    )


class FakeOpenAITTS:
    def __init__(
        self, api_key: str = "sk-test", piper=None, chunk_delay_s: float = 0.01, fail_status: int | None = None
    ):
        self.api_key = api_key  # the key a request must bear
        self.chunk_delay_s = chunk_delay_s  # pause between chunks (a test can stretch it)
        self.chunk_bytes = CHUNK_BYTES  # 40 ms; an odd size makes every piece end mid-sample
        self.fail_status = fail_status  # set: every request gets this status and an error body
        self.requests: list[dict] = []  # body, voice, status, completed, bytes_sent, client_gone
        self.base_url = ""
        self._piper = piper  # a PiperEngine to share; else one is loaded on the first request
        self._piper_lock = threading.Lock()
        self._audio: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def __enter__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai-tts", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self):
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def _stop(self):
        await self._runner.cleanup()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:  # handlers still pausing between chunks
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def speech(self, text: str) -> bytes:
        """The whole 24 kHz PCM the server streams for `text` (cached)."""
        with self._piper_lock:
            if self._piper is None:
                from deployments.tts.engine import PiperEngine

                self._piper = PiperEngine()
            if text not in self._audio:
                self._audio[text] = b"".join(self._piper.synthesize(text, PCM_RATE, deterministic=True))
            return self._audio[text]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = {"body": None, "voice": None, "status": 200, "completed": False, "bytes_sent": 0, "client_gone": False}
        self.requests.append(record)
        answer = await self._check(request, record)
        if answer is not None:
            record["status"] = answer.status
            return answer
        audio = await asyncio.to_thread(self.speech, record["body"]["input"])
        resp = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            for i in range(0, len(audio), self.chunk_bytes):
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client went away")
                chunk = audio[i : i + self.chunk_bytes]
                await resp.write(chunk)
                record["bytes_sent"] += len(chunk)
                await asyncio.sleep(self.chunk_delay_s)
            await resp.write_eof()
            record["completed"] = True
        except (ConnectionResetError, asyncio.CancelledError) as e:  # aiohttp's ClientConnectionResetError included
            record["client_gone"] = True
            if isinstance(e, asyncio.CancelledError):
                raise
        return resp

    async def _check(self, request: web.Request, record: dict) -> web.Response | None:
        """An error response as OpenAI would send it, or None when the request is good."""
        if self.fail_status:
            return _error(
                self.fail_status,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
            )
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = auth.removeprefix("Bearer ")
        if key != self.api_key:
            masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "*" * len(key)
            return _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        try:
            body = json.loads(await request.text())
        except ValueError:
            return _error(
                400,
                "We could not parse the JSON body of your request. "
                "(HINT: This likely means you aren't using your HTTP library correctly.)",
            )
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        record["body"], record["voice"] = body, body.get("voice")
        for name in ("model", "input", "voice"):
            if not body.get(name):
                return _error(
                    400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
                )
        if body["voice"] not in VOICES:
            return _error(
                400,
                f"Invalid value: '{body['voice']}'. Supported values are: {', '.join(sorted(VOICES))}.",
                param="voice",
                code="invalid_value",
            )
        if len(body["input"]) > 4096:
            return _error(
                400,
                "String too long. Expected a string with maximum length 4096.",
                param="input",
                code="string_above_max_length",
            )
        if body.get("response_format", "mp3") != "pcm":
            return _error(
                400,
                f"This fake only streams 'pcm', not '{body.get('response_format', 'mp3')}'.",
                param="response_format",
                code="invalid_value",
            )
        return None
