"""ASR across calls on the real platform (issue 14, point 3): the ASR replica decodes concurrent
utterances in batches with the words each gets alone, sheds a partial while a turn waits, and
three calls speaking at once with partials on still get their own turns right."""

from __future__ import annotations

import asyncio

import pytest

from models.asr import AsrRequest, AsrShed
from serve_app.call import speak_turn
from tests.test_asr_batch import LINES
from tests.test_call import open_call, wait_greeting_done
from tests.test_engines import word_error_rate

pytestmark = pytest.mark.platform


def asr_handle():
    from ray import serve

    return serve.get_deployment_handle("ASR", "voice")


async def test_concurrent_utterances_are_batched_with_the_words_each_gets_alone(platform, speak):
    audio = [speak(line) for line in LINES]
    asr = asr_handle()
    before = await asr.stats.remote()
    alone = []
    for i, pcm in enumerate(audio):  # one by one: batches of one
        alone.append((await asr.transcribe.remote(AsrRequest(pcm16=pcm, call_id=f"c{i}")))["text"])
    together = await asyncio.gather(
        *(asr.transcribe.remote(AsrRequest(pcm16=pcm, call_id=f"c{i}")) for i, pcm in enumerate(audio))
    )
    assert [r["text"] for r in together] == alone
    assert all(word_error_rate(line, text) <= 0.25 for line, text in zip(LINES, alone)), alone
    after = await asr.stats.remote()
    grown = {size: n - before["batches"].get(size, 0) for size, n in after["batches"].items()}
    assert any(size > 1 and n > 0 for size, n in grown.items()), (before, after)


async def test_a_partial_sent_while_turns_wait_is_shed_and_the_turns_answered(platform, speak):
    asr = asr_handle()
    finals = [asr.transcribe.remote(AsrRequest(pcm16=speak(line), call_id=f"f{i}")) for i, line in enumerate(LINES)]
    await asyncio.sleep(0.1)  # the finals are in the replica (decoding four takes far longer)
    partial = asr.transcribe.remote(AsrRequest(pcm16=speak(LINES[0]), kind="partial", call_id="p"))
    with pytest.raises(AsrShed):
        await partial
    results = await asyncio.gather(*finals)
    assert all(word_error_rate(line, r["text"]) <= 0.25 for line, r in zip(LINES, results))
    alone = await asr.transcribe.remote(AsrRequest(pcm16=speak(LINES[0]), kind="partial", call_id="p"))
    assert word_error_rate(LINES[0], alone["text"]) <= 0.25  # an idle replica decodes partials


async def test_three_callers_speaking_at_once_with_partials_get_their_own_turns(platform, speak):
    said = {
        "batch-hours": "What are your opening hours on a Saturday, and are you open on public holidays?",
        "batch-order": "I want to check the status of my order, it has not arrived yet.",
        "batch-return": "I want to return an item because it arrived damaged last week.",
    }

    async def one(caller_id: str, text: str):
        client = await open_call(platform, caller_id)
        await wait_greeting_done(client)
        mark = len(client.events)
        report = await speak_turn(client, speak(text))
        await client.hangup()
        return client, mark, report

    results = await asyncio.gather(*(one(cid, text) for cid, text in said.items()))
    partials = 0
    for (cid, text), (client, mark, report) in zip(said.items(), results):
        # Piper pauses at the comma: the adaptive endpoint may take the first half as a turn of
        # its own (issue 17's false cut). The words must still all reach this caller's call.
        heard = " ".join(e["text"] for e in client.events[mark:] if e["type"] == "transcript" and e["final"])
        assert word_error_rate(text, heard) <= 0.25, (cid, heard)
        assert report.agent_text and not client.of_type("error"), (cid, client.of_type("error"))
        partials += len([e for e in client.events[mark:] if e["type"] == "transcript" and not e["final"]])
    assert partials, "no partial transcript in three calls of four seconds' speech"
