"""Autoscaling on the real platform: callers talking at once push TTS past its target and Serve
adds a replica; when they hang up the extra replica goes, and a call open through both changes
keeps being answered, never cut.

Only TTS is redeployed for the test: its autoscaling_config tuned, and its cache of fixed lines off
(answers to these questions are fixed lines: from the cache they stream at once and load nothing).
The configured TTS is deployed again at the end."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from tests.test_call import open_call, wait_greeting_done
from tests.test_durable import said, typed

pytestmark = pytest.mark.platform

DEPLOYMENT = "TTS"
# One stream at a time per replica is its target: a single talking call never passes it (its
# sentences are synthesized one after another), three talking together do. Metrics every 0.5 s
# averaged over 2 s; a replica is added after 1 s above target, removed after 4 s below.
FAST_AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 1,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2,
    "upscale_delay_s": 1,
    "downscale_delay_s": 4,
}
LOAD_CALLS = 3
# Paraphrased questions with answers of a sentence or more (typed turns: no ASR work).
QUESTIONS = [
    "when do you open in the morning",
    "how long will delivery take",
    "can I send something back",
    "do you post orders overseas",
]


def _tuned(base: dict) -> dict:
    config = copy.deepcopy(base)
    spec = next(d for d in config["applications"][0]["deployments"] if d["name"] == DEPLOYMENT)
    spec["autoscaling_config"] = dict(FAST_AUTOSCALING)
    options = spec.setdefault("ray_actor_options", {})
    options["runtime_env"] = {"env_vars": {"VOICE_TTS_CACHE_MB": "0"}}  # every sentence synthesized
    return config


def _replicas(seen: list[dict] | None = None) -> dict[str, int]:
    """Replica states of the deployment now, e.g. {"RUNNING": 2} or {"RUNNING": 1, "STOPPING": 1};
    each change is added to `seen` with its time."""
    from ray import serve

    states = dict(serve.status().applications["voice"].deployments[DEPLOYMENT].replica_states)
    if seen is not None and (not seen or seen[-1]["states"] != states):
        seen.append({"at": time.monotonic(), "states": states})
    return states


async def _until(predicate, timeout_s: float, what: str, talking: list[asyncio.Task]) -> float:
    """Poll `predicate` (blocking, run off the loop) until it holds; seconds it took. A call that
    failed meanwhile (a turn unanswered) fails the test at once, with its own message."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(predicate):
        for task in talking:
            if task.done():
                task.result()  # raises what went wrong in that call
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"{what} not within {timeout_s:.0f}s: {DEPLOYMENT} replicas {_replicas()}")
        await asyncio.sleep(0.25)
    return time.monotonic() - t0


def _not_cut(client, name: str) -> None:
    errors = client.of_type("error")
    ended = client.of_type("session.ended")
    assert not errors and not ended and not client.closed and client.resumes == 0, (
        f"{name} was disturbed: errors {errors}, ended {ended}, close {client.close_code}, resumes {client.resumes}"
    )


def _went(seen: list[dict]) -> float:
    """When the extra replica was first seen leaving (stopping, or gone) after two ran."""
    two = next(i for i, s in enumerate(seen) if s["states"] == {"RUNNING": 2})
    return next(s["at"] for s in seen[two + 1 :] if s["states"] != {"RUNNING": 2})


def _speaking_at(client, at: float) -> bool:
    """The agent was between "thinking" and "listening" of a turn at `at` on this call."""
    states = [(e["_at"], e["state"]) for e in client.events if e["type"] == "agent.state"]
    before = [state for t, state in states if t <= at]
    return bool(before) and before[-1] != "listening"


async def _talk(client, stop: asyncio.Event, answered: list[str], offset: int = 0) -> None:
    """Typed turns one after another until `stop`; each must be answered (agent.text) or it fails."""
    i = offset
    while not stop.is_set():
        question = QUESTIONS[i % len(QUESTIONS)]
        reply = said(await typed(client, question))
        assert reply, f"no answer to {question!r}: {client.events[-6:]}"
        answered.append(reply)
        i += 1


async def test_load_adds_a_tts_replica_and_its_end_removes_it_without_cutting_a_call(platform):
    from serve_app import cluster

    base = cluster.load_config(http_port=platform["port"], env=cluster.settings_env())
    await asyncio.to_thread(cluster.deploy, _tuned(base))
    witness, load, talking, seen = None, [], [], []
    try:
        await _until(lambda: _replicas() == {"RUNNING": 1}, 30, "one TTS replica before the load", [])
        witness = await open_call(platform, "autoscale-witness")
        await wait_greeting_done(witness)
        witness_stop, witness_answers = asyncio.Event(), []
        witness_task = asyncio.create_task(_talk(witness, witness_stop, witness_answers))
        talking = [witness_task]
        await _until(lambda: len(witness_answers) >= 1, 60, "the witness's first answer", talking)
        assert _replicas() == {"RUNNING": 1}, "one call alone already added a TTS replica: the test shows nothing"

        load = [await open_call(platform, f"autoscale-load-{i}") for i in range(LOAD_CALLS)]
        await asyncio.gather(*(wait_greeting_done(c) for c in load))
        load_stop, load_answers = asyncio.Event(), []
        load_tasks = [asyncio.create_task(_talk(c, load_stop, load_answers, i + 1)) for i, c in enumerate(load)]
        talking += load_tasks

        up_s = await _until(lambda: _replicas(seen) == {"RUNNING": 2}, 90, "a second TTS replica under load", talking)
        answers_at_two = len(witness_answers)
        await _until(
            lambda: len(witness_answers) > answers_at_two, 60, "a witness turn answered with two replicas", talking
        )
        load_stop.set()
        await asyncio.gather(*load_tasks)  # each finishes the turn it is in
        for i, client in enumerate(load):
            _not_cut(client, f"load call {i}")
            await client.hangup()

        down_s = await _until(
            lambda: _replicas(seen) == {"RUNNING": 1}, 90, "the extra TTS replica removed", [witness_task]
        )
        answers_at_one = len(witness_answers)
        await _until(
            lambda: len(witness_answers) > answers_at_one,
            60,
            "a witness turn answered after the removal",
            [witness_task],
        )
        witness_stop.set()
        await witness_task
        _not_cut(witness, "the witness call")
        assert len(load_answers) >= LOAD_CALLS, load_answers
        print(
            f"TTS scaled up {up_s:.1f}s after the load began, down {down_s:.1f}s after it ended; replica states "
            f"{[s['states'] for s in seen]}; witness answered {len(witness_answers)} turns "
            f"(speaking when the replica went: {_speaking_at(witness, _went(seen))}), load calls {len(load_answers)}"
        )
    finally:
        for task in talking:
            task.cancel()
        for client in [*load, witness]:
            if client is not None and not client.closed:
                await client.hangup()
        await asyncio.to_thread(cluster.deploy, base)
