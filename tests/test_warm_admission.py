"""Admission only with a warm session actor, and load shedding, on the real platform: a burst
beyond the warm pool is admitted from it or refused with 1013 (never left waiting on a spawn),
the pool refills after it, and a forced shed refuses a new call while a live one is answered."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from serve_app.call import CallClient
from tests.conftest import redeploy
from tests.test_durable import said, typed

pytestmark = pytest.mark.platform

WAIT_MS = 1500  # the production default of VOICE_WARM_WAIT_MS
SLACK_S = 1.5  # handshake, the actor's start and session.started on a loaded 2-core machine


def ready(platform) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(platform["http"] + "/ready", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def gateway_env(platform):
    """gateway_env(env, switched): the Gateway redeployed with `env`, one replica (the state a test
    reads through /ready is that replica's, the one holding its calls); as configured again after."""
    yield lambda env, switched: redeploy(platform, "Gateway", env, switched, replicas=1)
    redeploy(platform, "Gateway", None, lambda: ready(platform)[1]["warm_target"] == 2)


async def _dial(platform, caller: str) -> tuple[CallClient, float]:
    client = CallClient(platform["ws"], caller, resume_for=0)
    started = time.monotonic()
    try:
        await client.connect(timeout=30)
    except ConnectionError:
        pass
    return client, time.monotonic() - started


async def test_a_burst_beyond_the_warm_pool_is_admitted_warm_or_refused_1013_and_the_pool_refills(
    platform, gateway_env
):
    env = {"VOICE_WARM_SESSIONS": "3", "VOICE_WARM_WAIT_MS": str(WAIT_MS), "VOICE_WARM_SPAWN_PAUSE_MS": "500"}
    gateway_env(env, lambda: ready(platform)[1]["warm_target"] == 3 and ready(platform)[1]["warm_sessions"] == 3)
    dialled = await asyncio.gather(*(_dial(platform, f"burst-{i}") for i in range(5)))  # 5 lines, 3 warm
    try:
        admitted = [(c, s) for c, s in dialled if c.session]
        refused = [(c, s) for c, s in dialled if not c.session]
        assert len(admitted) >= 3, [(c.close_code, c.close_reason, s) for c, s in dialled]
        for client, seconds in dialled:  # nobody waits on an inline spawn: in time, or told to try again
            assert seconds < WAIT_MS / 1000 + SLACK_S, (client.session is not None, seconds)
        for client, _ in refused:
            assert client.close_code == 1013
            assert client.of_type("session.ended")[-1]["reason"] == "no_warm_session"
    finally:
        await asyncio.gather(*(c.hangup() for c, _ in dialled if c.session), return_exceptions=True)
    deadline = time.monotonic() + 60
    while ready(platform)[1]["warm_sessions"] < 3:  # refilled in the background, paced
        assert time.monotonic() < deadline, ready(platform)
        await asyncio.sleep(0.5)
    late, seconds = await _dial(platform, "after-the-burst")
    assert late.session and seconds < SLACK_S
    await late.hangup()


async def test_a_saturated_gateway_refuses_new_calls_and_keeps_answering_live_ones(platform, gateway_env):
    env = {"VOICE_SHED_TURN_P95_MS": "1", "VOICE_SHED_TURN_P95_RESUME_MS": "0", "VOICE_SHED_MIN_TURNS": "1"}
    gateway_env(env, lambda: ready(platform)[1]["shed_at"]["turn_first_audio_ms"] == 1)
    live, _ = await _dial(platform, "shed-live")
    assert live.session  # no turn measured yet: nothing to shed
    try:
        assert said(await typed(live, "what are your opening hours"))  # any answer is slower than 1 ms
        status, body = ready(platform)
        assert status == 503 and body["shedding"] and body["turn_first_audio_p95_ms"] > 1, body
        refused, seconds = await _dial(platform, "shed-new")
        assert not refused.session and refused.close_code == 1013 and seconds < SLACK_S
        assert refused.of_type("session.ended")[-1]["reason"] == "overloaded"
        assert said(await typed(live, "how long is the warranty")), "the live call is still answered"
        assert not live.closed
    finally:
        await live.hangup()
