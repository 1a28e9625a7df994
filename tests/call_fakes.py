"""Fakes to run a Call in-process, without Ray or models: a WebSocket, the real session
actor class behind a `.remote()` shim (with a fake dialogue), ASR, TTS, VAD and a clock."""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import numpy as np
from ray.exceptions import ActorDiedError

from common.config import Settings, get_settings
from deployments.session.actor import SessionActor
from models.dialogue import DialogueRequest, Sentence, TurnSummary
from models.protocol import ConnectParams
from serve_app.conversation.call import Call
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines

RATE = 16000
FRAME = bytes(RATE * 20 // 1000 * 2)  # 20 ms of silence
LOUD = (np.full(RATE * 20 // 1000, 8000, dtype=np.int16)).tobytes()  # 20 ms the fake VAD hears as speech


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeWS:
    def __init__(self):
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.events: list[dict] = []
        self.audio_bytes = 0
        self.close_code: int | None = None
        self._changed = asyncio.Event()

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.events.append(json.loads(text))
        self._changed.set()

    async def send_bytes(self, data: bytes) -> None:
        self.audio_bytes += len(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self._changed.set()

    def bytes(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": data})

    def text(self, obj) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": obj if isinstance(obj, str) else json.dumps(obj)})

    async def drain(self) -> None:
        """Until the handler has taken every message sent so far."""
        while not self.inbox.empty():
            await asyncio.sleep(0.001)

    def of(self, kind: str, **match) -> list[dict]:
        return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    async def wait(self, predicate, timeout: float = 2.0):
        async def _wait():
            while not (result := predicate()):
                self._changed.clear()
                await self._changed.wait()
            return result

        return await asyncio.wait_for(_wait(), timeout)

    async def idle(self, after: int = 0, timeout: float = 2.0) -> None:
        """Until the agent went back to listening after event index `after`."""

        def listening():
            states = [e["state"] for e in self.events[after:] if e["type"] == "agent.state"]
            return states[-1:] == ["listening"]

        await self.wait(listening, timeout)


class _Ref:
    """An awaitable result, as a Ray ObjectRef is."""

    def __init__(self, value):
        self._value = value

    def __await__(self):
        return _done(self._value).__await__()


async def _done(value):
    return value


class _Stream:
    """A Ray ObjectRefGenerator: `__anext__` gives a ref to await; it breaks when the actor dies."""

    def __init__(self, agen, shim):
        self._agen, self._shim = agen, shim

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self._shim._gate()
        item = asyncio.ensure_future(self._agen.__anext__())
        died = asyncio.ensure_future(self._shim._died.wait())
        try:
            await asyncio.wait({item, died}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled too (the call ended): neither task is left with an unread end
            died.cancel()
            if not item.done():
                item.cancel()
            item.add_done_callback(lambda t: t.cancelled() or t.exception())
        if item.done() and not item.cancelled():
            return _Ref(item.result())
        raise ActorDiedError()


class ActorShim:
    """`actor.method.remote(...)` on a plain instance; `freeze()` makes every call hang, as a
    stopped or CPU-bound actor process would; `kill()` makes every call fail as a dead actor's."""

    def __init__(self, obj):
        self.obj = obj
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._died = asyncio.Event()
        self.calls: list[str] = []

    def freeze(self) -> None:
        self._thawed.clear()

    def kill(self) -> None:
        self._died.set()

    async def _gate(self) -> None:
        if self._died.is_set():
            raise ActorDiedError()
        await self._thawed.wait()

    def __getattr__(self, name):
        fn = getattr(self.obj, name)
        shim = self

        class _Method:
            @staticmethod
            def remote(*args, **kwargs):
                shim.calls.append(name)
                if inspect.isasyncgenfunction(fn):
                    return _Stream(fn(*args, **kwargs), shim)

                async def call():
                    await shim._gate()
                    result = fn(*args, **kwargs)
                    return await result if inspect.isawaitable(result) else result

                return asyncio.ensure_future(call())  # submitted now, as Ray does, awaited or not

        return _Method


class _Streaming:
    def __init__(self, fn):
        self._fn = fn

    def options(self, stream: bool = False):
        return self

    def remote(self, *args):
        return self._fn(*args)  # a Serve streaming response yields the items themselves


GREETING = "<greeting>"  # FakeDialogue(hang_on=GREETING): the greeting never comes


class FakeDialogue:
    """The Dialogue deployment's streaming interface; `replies(text, memory, run_ahead)` says
    what to answer: (sentences, summary fields) or None to refuse a run-ahead. `hang_on` hangs."""

    def __init__(self, replies, hang_on: str | None = None):
        self._replies, self._hang_on = replies, hang_on
        self.prepared = asyncio.Event()  # a run-ahead was asked for
        self.requests: list[DialogueRequest] = []
        self.greeting = _Streaming(self._greeting)
        self.respond = _Streaming(self._respond)

    async def _greeting(self):
        if self._hang_on == GREETING:
            await asyncio.Event().wait()
        yield Sentence(text="Hello.")
        yield TurnSummary(intent="greeting")

    async def _respond(self, request: DialogueRequest):
        self.requests.append(request)
        if request.run_ahead:
            self.prepared.set()
        if request.transcript == self._hang_on:
            await asyncio.Event().wait()
        answer = self._replies(request.transcript, dict(request.memory), request.run_ahead)
        if answer is None:
            yield TurnSummary(refused=True)
            return
        sentences, summary = answer
        for s in sentences:
            yield Sentence(text=s)
        yield TurnSummary.model_validate(summary)


def session_actor(dialogue, tmp_path, monkeypatch) -> ActorShim:
    """The real SessionActor class (no Ray), started on a store in tmp_path; `dialogue` rides
    along for `handler`."""
    shim = fresh_actor(tmp_path, monkeypatch)
    shim.obj._engine.start("s1", "tester", "en-US")
    shim.dialogue = dialogue
    return shim


def fresh_actor(tmp_path, monkeypatch) -> ActorShim:
    """A new, unstarted session actor on the same store: what a respawn gives."""
    monkeypatch.setenv("VOICE_STORE_PATH", str(tmp_path / "sessions.db"))
    get_settings.cache_clear()
    try:
        return ActorShim(SessionActor.__ray_actor_class__())
    finally:
        get_settings.cache_clear()


class LoudVAD:
    """Speech wherever the frame is loud."""

    def prob(self, frame) -> float:
        return 0.95 if float(np.abs(frame).max()) > 0.1 else 0.0


def settings(**overrides) -> Settings:
    base = dict(preemptive_ms=0, partial_interval_ms=0, idle_checkin_s=60, playback_lead_ms=0)
    return Settings(_env_file=None, **{**base, **overrides})


async def fake_tts(text: str, rate: int, locale: str = "en-US", first: bool = False):
    yield bytes(rate // 100 * 2)  # 10 ms


def handler(
    ws, actor, cfg: Settings, transcribe=None, synthesize=fake_tts, clock=time.monotonic, respawn=None, **extra
) -> Call:
    async def no_asr(request):
        return {"text": "", "confidence": 0.0}

    params = ConnectParams(caller_id="tester", sample_rate=RATE, output_sample_rate=RATE)
    context = actor.obj._engine.context()
    session = SessionClient(actor, actor.dialogue, context, Deadlines.from_settings(cfg), respawn)
    return Call(ws, params, session, transcribe or no_asr, synthesize, LoudVAD(), cfg, clock=clock, **extra)
