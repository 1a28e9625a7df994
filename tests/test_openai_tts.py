"""The OpenAI streaming TTS engine against a local server speaking `/v1/audio/speech`'s wire format."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from common.audio import resample
from deployments.tts.openai_tts import OpenAITTSEngine, TTSProviderError
from tests.fake_openai_tts import FakeOpenAITTS

TEXT = "Your order shipped on Monday and should arrive by Thursday afternoon."


def duration_s(pcm16: bytes, rate: int) -> float:
    return len(pcm16) / 2 / rate


@pytest.fixture
def server(piper):
    with FakeOpenAITTS(api_key="sk-test", piper=piper) as s:
        yield s


async def collect(engine, text, rate, locale="en-US") -> list[bytes]:
    return [chunk async for chunk in engine.synthesize(text, rate, locale)]


@pytest.mark.parametrize("rate", [16000, 8000])
async def test_speech_streams_at_the_requested_rate(server, speak, rate):
    chunks = await collect(OpenAITTSEngine("sk-test", server.base_url, timeout_s=5), TEXT, rate)
    expected = duration_s(speak(TEXT, rate), rate)
    got = duration_s(b"".join(chunks), rate)
    assert expected > 2.0 and abs(got - expected) / expected < 0.10, (got, expected)
    assert len(chunks) >= 10 and all(len(c) % 2 == 0 for c in chunks)
    assert max(len(c) for c in chunks) <= int(rate * 0.1) * 2  # ~80 ms pieces, never the whole clip
    req = server.requests[-1]
    assert req["completed"] and not req["client_gone"] and req["bytes_sent"] == len(server.speech(TEXT))
    assert req["body"] == {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": TEXT, "response_format": "pcm"}


@pytest.mark.parametrize("rate", [24000, 16000])
async def test_odd_sized_network_pieces_still_give_whole_samples(server, rate):
    server.chunk_bytes = 1001  # every network piece ends mid-sample
    chunks = await collect(OpenAITTSEngine("sk-test", server.base_url), "Hello there.", rate)
    assert chunks and all(len(c) % 2 == 0 for c in chunks)
    sent = server.speech("Hello there.")
    if rate == 24000:  # passed through untouched, byte for byte
        assert b"".join(chunks) == sent
    else:
        assert abs(len(b"".join(chunks)) - len(resample(sent, 24000, rate))) <= 64


@pytest.mark.parametrize(
    "locale, voice", [("en-GB", "fable"), ("xx-YY", "alloy"), ("es-MX", "nova"), ("de-DE", "onyx")]
)
async def test_voice_follows_the_locale(server, locale, voice):
    chunks = await collect(OpenAITTSEngine("sk-test", server.base_url), "Hello.", 16000, locale)
    assert chunks and server.requests[-1]["voice"] == voice


async def test_closing_early_hangs_up_the_http_stream(server):
    server.chunk_delay_s = 0.03  # a 4 s clip takes ~3 s to send: plenty of time to hang up
    full = len(server.speech(TEXT))
    gen = OpenAITTSEngine("sk-test", server.base_url).synthesize(TEXT, 16000)
    first = await gen.__anext__()
    assert first and len(first) % 2 == 0
    t0 = time.monotonic()
    await gen.aclose()
    assert time.monotonic() - t0 < 0.5
    req = server.requests[-1]
    # Block without giving this loop a turn: the socket must already be closed when aclose()
    # returns, not later when a garbage-collected response or generator gets finalized.
    deadline = time.monotonic() + 2.0
    while not req["client_gone"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert req["client_gone"] and not req["completed"], req
    assert req["bytes_sent"] < full / 4, (req["bytes_sent"], full)


async def test_cancelling_the_consumer_task_hangs_up_too(server):
    server.chunk_delay_s = 0.03
    got: list[bytes] = []

    async def consume():
        async for chunk in OpenAITTSEngine("sk-test", server.base_url).synthesize(TEXT, 16000):
            got.append(chunk)

    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # the cancellation itself, nothing else
        await task
    req = server.requests[-1]
    deadline = time.monotonic() + 2.0
    while not req["client_gone"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert req["client_gone"] and not req["completed"], req
    assert req["bytes_sent"] < len(server.speech(TEXT)) / 4


async def test_wrong_key_names_401_and_hides_the_key(server):
    key = "sk-wrong-secret-key-9876"
    with pytest.raises(TTSProviderError) as err:
        await collect(OpenAITTSEngine(key, server.base_url), "Hello.", 16000)
    assert "401" in str(err.value) and "Incorrect API key" in str(err.value)
    assert key not in str(err.value) and key not in repr(err.value)
    assert err.value.__cause__ is None and server.requests[-1]["status"] == 401


async def test_server_error_names_the_status(server):
    server.fail_status = 500
    with pytest.raises(TTSProviderError, match="500"):
        await collect(OpenAITTSEngine("sk-test", server.base_url), "Hello.", 16000)


async def test_unreachable_server_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the `with` ends: connections are refused
    t0 = time.monotonic()
    with pytest.raises(TTSProviderError, match="unreachable") as err:
        await collect(OpenAITTSEngine("sk-secret-1234", f"http://127.0.0.1:{port}/v1", timeout_s=5), "Hello.", 16000)
    assert time.monotonic() - t0 < 2.0 and "sk-secret-1234" not in str(err.value)


async def test_stalled_stream_times_out(server):
    server.chunk_delay_s = 2.0  # the first 40 ms arrives, then nothing within the timeout
    t0 = time.monotonic()
    with pytest.raises(TTSProviderError, match="timed out"):
        await collect(OpenAITTSEngine("sk-test", server.base_url, timeout_s=0.5), "Hello there.", 16000)
    assert time.monotonic() - t0 < 1.5


@pytest.fixture
def openai_tts_platform(platform, piper):
    """The running platform's TTS redeployed to speak through the local OpenAI stand-in
    (streaming at real time); piper's TTS is put back afterwards."""
    from ray import serve

    from tests.conftest import redeploy

    with FakeOpenAITTS(api_key="sk-test", piper=piper, chunk_delay_s=0.04) as fake:
        fake.chunk_bytes = 24000 * 2 * 40 // 1000  # 40 ms chunks every 40 ms: real time, as a cloud voice streams
        tts = serve.get_deployment_handle("TTS", "voice")

        def probe_reaches_fake() -> bool:
            before = len(fake.requests)
            list(tts.options(stream=True).synthesize.remote("Hi.", 16000, "en-US"))
            return len(fake.requests) > before

        env = {
            "VOICE_TTS_PROVIDER": "openai",
            "VOICE_OPENAI_API_KEY": "sk-test",
            "VOICE_OPENAI_BASE_URL": fake.base_url,
        }
        redeploy(platform, "TTS", env, probe_reaches_fake)
        try:
            yield fake
        finally:
            redeploy(platform, "TTS", None, lambda: not probe_reaches_fake())


