"""Deepgram live ASR through deepgram-sdk against a local server speaking its WebSocket
protocol, and the fall back to the real Whisper model when it fails, and back."""

import asyncio

import pytest

from common.config import Settings
from common.dialects import dialect_for
from deployments.asr.deepgram import DeepgramError, DeepgramStream
from models.asr import AsrRequest
from serve_app.conversation.hearing import Hearing
from tests.conftest import silence
from tests.fake_deepgram import FakeDeepgram
from tests.test_engines import word_error_rate

FRAME = 640  # 20 ms at 16 kHz


@pytest.fixture(scope="module")
def whisper():
    from deployments.asr.engine import WhisperEngine

    return WhisperEngine(cpu_threads=1)


async def feed(target, pcm: bytes) -> int:
    """Send audio in 20 ms frames, as a call does; returns the samples sent."""
    send = target.send if isinstance(target, DeepgramStream) else target.feed
    for i in range(0, len(pcm), FRAME):
        await send(pcm[i : i + FRAME])
        await asyncio.sleep(0)
    return len(pcm) // 2


async def test_live_stream_transcribes_an_utterance_with_interims_and_locale_hints(speak, whisper):
    said = "I would like to return the coffee grinder I bought last week."
    async with FakeDeepgram(whisper=whisper) as dg:
        interims: list[str] = []
        stream = DeepgramStream("dg-test", dg.url, dialect_for("en-GB"), on_interim=interims.append)
        await stream.open()
        audio = silence(0.3) + speak(said) + silence(0.6)
        await feed(stream, audio)
        text, confidence = await stream.transcript(0.0, len(audio) / 32000, timeout_s=10)
        await stream.close()
    assert word_error_rate(said, text) <= 0.2, text
    assert 0.3 < confidence <= 1.0
    assert interims and all(len(i) < len(text) + 5 for i in interims)  # partial words before the final
    query = dg.queries[0]
    assert query["language"] == "en-GB" and query["model"] == "nova-3" and query["interim_results"] == "true"
    assert query["encoding"] == "linear16" and query["sample_rate"] == "16000" and query["endpointing"] == "500"
    assert "postcode" in query["keyterm"] and "PIN" in query["keyterm"]  # this locale's hints
    assert dg.finalizes == 1


async def test_a_bad_key_fails_to_open_and_the_error_does_not_carry_it():
    async with FakeDeepgram(api_key="right-key") as dg:
        stream = DeepgramStream("wrong-secret-key", dg.url, dialect_for("en-US"))
        with pytest.raises(DeepgramError) as err:
            await stream.open()
    assert "401" in str(err.value) and "wrong-secret-key" not in str(err.value)


async def test_an_outage_mid_call_goes_to_whisper_without_losing_the_turn_then_back(speak, whisper, monkeypatch):
    async def transcribe_with_whisper(request: AsrRequest) -> dict:
        return (await asyncio.to_thread(whisper.transcribe, request.pcm16, request.language)).as_dict()

    lines = ["Where is my order?", "I want to speak to a person.", "What are your opening hours?"]
    async with FakeDeepgram(whisper=whisper) as dg:
        monkeypatch.setenv("VOICE_ASR_PROVIDER", "deepgram")
        monkeypatch.setenv("VOICE_DEEPGRAM_API_KEY", "dg-test")
        monkeypatch.setenv("VOICE_DEEPGRAM_URL", dg.url)
        monkeypatch.setenv("VOICE_DEEPGRAM_RETRY_S", "0.5")
        monkeypatch.setenv("VOICE_DEEPGRAM_TIMEOUT_MS", "8000")  # the stand-in runs Whisper on 2 shared cores
        hearing = Hearing(Settings(), "en-US", transcribe_with_whisper)
        fed = await feed(hearing, silence(0.3))
        for _ in range(100):
            if hearing.provider == "deepgram":
                break
            fed += await feed(hearing, silence(0.02))
            await asyncio.sleep(0.01)
        assert hearing.provider == "deepgram"

        async def turn(text: str) -> dict:
            nonlocal fed
            utterance = speak(text) + silence(0.5)
            fed += await feed(hearing, utterance)
            return await hearing.transcribe(utterance, fed)

        first = await turn(lines[0])
        await dg.fail()  # Deepgram goes down between turns
        second = await turn(lines[1])  # this turn's audio went to a dead stream: Whisper hears it
        assert hearing.provider == "whisper"
        dg.recover()
        for _ in range(200):  # the call keeps streaming silence; the next retry reconnects
            if hearing.provider == "deepgram":
                break
            fed += await feed(hearing, silence(0.02))
            await asyncio.sleep(0.01)
        third = await turn(lines[2])
        await hearing.close()
    assert [first["provider"], second["provider"], third["provider"]] == ["deepgram", "whisper", "deepgram"]
    for line, result in zip(lines, (first, second, third)):
        assert word_error_rate(line, result["text"]) <= 0.25, result
    assert len(dg.queries) == 2  # one reconnection, not one per frame


