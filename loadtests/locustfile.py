"""Concurrent callers for Locust: each user makes real calls that speak a WAV at real time.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 4 -r 1 -t 2m --host ws://127.0.0.1:8000

Reported per request name: `connect` (handshake to session.started), `greeting` (to the end of
the greeting), `voice_to_voice` (last speech sample sent to first agent audio byte received),
`turn` (speech end to the agent listening again). Failures carry the server's error codes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import gevent
import websocket
from locust import User, between, events, task

from common.audio import read_wav

ROOT = Path(__file__).resolve().parent.parent
UTTERANCE = os.environ.get("LOADTEST_WAV", str(ROOT / "samples" / "hours.wav"))
FRAME_MS = 20


def fire(name: str, start: float, exc: Exception | None = None, length: int = 0) -> None:
    events.request.fire(
        request_type="WS",
        name=name,
        response_time=(time.monotonic() - start) * 1000,
        response_length=length,
        exception=exc,
        context={},
    )


class CallTimeout(Exception):
    pass


class Caller(User):
    wait_time = between(1, 3)

    def on_start(self):
        if not Path(UTTERANCE).exists():
            from serve_app.samples import make_samples

            make_samples(Path(UTTERANCE).parent)
        self.pcm, self.rate = read_wav(UTTERANCE)

    def _reader(self, ws, state):
        try:
            while True:
                opcode, data = ws.recv_data()
                now = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    state["audio_at"].append(now)
                elif opcode == websocket.ABNF.OPCODE_TEXT:
                    state["events"].append((now, json.loads(data)))
                else:
                    return
        except Exception:
            return

    def _wait(self, state, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise CallTimeout(f"no answer in {timeout}s")
            gevent.sleep(0.02)

    @task
    def call(self):
        url = f"{self.host.rstrip('/')}/ws/call?caller_id=load-{uuid.uuid4().hex[:8]}&sample_rate={self.rate}"
        state = {"events": [], "audio_at": []}
        t0 = time.monotonic()
        try:
            ws = websocket.create_connection(url, timeout=30)
        except Exception as exc:
            fire("connect", t0, exc)
            return
        reader = gevent.spawn(self._reader, ws, state)
        frame = self.rate * FRAME_MS // 1000 * 2
        silence = bytes(frame)

        def idle_since(i):
            states = [e["state"] for _, e in state["events"][i:] if e["type"] == "agent.state"]
            return bool(states) and states[-1] == "listening"

        try:
            self._wait(state, lambda: state["events"], 30)
            first = state["events"][0][1]
            if first["type"] != "session.started":
                raise RuntimeError(f"refused: {first}")
            fire("connect", t0)
            self._wait(state, lambda: idle_since(0), 60)
            fire("greeting", t0)
            mark, audio_mark = len(state["events"]), len(state["audio_at"])
            start = time.monotonic()
            for i, off in enumerate(range(0, len(self.pcm), frame)):
                gevent.sleep(max(0.0, start + i * FRAME_MS / 1000 - time.monotonic()))
                ws.send_binary(self.pcm[off : off + frame])
            speech_end = time.monotonic()
            deadline = speech_end + 60
            while not (
                idle_since(mark)
                and any(e["type"] == "agent.state" and e["state"] == "thinking" for _, e in state["events"][mark:])
            ):
                if time.monotonic() > deadline:
                    raise CallTimeout("no reply within 60 s")
                ws.send_binary(silence)
                gevent.sleep(FRAME_MS / 1000)
            replies = [at for at in state["audio_at"][audio_mark:] if at >= speech_end]
            errors = [e for _, e in state["events"][mark:] if e["type"] == "error"]
            if errors or not replies:
                raise RuntimeError(f"turn failed: errors={errors} audio={bool(replies)}")
            events.request.fire(
                request_type="WS",
                name="voice_to_voice",
                response_time=(replies[0] - speech_end) * 1000,
                response_length=0,
                exception=None,
                context={},
            )
            fire("turn", speech_end)
            ws.send(json.dumps({"type": "hangup"}))
        except Exception as exc:
            fire("turn", t0, exc)
        finally:
            try:
                ws.close()
            except Exception:
                pass
            reader.join(timeout=5)
