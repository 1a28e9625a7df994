"""Calls that survive the Gateway on the real platform: a redeploy drains live calls onto the new
replicas without losing a turn, capacity is counted across replicas, a phone call follows Twilio's
redirect onto a new replica, and a Gateway replica that dies loses no call (its clients resume
elsewhere with their tokens)."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import urllib.request

import pytest
import websockets

from tests.test_call import open_call, stored, wait_greeting_done
from tests.test_durable import said, typed
from tests.test_twilio import PUBLIC, SECRET, form, greeted, say, session_of
from tests.twilio_caller import Follow, TwilioCaller, ring, stream_of

pytestmark = pytest.mark.platform


def _gateway(config: dict) -> dict:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == "Gateway")


def _two_small_replicas(base: dict) -> dict:
    """The Gateway as two replicas of one line each (its own env, so only the Gateway restarts).
    Pinned through its autoscaling_config, not num_replicas: Serve hashes every deployment's
    autoscaling policy into the application's code version, so dropping that config would
    restart all five deployments under the live calls."""
    config = copy.deepcopy(base)
    gateway = _gateway(config)
    gateway["autoscaling_config"] = {**gateway["autoscaling_config"], "min_replicas": 2, "max_replicas": 2}
    env = {"VOICE_MAX_CALLS_PER_REPLICA": "1", "VOICE_WARM_SESSIONS": "1"}
    gateway["ray_actor_options"] = {**gateway.get("ray_actor_options", {}), "runtime_env": {"env_vars": env}}
    return config


def _replicas(names: tuple[str, ...]) -> set[str]:
    """The live replicas of these deployments (Serve names each replica actor after its own id)."""
    import ray

    actors = ray.util.list_named_actors(all_namespaces=True)
    return {a["name"] for a in actors if a["name"].startswith("SERVE_REPLICA::") and a["name"].split("#")[1] in names}


def _wait_ready(platform, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(platform["http"] + "/ready", timeout=5) as r:
                if json.loads(r.read())["ready"]:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the Gateway never became ready again")


async def _resumed(client, times: int, timeout_s: float = 90) -> None:
    await client.wait_for(lambda: client.resumes >= times, timeout_s)


async def test_a_redeploy_moves_live_calls_without_a_lost_turn_and_capacity_is_cluster_wide(platform):
    from serve_app import cluster

    base = cluster.load_config(http_port=platform["port"], env=cluster.settings_env())
    alice = await open_call(platform, "demo-alice")
    await wait_greeting_done(alice)
    assert "PIN" in said(await typed(alice, "where is my order"))
    assert "Alice" in said(await typed(alice, "1234"))
    other = await open_call(platform, "drain-other")  # now: quiet since its greeting, it would be checked on
    await wait_greeting_done(other)
    try:
        mark = len(other.events)
        await other.send_json({"type": "text", "text": "what are your opening hours"})  # in flight at the drain
        others = _replicas(("ASR", "TTS", "Embeddings", "Dialogue"))
        assert len(others) >= 4, others
        await asyncio.to_thread(cluster.deploy, _two_small_replicas(base))  # a new Gateway version
        await _resumed(alice, 1)
        await _resumed(other, 1)
        for client in (alice, other):
            ended = client.of_type("session.ended")
            assert [e["reason"] for e in ended] == ["draining"] and ended[0]["resume_token"], ended
        assert said(other.events[mark:]), "the turn in flight at the drain was answered"
        assert _replicas(("ASR", "TTS", "Embeddings", "Dialogue")) == others, "only the Gateway restarted"

        reply = said(await typed(alice, "where is order 10042"))
        assert "PIN" not in reply and "shipped" in reply, reply  # memory intact on the new replica
        assert said(await typed(other, "thanks, and where are you located"))
        asked = {
            alice: ["where is my order", "[PIN]", "where is order 10042"],  # the PIN is masked in the store
            other: ["what are your opening hours", "thanks, and where are you located"],
        }
        for client, texts in asked.items():
            state = stored(platform, client.session["session_id"])
            assert [t.turn_id for t in state.turns] == list(range(len(state.turns)))  # numbering goes on
            heard = [t.transcript for t in state.turns if t.source == "text"]
            assert heard == texts, [(t.turn_id, t.source, t.transcript) for t in state.turns]  # none lost, none twice

        # Two replicas of one line each, both taken: only now is a caller refused.
        async with websockets.connect(platform["ws"] + "?caller_id=drain-third") as third:
            ended = json.loads(await asyncio.wait_for(third.recv(), 30))
            assert ended["type"] == "session.ended" and ended["reason"] == "at_capacity", ended
            await asyncio.wait_for(third.wait_closed(), 10)
            assert third.close_code == 1013
    finally:
        for client in (alice, other):
            if not client.closed:
                await client.hangup()
        await asyncio.to_thread(cluster.deploy, base)
        await asyncio.to_thread(_wait_ready, platform)


def _new_gateway_version(base: dict) -> dict:
    """The same Gateway as a new version (another runtime_env): a rolling update drains its replicas."""
    config = copy.deepcopy(base)
    gateway = _gateway(config)
    env = {"VOICE_DRAIN_TURN_S": "15"}
    gateway["ray_actor_options"] = {**gateway.get("ray_actor_options", {}), "runtime_env": {"env_vars": env}}
    return config


async def _heard(phone: TwilioCaller, platform, session_id: str, n: int):
    """The call's state once it holds `n` turns and the last reply's audio has arrived (silence meanwhile)."""
    deadline = time.monotonic() + 60
    while len((state := stored(platform, session_id)).turns) < n or not phone.quiet_for(0.8):
        assert time.monotonic() < deadline, [(t.turn_id, t.source, t.transcript) for t in state.turns]
        await phone.play(bytes(1600), 8000)
    return state


async def test_a_redeploy_moves_a_phone_call_through_twilios_redirect_with_its_state(platform, speak):
    from serve_app import cluster

    base = cluster.load_config(http_port=platform["port"], env=cluster.settings_env())
    rang = form("demo-alice")  # a SIP or client caller whose id is a customer's
    status, twiml = ring(platform["http"], PUBLIC, SECRET, rang)
    assert status == 200 and "<Redirect" in twiml, twiml
    follow = Follow(platform["http"], SECRET, rang, twiml)
    url = f"ws://127.0.0.1:{platform['port']}/twilio/stream"
    phone = TwilioCaller(url, rang["CallSid"], stream_of(twiml)[1], follow)
    await phone.connect()
    deploying = None
    try:
        await greeted(phone)
        session_id = session_of(platform, "demo-alice").session_id  # this call: the caller's latest
        # No comma: piper's pause there may end the turn early (issue 17), and this test counts turns.
        await say(phone, speak("Where is my order one zero zero four two?"))
        assert "PIN" in " ".join((await _heard(phone, platform, session_id, 2)).turns[1].reply or [])
        await phone.dtmf("1234#")
        assert (await _heard(phone, platform, session_id, 3)).authenticated
        deploying = asyncio.create_task(asyncio.to_thread(cluster.deploy, _new_gateway_version(base)))
        await phone.silence_until(lambda: len(phone.streams) == 2, 120)  # drained, redirected, on a new stream
        assert stream_of(follow.answers[0])[1]["resume"] == "1", follow.answers
        held = len(stored(platform, session_id).turns)
        await say(phone, speak("Where is my order one zero zero four two?"))
        state = await _heard(phone, platform, session_id, held + 1)
        asked = state.turns[held]
        assert "PIN" not in " ".join(asked.reply or []) and "order_status" in [t.tool for t in asked.tool_results]
        await phone.stop()
        assert len(follow.answers) == 1  # the caller's hang-up: Twilio follows no verb
        state = stored(platform, session_id)
        assert state.authenticated and "session.resumed" in [e.kind for e in state.events]
        assert [t.turn_id for t in state.turns] == list(range(len(state.turns)))  # numbering goes on
        sources = [t.source for t in state.turns]
        assert sources.count("greeting") == 1 and state.turns[2].transcript == "[PIN]", sources  # no second greeting
    finally:
        if phone.closed_at is None:
            await phone.stop()
        if deploying is not None:
            await deploying
        await asyncio.to_thread(cluster.deploy, base)
        await asyncio.to_thread(_wait_ready, platform)


async def test_a_dead_gateway_replica_loses_no_call(platform):
    import ray

    client = await open_call(platform, "demo-alice")
    await wait_greeting_done(client)
    assert "PIN" in said(await typed(client, "where is my order"))
    assert "Alice" in said(await typed(client, "1234"))
    replicas = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and "#Gateway#" in a["name"]
    ]
    assert replicas
    killed_at = time.monotonic()
    for name in replicas:  # every replica: the call has nowhere to go but a restarted one
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    try:
        try:
            await _resumed(client, 1)
        except TimeoutError:
            state = stored(platform, client.session["session_id"])
            raise AssertionError(f"not resumed: {[(e.kind, e.detail) for e in state.events][-8:]}") from None
        back_in = time.monotonic() - killed_at
        reply = said(await typed(client, "where is order 10042"))
        assert "PIN" not in reply and "shipped" in reply, reply
        assert not client.of_type("session.ended")
        state = stored(platform, client.session["session_id"])
        assert "session.resumed" in [e.kind for e in state.events] and state.authenticated
        assert back_in < 60, back_in
    finally:
        if not client.closed:
            await client.hangup()
        await asyncio.to_thread(_wait_ready, platform)
