"""Prefetch: a run-ahead holds the first audio chunk while the rest keeps streaming."""

import asyncio

import pytest

from serve_app.conversation.prefetch import Prefetch


class Stream:
    """Stands in for a Serve streaming response: chunks released one by one, `cancel()` seen."""

    def __init__(self, chunks, fail_after: int | None = None):
        self.chunks, self.fail_after = chunks, fail_after
        self.release = asyncio.Semaphore(0)
        self.cancelled = False

    def cancel(self):
        self.cancelled = True

    async def __aiter__(self):
        for i, chunk in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("tts replica died")
            await self.release.acquire()
            yield chunk


async def test_started_on_the_first_chunk_and_the_rest_streams_on():
    stream = Stream([b"a", b"b", b"c"])
    audio = Prefetch(stream)
    waiting = asyncio.create_task(audio.started())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing yet
    stream.release.release()
    assert await asyncio.wait_for(waiting, 1) is True
    assert audio.chunks == 1  # the rest is not waited for
    stream.release.release()
    stream.release.release()
    assert [c async for c in audio] == [b"a", b"b", b"c"]
    assert not stream.cancelled


async def test_cancel_stops_the_stream():
    stream = Stream([b"a", b"b"])
    audio = Prefetch(stream)
    stream.release.release()
    assert await audio.started()
    audio.cancel()
    await asyncio.sleep(0.01)
    assert stream.cancelled


async def test_a_stream_failing_before_any_audio_is_not_started():
    audio = Prefetch(Stream([b"a"], fail_after=0))
    assert await asyncio.wait_for(audio.started(), 1) is False


async def test_a_failure_mid_stream_reaches_the_player():
    stream = Stream([b"a", b"b"], fail_after=1)
    audio = Prefetch(stream)
    stream.release.release()
    assert await audio.started()
    got = []
    with pytest.raises(RuntimeError, match="tts replica died"):
        async for chunk in audio:
            got.append(chunk)
    assert got == [b"a"]