async def test_deepgram_down_from_the_start_means_whisper_hears_every_turn(speak, whisper, monkeypatch):
    async def transcribe_with_whisper(request: AsrRequest) -> dict:
        return (await asyncio.to_thread(whisper.transcribe, request.pcm16, request.language)).as_dict()

    async with FakeDeepgram() as dg:
        await dg.fail()
        monkeypatch.setenv("VOICE_ASR_PROVIDER", "deepgram")
        monkeypatch.setenv("VOICE_DEEPGRAM_API_KEY", "dg-test")
        monkeypatch.setenv("VOICE_DEEPGRAM_URL", dg.url)
        hearing = Hearing(Settings(), "en-US", transcribe_with_whisper)
        utterance = silence(0.3) + speak("Goodbye.") + silence(0.5)
        fed = await feed(hearing, utterance)
        await asyncio.sleep(0.3)
        result = await hearing.transcribe(utterance, fed)
        await hearing.close()
    assert result["provider"] == "whisper" and "goodbye" in result["text"].lower()


@pytest.fixture
async def deepgram_gateway(platform, whisper):
    """The running platform's Gateway redeployed to hear through a local Deepgram stand-in;
    the default (Whisper) Gateway is put back afterwards."""
    from tests.conftest import redeploy

    dg = FakeDeepgram(whisper=whisper)
    await dg.__aenter__()
    env = {
        "VOICE_ASR_PROVIDER": "deepgram",
        "VOICE_DEEPGRAM_API_KEY": "dg-test",
        "VOICE_DEEPGRAM_URL": dg.url,
        "VOICE_DEEPGRAM_RETRY_S": "1",
        "VOICE_DEEPGRAM_TIMEOUT_MS": "4000",
    }
    await asyncio.to_thread(
        redeploy, platform, "Gateway", env, lambda: _health(platform)["providers"]["asr"] == "deepgram"
    )
    try:
        yield dg
    finally:
        await asyncio.to_thread(
            redeploy, platform, "Gateway", None, lambda: _health(platform)["providers"]["asr"] == "whisper"
        )
        await dg.__aexit__()


def _health(platform) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{platform['http']}/health", timeout=5) as r:
        return json.load(r)


@pytest.mark.platform
async def test_a_call_hears_through_deepgram_falls_back_to_whisper_mid_call_and_comes_back(
    platform, deepgram_gateway, speak
):
    from serve_app.call import speak_turn
    from tests.test_call import open_call, wait_greeting_done

    dg = deepgram_gateway

    async def scenario():
        client = await open_call(platform, "dg-caller")
        await wait_greeting_done(client)
        assert await client.silence_until(lambda: len(dg.queries) >= 1, 10), "the call never opened a Deepgram stream"
        reports, providers = [], []
        for i, line in enumerate(
            ["What are your opening hours?", "How long is the warranty?", "Do you ship to Canada?"]
        ):
            if i == 1:
                await dg.fail()  # the outage: the live stream drops with 1011, reconnects get 503
            if i == 2:
                dg.recover()
                assert await client.silence_until(
                    lambda: len(dg.queries) >= 2 and dg.down is False and _connected(dg), 15
                )
                await client.silence_until(lambda: False, 1.0)  # the new stream hears from its start on
            mark = len(client.events)
            reports.append(await speak_turn(client, speak(line), timeout=60))
            metrics = [e for e in client.events[mark:] if e["type"] == "turn.metrics"]
            providers.append(metrics[-1]["asr_provider"] if metrics else None)
        await client.hangup()
        return reports, providers

    reports, providers = await scenario()
    assert providers == ["deepgram", "whisper", "deepgram"], providers
    assert (
        "hours" in reports[0].transcript.lower()
        and "warranty" in reports[1].transcript.lower()
        and "canada" in reports[2].transcript.lower()
    )
    assert all(r.agent_text for r in reports)  # every turn answered, the one during the outage too
    assert any("hours" in f.lower() for f in dg.finals) and any("canada" in f.lower() for f in dg.finals)


def _connected(dg: FakeDeepgram) -> bool:
    return bool(dg._conns)
