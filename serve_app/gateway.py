"""The ingress: FastAPI on Ray Serve. Owns the WebSocket, VAD and the session actors' pool.

No `from __future__ import annotations` here: FastAPI must see the real `WebSocket` type
through Serve's class-based ingress, or it takes `ws` for a query parameter (HTTP 403).
"""

import asyncio
import logging
import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from common.config import get_settings
from common.logs import mask_logs_in_this_process
from deployments.session.actor import SESSION_NAMESPACE, SessionActor, session_settings
from deployments.session.store import open_store
from deployments.tools.breaker_actor import BreakerClient, breaker_actor
from deployments.vad.engine import SileroVAD
from deployments.vad.hearing_profile import hearing_profile
from models.asr import AsrRequest
from models.protocol import CloseCode, ProtocolError, parse_connect
from serve_app.admission import Admission, default_origins
from serve_app.call_metrics import CallMeters
from serve_app.calls import Calls
from serve_app.capacity import CapacityReporter, ledger_actor
from serve_app.conversation.call import Call
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines
from serve_app.drain import DrainWatch, serve_probe
from serve_app.http_guard import Guard, deny
from serve_app.load_shed import LoadShedder, watch_loop_lag
from serve_app.phone import webhook
from serve_app.phone.handover import Handover, MovingLine, RayBoard
from serve_app.resumption import Resumption
from serve_app.session_pool import AtCapacity, SessionPool
from serve_app.tracing import Tracing
from serve_app.warm_sizing import WarmSizer

log = logging.getLogger(__name__)
api = FastAPI(title="voice-agent gateway", docs_url=None, redoc_url=None)
api.add_middleware(Guard, settings=get_settings)  # Host allow-list on every route; bearer token on /admin/*

