"""The ingress: FastAPI on Ray Serve. Owns the WebSocket, VAD and the session actors' pool.

No `from __future__ import annotations` here: FastAPI must see the real `WebSocket` type
through Serve's class-based ingress, or it takes `ws` for a query parameter (HTTP 403).
"""

import logging
import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from common.config import get_settings
from deployments.session.actor import SESSION_NAMESPACE, SessionActor
from deployments.session.store import open_store
from deployments.tools.breaker_actor import BreakerClient, breaker_actor
from deployments.vad.engine import SileroVAD
from models.protocol import CloseCode, ProtocolError, event, parse_connect
from models.session import StartSession
from serve_app.admission import Admission, default_origins
from serve_app.conversation.call import Call
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines, StageTimeout, within
from serve_app.http_guard import Guard, deny
from serve_app.resumption import Resumption
from serve_app.session_pool import AtCapacity, SessionPool

log = logging.getLogger(__name__)
api = FastAPI(title="voice-agent gateway", docs_url=None, redoc_url=None)
api.add_middleware(Guard, settings=get_settings)  # Host allow-list on every route; bearer token on /admin/*

# The browser caller: static files shipped in the package, served as they are (no build step).
WEB = Path(__file__).parent / "web"
WEB_FILES = {"app.js": "text/javascript", "worklets.js": "text/javascript", "style.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}


def _metrics():
    from ray.serve import metrics

    return {
        "calls": metrics.Counter("voice_calls_total", "Calls by how they ended", tag_keys=("reason",)),
        "active": metrics.Gauge("voice_active_calls", "Calls in progress on this replica"),
        "stage": metrics.Histogram(
            "voice_turn_stage_ms",
            "Per-turn latency by stage",
            boundaries=[25, 50, 100, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000],
            tag_keys=("stage",),
        ),
        "rejected": metrics.Counter(
            "voice_connect_rejected_total", "Connections refused before session.started", tag_keys=("code",)
        ),
    }


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100)
@serve.ingress(api)
class Gateway:
    async def __init__(self, asr: DeploymentHandle, tts: DeploymentHandle, dialogue: DeploymentHandle):
        self._settings = get_settings()
        self._asr, self._tts, self._dialogue = asr, tts, dialogue
        self._vad = SileroVAD()
        self._metrics = _metrics()
        actor_opts = {"num_cpus": self._settings.session_actor_num_cpus, "namespace": SESSION_NAMESPACE}
        self._pool = SessionPool(
            lambda: SessionActor.options(name=f"session-{uuid.uuid4().hex}", **actor_opts).remote(),
            self._settings.warm_sessions,
            self._settings.max_calls_per_replica,
            self._settings.actor_start_timeout_ms / 1000,
        )
        self._pool.start()  # pre-start session actors now, not on the first call
        self._resumption = Resumption(self._pool, open_store(self._settings), self._settings)
        s = self._settings
        origins = s.allowed_origins or default_origins(s.http_port)
        self._admission = Admission(origins, s.calls_per_minute_per_caller, s.calls_per_minute_per_address)
        # Deepgram's breaker lives with the tools' ones: one outage opens it for every call.
        self._breakers = BreakerClient(
            breaker_actor(self._settings.breaker_failure_threshold, self._settings.breaker_recovery_s)
        )

    @api.get("/")
    async def page(self) -> FileResponse:
        """The browser caller (docs: README, "Call from a browser")."""
        return FileResponse(WEB / "index.html", media_type="text/html", headers=NO_CACHE)

    @api.get("/static/{name}")
    async def static(self, name: str) -> FileResponse:
        media_type = WEB_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return FileResponse(WEB / name, media_type=media_type, headers=NO_CACHE)

    @api.get("/health")
    async def health(self) -> dict:
        """Liveness, and which providers this replica was configured with."""
        s = self._settings
        return {
            "status": "ok",
            "providers": {"asr": s.asr_provider, "tts": s.tts_provider, "dialogue": s.dialogue_provider},
            "preemptive_ms": s.preemptive_ms,
        }

    @api.get("/ready")
    async def ready(self):
        body = {
            "ready": self._pool.remaining > 0,
            "active_calls": self._pool.active,
            "capacity": self._pool.max_active,
            "remaining_capacity": self._pool.remaining,
            "warm_sessions": self._pool.warm,
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @api.get("/admin/breakers")
    async def breakers(self) -> dict:
        """Each tool's circuit breaker, as the cluster-wide breaker actor holds it."""
        actor = breaker_actor(self._settings.breaker_failure_threshold, self._settings.breaker_recovery_s)
        return {"breakers": await actor.states.remote()}

    @api.websocket("/ws/call")
    async def call(self, ws: WebSocket) -> None:
        try:
            params = parse_connect(dict(ws.query_params))
        except ProtocolError as exc:
            self._metrics["rejected"].inc(tags={"code": exc.code})
            log.info("connect refused: %s", exc.message)
            await ws.close(code=exc.close_code, reason=exc.message[:120])
            return
        # Before accept: a foreign page's Origin gets HTTP 403, too many new calls HTTP 429.
        address = ws.client.host if ws.client else None
        denied = self._admission.check(ws.headers.get("origin"), address, params.caller_id)
        if denied is not None:
            self._metrics["rejected"].inc(tags={"code": "origin_forbidden" if denied[0] == 403 else "rate_limited"})
            log.info("connect refused: HTTP %d, %s", *denied)
            await deny(ws.scope, ws.receive, ws.send, *denied, {"Retry-After": "60"} if denied[0] == 429 else None)
            return
        resuming = None
        if params.resume is not None:
            try:
                resuming = await self._resumption.take(params)
            except AtCapacity:
                await deny(ws.scope, ws.receive, ws.send, 503, "at capacity: try again", {"Retry-After": "1"})
                return
            if resuming is None:
                self._metrics["rejected"].inc(tags={"code": "resume_refused"})
                await deny(ws.scope, ws.receive, ws.send, 403, "resume token unknown, used, expired or not yours")
                return
        await ws.accept()
        deadlines = Deadlines.from_settings(self._settings)
        if resuming is None:
            try:
                actor = await self._pool.acquire()  # spawning one, if none is warm, within actor_start_s
            except AtCapacity as exc:
                self._metrics["rejected"].inc(tags={"code": "at_capacity"})
                await ws.send_text(event("session.ended", reason="at_capacity", message=str(exc)))
                await ws.close(code=CloseCode.AT_CAPACITY, reason="at capacity")
                return
            except Exception as exc:
                await self._refuse(ws, "start_timeout" if isinstance(exc, StageTimeout) else "server_error", exc)
                return
            session_id = uuid.uuid4().hex
        else:
            actor, opened = resuming
            session_id = opened.state.session_id
        reason, handler, started = "server_error", None, resuming is not None
        try:  # from here on, whatever happens (cancellation included), the line is released
            self._metrics["active"].set(self._pool.active)
            if resuming is None:
                try:
                    start = actor.start.remote(
                        StartSession(session_id=session_id, caller_id=params.caller_id, locale=params.locale)
                    )
                    opened = await within(start, deadlines.actor_start_s, "session start")
                except StageTimeout as exc:
                    reason = "start_timeout"
                    await self._refuse(ws, reason, exc)
                    return
            started = True
            handler = Call(
                ws,
                params,
                SessionClient(actor, self._dialogue, opened.context, deadlines, self._pool.replace),
                self._transcribe,
                self._synthesize,
                self._vad.stream(),
                self._settings,
                self._observe,
                self._breakers,
                resume_token=opened.resume_token,
                resumed=resuming is not None,
            )
            log.info("call %s started (caller %s, %d Hz)", session_id, params.caller_id, params.sample_rate)
            reason = await handler.run()
        except Exception:
            log.exception("call %s failed", session_id)
            try:
                await within(self._end(ws, "server_error", CloseCode.SERVER_ERROR), 1.0, "close")
            except Exception:
                pass
        finally:
            try:
                if handler is not None:
                    await handler.checkpoint_final(reason)  # a no-op when run() already tried it
                elif started:
                    await within(actor.finalize.remote(reason), deadlines.checkpoint_s, "final checkpoint")
            except BaseException as exc:
                log.error("call %s: final checkpoint failed: %r", session_id, exc)
            finally:
                if handler is not None:
                    actor = handler.session.actor  # the one holding the call now (a dead one was replaced)
                if handler is not None and handler.held:  # dropped: the actor waits for a resume
                    self._pool.detach()
                    self._resumption.expire_later(actor, session_id)
                else:
                    self._pool.release(actor)  # kills the actor: never skipped, never waits on it
                self._metrics["active"].set(self._pool.active)
                self._metrics["calls"].inc(tags={"reason": reason})
                log.info("call %s ended: %s", session_id, reason)

    async def _refuse(self, ws: WebSocket, reason: str, exc: Exception) -> None:
        """No session actor could be had in time: the caller is told, the call ends (1013: try again)."""
        self._metrics["rejected"].inc(tags={"code": reason})
        log.warning("call refused (%s): %r", reason, exc)
        code = CloseCode.AT_CAPACITY if reason == "start_timeout" else CloseCode.SERVER_ERROR
        try:
            await within(self._end(ws, reason, code), 1.0, "close")
        except Exception:
            pass

    @staticmethod
    async def _end(ws: WebSocket, reason: str, code: int) -> None:
        await ws.send_text(event("session.ended", reason=reason))
        await ws.close(code=code, reason=reason)

    async def _transcribe(self, pcm16: bytes, locale: str) -> dict:
        return await self._asr.transcribe.remote(pcm16, locale.split("-")[0])

    def _synthesize(self, text: str, sample_rate: int, locale: str = "en-US", first: bool = False):
        return self._tts.options(stream=True).synthesize.remote(text, sample_rate, locale, first)

    def _observe(self, stage: str, ms: float) -> None:
        self._metrics["stage"].observe(ms, tags={"stage": stage})