@pytest.mark.platform
async def test_a_call_speaks_with_the_locale_voice_and_barge_in_hangs_up_the_tts_stream(
    platform, openai_tts_platform, speak
):
    from serve_app.call import speak_turn
    from tests.test_call import wait_greeting_done
    from tests.test_conversation import ask_and_wait_for_speech

    fake = openai_tts_platform
    from serve_app.call import CallClient

    client = CallClient(platform["ws"], "british-caller", locale="en-GB")
    await client.connect()
    await wait_greeting_done(client)
    greeting = [r for r in fake.requests if r["body"] and r["body"]["input"].startswith("Hello")]
    assert greeting and greeting[-1]["voice"] == "fable" and greeting[-1]["completed"]  # the en-GB voice
    mark = await ask_and_wait_for_speech(client, "how long is the warranty", 0.8)
    report = await speak_turn(client, speak("Wait, where is my order?"), timeout=60)
    assert ("event", "audio.clear") in client.timeline[mark:]
    assert "PIN" in " ".join(report.agent_text)
    cut = [r for r in fake.requests if r["body"] and "warranty against" in r["body"]["input"]]
    assert cut and cut[0]["client_gone"] and not cut[0]["completed"], cut  # the cloud stream was hung up
    assert cut[0]["bytes_sent"] < len(fake.speech(cut[0]["body"]["input"])) * 0.8
    await client.hangup()
    await client.close()
