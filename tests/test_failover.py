"""The one failover rule (common/failover.py) in-process, and both of its users with fakes:
hearing (Deepgram, then Whisper) and the TTS deployment's synthesize (OpenAI, then piper)."""

import asyncio
import logging

import pytest

from common.config import Settings
from common.failover import Failover
from deployments.tts.cache import LineCache
from deployments.tts.deployment import TTS
from serve_app.conversation.hearing import Hearing
from tests.test_tools import Clock


class Down(RuntimeError):
    pass


async def answer(value):
    return value


async def fail():
    raise Down("503 from the cloud")


async def items(*values, fail_after: int | None = None, closed: list | None = None):
    try:
        for i, value in enumerate(values):
            if i == fail_after:
                raise Down(f"broke after {i}")
            yield value
        if fail_after == len(values):
            raise Down("broke at the end")
    finally:
        if closed is not None:
            closed.append(True)


async def test_the_primary_answers_and_is_named():
    reports = []
    assert await Failover("cloud", "local").call(lambda: answer(1), lambda: answer(2), on_failure=reports.append) == (
        1,
        "cloud",
    )
    assert reports == []


async def test_a_failing_primary_is_reported_and_the_secondary_answers():
    reports, dropped = [], []

    async def drop(exc):  # an async report: the caller may close its connection here
        dropped.append(exc)

    assert await Failover("cloud", "local").call(fail, lambda: answer(2), on_failure=reports.append) == (2, "local")
    assert await Failover("cloud", "local").call(fail, lambda: answer(3), on_failure=drop) == (3, "local")
    assert [type(e) for e in reports + dropped] == [Down, Down] and "503" in str(reports[0])


async def test_a_primary_not_to_be_used_is_not_called():
    called = []

    async def primary():
        called.append(True)
        return 1

    assert await Failover("cloud", "local").call(primary, lambda: answer(2), use_primary=False) == (2, "local")
    assert called == []


async def test_a_cancelled_primary_is_not_a_failure():
    async def hang():
        await asyncio.sleep(10)

    used = []
    task = asyncio.create_task(Failover("cloud", "local").call(hang, lambda: answer(used.append(1))))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert used == []  # the caller hung up: nobody else is asked


def test_hold_leaves_the_primary_alone_for_retry_s():
    clock = Clock()
    failover = Failover("cloud", "local", retry_s=10, clock=clock)
    assert failover.due  # never tried yet
    failover.hold()
    clock.t = 9.9
    assert not failover.due
    clock.t = 10.0
    assert failover.due


async def collect(stream) -> list:
    return [item async for item in stream]


async def test_a_stream_fails_over_only_before_its_first_item():
    reports = []
    failover = Failover("cloud", "local")
    assert await collect(failover.stream(lambda: items("a", "b"), lambda: items("x"))) == ["a", "b"]
    before = failover.stream(lambda: items("a", fail_after=0), lambda: items("x", "y"), on_failure=reports.append)
    assert await collect(before) == ["x", "y"] and len(reports) == 1
    got, secondary_started = [], []
    after = failover.stream(lambda: items("a", "b", fail_after=1), lambda: items("x", closed=secondary_started))
    with pytest.raises(Down, match="broke after 1"):
        async for item in after:
            got.append(item)
    assert got == ["a"] and secondary_started == [] and len(reports) == 1  # "a" is out: never said twice
    assert await collect(failover.stream(lambda: items(), lambda: items("x"))) == []  # nothing to say is no failure


async def test_a_stopped_stream_closes_the_primary_at_once():
    closed = []
    stream = Failover("cloud", "local").stream(lambda: items("a", "b", "c", closed=closed), lambda: items("x"))
    assert await anext(stream) == "a"
    await stream.aclose()  # a barge-in
    assert closed == [True]


# --- hearing: Deepgram, then Whisper ------------------------------------------------------------


class DeadStream:
    ok = True

    def __init__(self):
        self.closed = False

    async def transcript(self, start_s, end_s, timeout_s):
        raise TimeoutError(f"no final within {timeout_s}s")

    async def close(self):
        self.closed = True


class LiveStream(DeadStream):
    async def transcript(self, start_s, end_s, timeout_s):
        return "where is my order", 0.91234


async def whisper(request) -> dict:
    return {"text": "where is my order", "confidence": 0.8}


async def test_hearing_a_failed_deepgram_turn_goes_to_whisper_logs_why_and_waits_to_retry(caplog):
    hearing = Hearing(Settings(deepgram_retry_s=30, deepgram_timeout_ms=2000), "en-US", whisper, session_id="s1")
    audio = b"\0\0" * 16000
    hearing._stream = LiveStream()
    assert await hearing.transcribe(audio, 16000) == {
        "text": "where is my order",
        "confidence": 0.912,
        "provider": "deepgram",
    }
    hearing._stream = dead = DeadStream()
    with caplog.at_level(logging.WARNING, logger="serve_app.conversation.hearing"):
        result = await hearing.transcribe(audio, 16000)
    assert result == {"text": "where is my order", "confidence": 0.8, "provider": "whisper"}
    assert "call s1: Deepgram failed (no final within 2.0s); this turn goes to Whisper" in caplog.text
    assert dead.closed and hearing.provider == "whisper" and not hearing.streams_partials
    assert not hearing._failover.due  # no new stream for deepgram_retry_s


# --- TTS: OpenAI, then piper --------------------------------------------------------------------


class FakeCloud:
    def __init__(self, fail_after: int | None = None):
        self.fail_after, self.closed = fail_after, []

    def synthesize(self, text, sample_rate, locale):
        return items(b"cloud1", b"cloud2", fail_after=self.fail_after, closed=self.closed)


class FakePiper:
    def synthesize(self, clause, sample_rate, deterministic=False):
        yield f"piper:{clause}".encode()


def tts(cloud) -> TTS:
    """The deployment's class as Serve runs it, with fakes for the voices (no Ray, no models)."""
    engine = object.__new__(TTS.func_or_class)
    engine._piper, engine._cloud, engine._failover = FakePiper(), cloud, Failover("openai", "piper")
    engine._lines = LineCache(0)  # no cache, nothing fixed: every sentence goes to a voice
    return engine


async def test_tts_speaks_through_the_cloud_and_piper_takes_a_sentence_the_cloud_cannot_start(caplog):
    assert await collect(tts(FakeCloud()).synthesize("Hello there.", 16000)) == [b"cloud1", b"cloud2"]
    with caplog.at_level(logging.WARNING, logger="deployments.tts.deployment"):
        spoken = await collect(tts(FakeCloud(fail_after=0)).synthesize("Hello there.", 16000))
    assert spoken == [b"piper:Hello there."]
    assert "cloud TTS failed, piper speaks this sentence: broke after 0" in caplog.text
    assert await collect(tts(None).synthesize("Hello there.", 16000)) == [b"piper:Hello there."]  # piper configured


async def test_tts_a_sentence_broken_mid_audio_is_not_repeated_by_piper():
    got = []
    with pytest.raises(Down):
        async for chunk in tts(FakeCloud(fail_after=1)).synthesize("Hello there.", 16000):
            got.append(chunk)
    assert got == [b"cloud1"]


async def test_tts_a_barge_in_closes_the_cloud_stream_at_once():
    cloud = FakeCloud()
    stream = tts(cloud).synthesize("Hello there.", 16000)
    assert await anext(stream) == b"cloud1"
    await stream.aclose()
    assert cloud.closed == [True]
