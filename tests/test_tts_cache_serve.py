"""The TTS cache on the real platform: a second caller's greeting comes from the cache and is the
same audio, sample for sample, as piper makes afresh."""

from __future__ import annotations

import asyncio
import time

from deployments.dialogue.fixed_lines import greeting_lines, prewarm_lines
from deployments.tts.engine import clauses, quick_start
from tests.conftest import TEST_ENV


async def greeting_audio(url: str, caller: str) -> bytes:
    """Everything the agent sends before it first listens: the greeting's audio."""
    from serve_app.call import CallClient

    client = CallClient(url, caller)
    await client.connect()
    await client.wait_for(lambda: any(e["type"] == "agent.state" and e["state"] == "listening" for e in client.events))
    audio = bytes(client.audio)
    await client.hangup()
    await client.close()
    return audio


def test_second_greeting_is_served_from_the_cache_as_the_same_audio(platform, piper):
    from ray import serve

    tts = serve.get_deployment_handle("TTS", app_name="voice")

    def stats() -> dict:
        return tts.cache_stats.remote().result(timeout_s=30)

    assert stats()["max_bytes"] == 32 * 2**20  # the default, VOICE_TTS_CACHE_MB=32
    greeting = greeting_lines(TEST_ENV["VOICE_GREETING"])  # the operator's, made at start like the default
    deadline = time.monotonic() + 60
    while stats()["lines"] < len(prewarm_lines((), greeting)):  # made at the replica's start, in the background
        assert time.monotonic() < deadline, f"the cache was not pre-warmed: {stats()}"
        time.sleep(0.5)
    calls = [stats()]
    first = asyncio.run(greeting_audio(platform["ws"], "tts-cache-1"))
    calls.append(stats())
    second = asyncio.run(greeting_audio(platform["ws"], "tts-cache-2"))
    calls.append(stats())
    for before, after in zip(calls, calls[1:]):  # the first caller too: the greeting was pre-warmed
        assert after["hits"] - before["hits"] >= len(greeting)  # each greeting sentence from the cache
        assert after["misses"] == before["misses"]
    # The greeting's first sentence is cut as a reply's first is; the second as any other.
    fresh = b"".join(
        chunk
        for sentence, cut in ((greeting[0], quick_start), (greeting[1], clauses))
        for part in cut(sentence)
        for chunk in piper.synthesize(part, 16000, deterministic=True)
    )
    assert second == first == fresh
