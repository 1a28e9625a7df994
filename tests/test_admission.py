"""Admission at the door, in process: Host and Origin allow-lists, new calls per caller and
per address, the admin bearer token (issue 11, findings 4, 5, 7). The same checks on the
running platform: tests/test_security.py."""

import asyncio
import logging

import pytest
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient, WebSocketDenialResponse

from common.config import Settings
from serve_app.admission import (
    Admission,
    CallRates,
    SlidingWindowLimiter,
    bearer_ok,
    default_hosts,
    default_origins,
    host_allowed,
    origin_allowed,
)
from serve_app.http_guard import Guard
from tests.test_tools import Clock

TOKEN = "s3cr3t-admin-token-value"


def test_hosts_and_origins():
    hosts = default_hosts(8000)
    allowed = ("127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "127.0.0.1", "127.0.0.1:8001", "[::1]:8000")
    assert all(host_allowed(h, hosts) for h in allowed)  # a local relay on another port is still us
    refused = (
        "evil.example",
        "evil.example:8000",
        "127.0.0.1.evil.example:8000",
        "localhost.evil:80",
        "127.0.0.1:x",
        "",
        None,
    )
    assert not any(host_allowed(h, hosts) for h in refused)
    assert host_allowed("voice.example.com:443", ["voice.example.com:*"]) and not host_allowed(
        "voice.example.com:443", ["voice.example.com"]
    )
    origins = default_origins(8000)
    assert origin_allowed(None, origins)  # no Origin: not a browser page (CLI, SDKs, telephony)
    assert origin_allowed("http://127.0.0.1:8000", origins) and origin_allowed("http://localhost:8000/", origins)
    for foreign in ("https://evil.example", "null", "http://127.0.0.1:8001", "https://127.0.0.1:8000", ""):
        assert not origin_allowed(foreign, origins), foreign


def test_bearer_token():
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN) and bearer_ok(f"bearer {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"Token {TOKEN}"):
        assert not bearer_ok(header, TOKEN), header
    assert not bearer_ok("Bearer ", "")  # no token configured: nothing matches


def test_sliding_window():
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # keys apart
    clock.t = 30
    assert not limiter.allow("a")
    clock.t = 60.5  # the first three left the window
    assert limiter.allow("a") and limiter.allow("a") and limiter.allow("a") and not limiter.allow("a")


def test_sliding_window_memory_is_bounded():
    clock = Clock()
    limiter = SlidingWindowLimiter(10, 60, max_keys=1000, clock=clock)
    for i in range(50_000):  # a flood of made-up caller ids
        assert limiter.allow(f"caller-{i}")
    assert len(limiter) == 1000
    clock.t = 61  # idle keys go as soon as anybody calls
    limiter.allow("late")
    assert len(limiter) == 1


def test_admission_limits_per_address_and_per_caller():
    clock = Clock()
    door = Admission(default_origins(8000), per_caller=2, per_address=3, clock=clock)
    assert door.check("https://evil.example", "10.0.0.1", "c1") == (403, "origin not allowed")
    assert door.check(None, "10.0.0.1", "c1") is None
    assert door.check("http://127.0.0.1:8000", "10.0.0.1", "c1") is None
    assert door.check(None, "10.0.0.2", "c1")[0] == 429  # the same caller id from elsewhere
    assert door.check(None, "10.0.0.1", "c2") is None
    status, reason = door.check(None, "10.0.0.1", "c3")  # a fresh caller id, but the address is spent
    assert status == 429 and "address" in reason
    assert door.check(None, "10.0.0.3", "c3") is None
    clock.t = 61
    assert door.check(None, "10.0.0.1", "c1") is None


def _app(settings: Settings) -> FastAPI:
    app = FastAPI()
    app.add_middleware(Guard, settings=lambda: settings)

    @app.get("/ready")
    async def ready():
        return {"ready": True}

    @app.get("/admin/breakers")
    async def breakers():
        return {"breakers": {}}

    @app.websocket("/ws/call")
    async def call(ws: WebSocket):
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    return app


def test_guard_refuses_foreign_hosts_on_every_route():
    client = TestClient(_app(Settings(http_port=8000)), base_url="http://127.0.0.1:8000")
    assert client.get("/ready").status_code == 200
    assert client.get("/ready", headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get("/ready", headers={"Host": "evil.example:8000"}).status_code == 421
    with client.websocket_connect("ws://127.0.0.1:8000/ws/call") as ws:
        assert ws.receive_text() == "hello"
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect("ws://evil.example/ws/call"):
            pass
    assert denied.value.status_code == 421
    custom_settings = Settings(http_port=8000, allowed_hosts="voice.example.com")
    custom = TestClient(_app(custom_settings), base_url="http://voice.example.com")
    assert custom.get("/ready").status_code == 200
    assert custom.get("/ready", headers={"Host": "127.0.0.1:8000"}).status_code == 421


def test_admin_routes_need_the_token(caplog):
    off = TestClient(_app(Settings(http_port=8000)), base_url="http://127.0.0.1:8000")
    assert off.get("/admin/breakers").status_code == 404  # no token configured: the routes are off
    assert off.get("/admin/breakers", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    settings = Settings(http_port=8000, admin_token=TOKEN)
    client = TestClient(_app(settings), base_url="http://127.0.0.1:8000")
    caplog.set_level(logging.DEBUG)
    missing = client.get("/admin/breakers")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/admin/breakers", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/admin/x", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    ok = client.get("/admin/breakers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"breakers": {}}
    assert client.get("/ready").status_code == 200  # other routes need no token
    assert TOKEN not in caplog.text and TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_settings_validate_origins(monkeypatch):
    from common.config import ConfigError, load_settings

    monkeypatch.setenv("VOICE_ALLOWED_ORIGINS", "https://voice.example.com, http://10.0.0.5:8000")
    assert load_settings().allowed_origins == ["https://voice.example.com", "http://10.0.0.5:8000"]
    monkeypatch.setenv("VOICE_ALLOWED_ORIGINS", "voice.example.com")
    with pytest.raises(ConfigError, match="VOICE_ALLOWED_ORIGINS"):
        load_settings()


def test_serve_proxy_ignores_forwarded_for_from_loopback(monkeypatch):
    """Serve's proxy is uvicorn, which by default takes X-Forwarded-For from 127.0.0.1 as the
    client: a local caller could then pick its address for the per-address limit."""
    import uvicorn

    from serve_app import cluster

    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    cluster.loopback_env()  # what `voice-agent up` and the test platform do before Ray starts
    seen = {}

    async def app(scope, receive, send):
        seen["client"] = scope["client"]

    config = uvicorn.Config(app)
    config.load()
    scope = {"type": "http", "client": ("127.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"6.6.6.6")]}
    asyncio.run(config.loaded_app(scope, None, None))
    assert seen["client"] == ("127.0.0.1", 5000)


def test_call_rates_are_one_count_for_every_replica_and_take_new_limits_at_once():
    """The ledger actor's count: two replicas asking it share the caller's ten a minute, and a
    redeploy's new limit applies to the next question."""
    clock = Clock()
    rates = CallRates(per_caller=10, per_address=100, clock=clock)
    answers = [rates.admit(f"10.0.0.{i % 2}", "guesser", 2, 100) for i in range(3)]  # two replicas' callers
    assert answers[:2] == [None, None] and answers[2] == (429, "too many new calls for this caller")
    assert rates.admit("10.0.0.9", "guesser", 3, 100) is None  # the limit raised by a redeploy
    assert rates.admit("10.0.0.9", "guesser", 3, 100)[0] == 429


def test_a_resume_counts_for_its_address_only():
    """A resume is the same call coming back (a phone changing networks, a Gateway redeployed), not
    a new call: it never spends the caller's new calls, only the address's."""
    rates = CallRates(per_caller=1, per_address=3, clock=Clock())
    assert rates.admit("10.0.0.1", "mover") is None
    assert [rates.admit("10.0.0.1", None) for _ in range(2)] == [None, None]
    assert rates.admit("10.0.0.1", None)[0] == 429  # the address is spent