# The browser caller: static files shipped in the package, served as they are (no build step).
WEB = Path(__file__).parent / "web"
WEB_FILES = {"app.js": "text/javascript", "worklets.js": "text/javascript", "style.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100)
@serve.ingress(api)
class Gateway:
    async def __init__(self, asr: DeploymentHandle, tts: DeploymentHandle, dialogue: DeploymentHandle):
        mask_logs_in_this_process()
        self._settings = get_settings()
        self._asr, self._tts, self._dialogue = asr, tts, dialogue
        self._vad = SileroVAD()
        self._tracing = Tracing.from_settings(self._settings)  # langfuse is imported only when configured
        actor_opts = {
            "num_cpus": self._settings.session_actor_num_cpus,
            "namespace": SESSION_NAMESPACE,
            "lifetime": "detached",  # a call outlives this replica; its lease ends it (deployments/session/lease.py)
        }
        if self._settings.session_actor_resources:  # only nodes carrying them take calls' actors
            actor_opts["resources"] = dict(self._settings.session_actor_resources)
        for_actor = session_settings(self._settings)
        s = self._settings
        sizer = WarmSizer(
            s.warm_sessions, s.warm_sessions_max, s.warm_window_s, s.warm_margin, s.warm_spawn_pause_ms / 1000
        )
        self._pool = SessionPool(
            lambda: SessionActor.options(name=f"session-{uuid.uuid4().hex}", **actor_opts).remote(for_actor),
            s.warm_sessions,
            s.max_calls_per_replica,
            s.actor_start_timeout_ms / 1000,
            s.session_lease_s,
            sizer,
            s.warm_wait_ms / 1000,
            reuse=s.session_actor_max_calls > 1,
        )
        self._pool.start()  # pre-start session actors now, not on the first call
        self._shedder = LoadShedder(
            s.shed_loop_lag_ms,
            s.shed_loop_lag_resume_ms,
            s.shed_turn_p95_ms,
            s.shed_turn_p95_resume_ms,
            s.shed_window_s,
            s.shed_min_turns,
        )
        self._lag_task = asyncio.get_running_loop().create_task(watch_loop_lag(self._shedder.lag))
        self._meters = CallMeters(self._pool.max_active, self._shedder.turn)
        self._resumption = Resumption(self._pool, open_store(self._settings), self._settings)
        self._handover = Handover(RayBoard(), s.resume_window_s)  # a drained phone call's way back
        self._calls = Calls(self._settings, self._pool, self._make_call, self._meters, self._shedder)
        pool = self._pool
        self._capacity = CapacityReporter(
            ledger_actor(), uuid.uuid4().hex, lambda: (pool.active, pool.max_active, self._calls.draining)
        )
        self._capacity.start()
        self._drain_watch = DrainWatch(serve_probe(), self._drain)
        self._drain_watch.start()
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
            "tracing": "langfuse" if self._tracing.on else "off",
            "preemptive_ms": s.preemptive_ms,
            "output_frame_ms": s.output_frame_ms,
        }

    @api.get("/ready")
    async def ready(self):
        shedding = self._shedder.shedding
        lag, turn = self._shedder.signals()
        body = {
            "ready": self._pool.remaining > 0 and not self._calls.draining and not shedding,
            "draining": self._calls.draining,
            "shedding": shedding,
            "active_calls": self._pool.active,
            "capacity": self._pool.max_active,
            "remaining_capacity": self._pool.remaining,
            "warm_sessions": self._pool.warm,
            "warm_target": self._pool.sizer.target(),
            "loop_lag_p95_ms": None if lag is None else round(lag, 1),
            "turn_first_audio_p95_ms": None if turn is None else round(turn, 1),
            "shed_at": {"loop_lag_ms": self._shedder.lag_shed, "turn_first_audio_ms": self._shedder.turn_shed},
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
            self._meters.rejected(exc.code)
            log.info("connect refused: %s", exc.message)
            await ws.close(code=exc.close_code, reason=exc.message[:120])
            return
        # Before accept: a foreign page's Origin gets HTTP 403, a full replica 503 (dial again: counted
        # nowhere), too many new calls HTTP 429. A resume is not a new call: only its address counts.
        denied = self._admission.origin(ws.headers.get("origin"))
        if denied is None:
            refusal = await self._no_room(params)
            if refusal is not None:
                self._meters.rejected(refusal[0])
                await deny(ws.scope, ws.receive, ws.send, 503, refusal[1], {"Retry-After": "0"})
                return
            address = ws.client.host if ws.client else None
            caller = params.caller_id if params.resume is None else None
            denied = await self._capacity.admit(self._admission, address, caller)
        if denied is not None:
            self._meters.rejected("origin_forbidden" if denied[0] == 403 else "rate_limited")
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
                self._meters.rejected("resume_refused")
                await deny(ws.scope, ws.receive, ws.send, 403, "resume token unknown, used, expired or not yours")
                return
        try:
            await self._calls.serve(ws, params, resuming)
        finally:
            self._capacity.report()

    @api.post(webhook.VOICE_PATH)
    async def phone_rings(self, request: Request) -> Response:
        """Twilio's webhook for an incoming call: TwiML connecting it to the media stream below."""
        return await webhook.answer(request, self._settings, self._handover)

    @api.websocket(webhook.STREAM_PATH)
    async def phone_call(self, ws: WebSocket) -> None:
        """A phone call's media stream (Twilio Media Streams): the same Call as /ws/call's."""
        s = self._settings
        if s.public_url is None:
            await deny(ws.scope, ws.receive, ws.send, 404, "phone calls are off: set VOICE_PUBLIC_URL")
            return
        refusal = await self._no_room(None)
        if refusal is not None:  # <Connect> ends: Twilio goes on to the redirect (a drained call's: another replica)
            self._meters.rejected(refusal[0])
            await deny(ws.scope, ws.receive, ws.send, 503, refusal[1])
            return
        secret = s.twilio_auth_token.get_secret_value() if s.twilio_auth_token is not None else ""
        line = MovingLine(ws, self._handover, secret, s.max_dropped_messages)
        params = await line.open()
        # Twilio's media servers are every phone call's address: only the caller's count applies (a resume's not).
        denied = None
        if params is not None and params.resume is None:
            denied = await self._capacity.admit(self._admission, None, params.caller_id)
        if params is None or denied is not None:
            self._meters.rejected("phone_refused" if params is None else "rate_limited")
            await line.close(CloseCode.POLICY, denied[1] if denied else "refused")
            return
        resuming = None if params.resume is None else await line.take_over(self._resumption)
        if params.resume is not None and resuming is None:
            self._meters.rejected("resume_refused")
            return
        try:
            await self._calls.serve(line, params, resuming)
        finally:
            self._capacity.report()

    async def _no_room(self, params) -> tuple[str, str] | None:
        """Why this replica sends the caller to another (HTTP 503, Retry-After 0): it is draining,
        or it is full while another has room. None: take the call here (1013 if all are full)."""
        if self._calls.draining:
            return "draining", "this replica is shutting down: dial again"
        if self._pool.remaining == 0 and await self._capacity.room_elsewhere():
            return "replica_full", "this replica is full and another has room: dial again"
        return None

    def _make_call(self, ws, params, actor, opened, resumed: bool) -> Call:
        deadlines = Deadlines.from_settings(self._settings)
        return Call(
            ws,
            params,
            SessionClient(actor, self._dialogue, opened.context, deadlines, self._pool.replace, self._pool.discard),
            self._transcribe,
            self._synthesize,
            self._vad.stream(hearing_profile(self._settings, params.sample_rate).vad_rate),
            self._settings,
            self._meters.turn,
            self._breakers,
            resume_token=opened.resume_token,
            resumed=resumed,
            on_barge_in=self._meters.barge_in,
            trace=self._tracing.call(opened.context.session_id, params.caller_id),
        )

    def _drain(self) -> None:
        self._calls.drain()
        self._capacity.report()

    async def _transcribe(self, request: AsrRequest) -> dict:
        return await self._asr.transcribe.remote(request)

    def _synthesize(self, text: str, sample_rate: int, locale: str = "en-US", first: bool = False):
        return self._tts.options(stream=True).synthesize.remote(text, sample_rate, locale, first)
