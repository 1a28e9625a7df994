"""The door of the running platform (issue 11, findings 4, 5, 7 and 9): a foreign page's
Origin gets HTTP 403 at the WebSocket handshake, a foreign Host 421 on every route, too many
new calls for one caller_id HTTP 429, `/admin/*` needs the bearer token, and that token
reaches the Gateway without showing in anything Serve reports."""

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from serve_app.call import CallClient
from tests.conftest import TEST_ENV

pytestmark = pytest.mark.platform
TOKEN = TEST_ENV["VOICE_ADMIN_TOKEN"]


def _get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def _refused(url: str, **kwargs) -> int:
    """The HTTP status a refused handshake got (fails if the call was accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, open_timeout=30, **kwargs):
            pass
    return refused.value.response.status_code


async def test_a_foreign_origin_is_refused_at_the_handshake(platform):
    url = f"{platform['ws']}?caller_id=origin-probe"
    assert await _refused(url, origin="https://evil.example") == 403
    assert await _refused(url, origin="null") == 403
    async with websockets.connect(f"{url}&sample_rate=16000", origin=platform["http"], open_timeout=30) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "session.started"  # the gateway's own page
        await ws.send(json.dumps({"type": "hangup"}))


async def test_a_foreign_host_is_refused_on_every_route(platform):
    port = platform["port"]
    evil = {"Host": f"evil.example:{port}"}
    assert _get(f"{platform['http']}/ready", evil)[0] == 421
    assert _get(f"{platform['http']}/health", evil)[0] == 421
    assert _get(f"{platform['http']}/admin/breakers", {**evil, "Authorization": f"Bearer {TOKEN}"})[0] == 421
    assert _get(f"{platform['http']}/ready")[0] == 200
    assert _get(f"http://localhost:{port}/health")[0] == 200
    sock = socket.create_connection(("127.0.0.1", port))  # a rebound name: DNS says evil.example is us
    assert await _refused(f"ws://evil.example:{port}/ws/call?caller_id=host-probe", sock=sock) == 421


def test_admin_routes_need_the_bearer_token(platform):
    url = f"{platform['http']}/admin/breakers"
    assert _get(url)[0] == 401
    assert _get(url, {"Authorization": "Bearer not-the-token"})[0] == 401
    assert _get(url, {"Authorization": TOKEN})[0] == 401
    status, body = _get(url, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and isinstance(body["breakers"], dict)


async def test_too_many_new_calls_for_one_caller_get_429(platform):
    """VOICE_CALLS_PER_MINUTE_PER_CALLER (10) new calls a minute for one caller_id; the
    eleventh handshake is refused with HTTP 429 before any session starts."""
    for _ in range(10):
        client = CallClient(platform["ws"], "pin-guesser")
        await client.connect()
        await client.hangup()
        await client.close()
    url = f"{platform['ws']}?caller_id=pin-guesser&sample_rate=16000"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, open_timeout=30):
            pass
    assert refused.value.response.status_code == 429 and refused.value.response.headers["Retry-After"] == "60"
    other = CallClient(platform["ws"], "an-honest-caller")  # others are not held back
    await other.connect()
    await other.hangup()
    await other.close()


def test_the_admin_token_reaches_the_gateway_but_no_serve_output(platform):
    """The token is a secret: it travels through Ray's KV store, so neither `serve status`
    nor the deployed config (`serve config`, the dashboard) shows it."""
    from ray import serve
    from ray.serve.context import _get_global_client

    assert _get(f"{platform['http']}/admin/breakers", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    details = json.dumps(_get_global_client().get_serve_details(), default=str)
    app = json.loads(details)["applications"]["voice"]
    assert app["deployed_app_config"]["runtime_env"]["env_vars"]["VOICE_MAX_CALLS_PER_REPLICA"] == "5"  # plain ones do
    assert TOKEN not in details and TOKEN not in str(serve.status())
