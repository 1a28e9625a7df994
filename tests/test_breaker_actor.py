"""The cluster-wide breaker actor: a half-open trial never reported re-opens the breaker
after VOICE_BREAKER_TRIAL_TIMEOUT_S instead of refusing the tool everywhere, forever
(issue 11, finding 9). Starts a small local Ray: run it under the platform lock."""

import time
import uuid

from deployments.tools.breaker_actor import BreakerClient, breaker_actor
from tests.test_secrets import ray_runtime  # noqa: F401  (the fixture)


def _wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_lost_trial_reopens_the_shared_breaker(ray_runtime):  # noqa: F811
    ray = ray_runtime
    actor = breaker_actor(1, 0.3, trial_timeout_s=0.5, name=f"breakers-{uuid.uuid4().hex[:8]}")
    try:
        ray.get(actor.record.remote("verify_pin", False))
        assert _wait_for(lambda: ray.get(actor.allow.remote("verify_pin")))  # half-open: the trial goes out...
        trial_sent = time.monotonic()
        assert not ray.get(actor.allow.remote("verify_pin"))  # ...and its call hangs up: never recorded
        # Another replica's client sees it refused until the trial's deadline, then open again
        # (a failure), then a fresh trial after the recovery time.
        client = BreakerClient(actor, ttl_s=0.0)
        import asyncio

        assert not asyncio.run(client.allow("verify_pin"))
        assert _wait_for(lambda: ray.get(actor.states.remote())["verify_pin"]["state"] == "open")
        assert time.monotonic() - trial_sent >= 0.45
        assert ray.get(actor.states.remote())["verify_pin"]["failures"] == 2
        assert _wait_for(lambda: asyncio.run(client.allow("verify_pin")))  # a new trial
        asyncio.run(client.record("verify_pin", True))
        assert ray.get(actor.states.remote())["verify_pin"]["state"] == "closed"
    finally:
        ray.kill(actor)


def test_an_unreachable_breaker_actor_counts_as_closed_and_is_logged_once(ray_runtime, caplog):  # noqa: F811
    """Its node lost: calls go on (every breaker closed) instead of failing on the breaker."""
    import asyncio
    import logging

    ray = ray_runtime
    actor = breaker_actor(1, 30, trial_timeout_s=1, name=f"breakers-{uuid.uuid4().hex[:8]}")
    client = BreakerClient(actor, ttl_s=0.0, timeout_s=1.0, retry_s=0.0)
    asyncio.run(client.record("verify_pin", False))
    assert not asyncio.run(client.allow("verify_pin"))  # open while the actor answers
    ray.kill(actor, no_restart=True)  # asynchronous: a loaded box may still see it answer once
    assert _wait_for(lambda: _dead(ray, actor))
    with caplog.at_level(logging.WARNING, logger="deployments.tools.breaker_actor"):
        for _ in range(3):
            assert asyncio.run(client.allow("verify_pin"))
        asyncio.run(client.record("verify_pin", False))
        asyncio.run(client.configure("asr.test", 1, 1.0))
    # Logged once per outage: a loaded box may see a first call time out and the next answer
    # before the actor is gone for good, but never two warnings without an answer between them.
    said = ["down" if r.getMessage().startswith("breaker actor unreachable") else "up" for r in caplog.records]
    assert said and said[0] == "down" and said[-1] == "down", said
    assert all(a != b for a, b in zip(said, said[1:])), said


def test_a_breaker_actor_that_does_not_answer_is_not_waited_on(ray_runtime):  # noqa: F811
    import asyncio

    ray = ray_runtime

    @ray.remote(num_cpus=0)
    class Silent:
        async def states(self):
            await asyncio.sleep(60)

    client = BreakerClient(Silent.remote(), ttl_s=0.0, timeout_s=0.5, retry_s=30.0)
    t0 = time.monotonic()
    assert asyncio.run(client.allow("verify_pin"))
    assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    assert asyncio.run(client.allow("verify_pin")) and time.monotonic() - t0 < 0.1  # not asked again yet


def _dead(ray, actor) -> bool:
    try:
        ray.get(actor.states.remote(), timeout=1.0)
    except ray.exceptions.ActorDiedError:  # not ActorUnavailableError: a loaded box's actor answers again
        return True
    except ray.exceptions.RayActorError:
        return False
    except ray.exceptions.GetTimeoutError:
        return False
    return False
