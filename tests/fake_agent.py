"""A tiny agent speaking protocol v1 on a loopback port, for the callers' own tests: it hears
speech by loudness, ends a turn after 500 ms of silence and answers at once, so a client's
voice-to-voice figure is the trailing silence plus loopback. Runs its own loop in a thread, so
blocking and asyncio clients can both call it."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import websockets

FRAME = 640  # 20 ms at 16 kHz
ENDPOINT_FRAMES = 25  # 500 ms of silence ends a turn
BARGE_IN_FRAMES = 15  # 300 ms of speech over the agent stops it


class FakeAgent:
    def __init__(self, reply_s: float = 3.0, stops: bool = True, audio_after_clear: bool = False):
        self.reply_s, self.stops, self.audio_after_clear = reply_s, stops, audio_after_clear
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeAgent:
        self._thread.start()

        async def serve():
            return await websockets.serve(self._call, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result()
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/ws/call"
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _call(self, ws) -> None:
        send = lambda **e: ws.send(json.dumps(e))  # noqa: E731
        await send(type="session.started", session_id="s1", input_sample_rate=16000, output_sample_rate=16000)
        speaking = asyncio.create_task(self._reply(ws, 0.1))
        voiced = silent = 0
        async for msg in ws:
            if isinstance(msg, str):
                if json.loads(msg)["type"] == "hangup":
                    await send(type="session.ended", reason="hangup")
                    return
                await send(type="agent.state", state="thinking")
                speaking = asyncio.create_task(self._reply(ws, self.reply_s))
                continue
            x = np.frombuffer(msg, dtype=np.int16).astype(np.float32) / 32768
            loud = len(x) > 0 and float(np.sqrt(np.mean(x**2))) > 0.01
            voiced, silent = (voiced + 1, 0) if loud else (voiced, silent + 1)
            if loud and voiced == BARGE_IN_FRAMES and not speaking.done() and self.stops:
                speaking.cancel()
                await send(type="audio.clear", turn_id=1)
                for _ in range(2 if self.audio_after_clear else 0):
                    await ws.send(bytes(FRAME))
                await send(type="agent.state", state="listening")
            if voiced and silent == ENDPOINT_FRAMES:
                voiced = 0
                if not speaking.done():  # this agent does not stop: the caller waits it out
                    await asyncio.wait([speaking])
                await send(type="agent.state", state="thinking")
                speaking = asyncio.create_task(self._reply(ws, 0.2))

    async def _reply(self, ws, seconds: float) -> None:
        await ws.send(json.dumps({"type": "agent.state", "state": "speaking"}))
        await ws.send(json.dumps({"type": "agent.text", "turn_id": 1, "text": "An answer."}))
        for _ in range(int(seconds / 0.02)):
            await ws.send(bytes(FRAME))
            await asyncio.sleep(0.02)
        await ws.send(json.dumps({"type": "agent.state", "state": "listening"}))
