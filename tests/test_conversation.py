"""Real-time conversation through the real platform: run-ahead turns, barge-in, false
interruptions, the wake-up timer and the session API."""

import asyncio
import re
import time

import pytest

from serve_app.call import speak_turn
from tests.conftest import noise, silence
from tests.test_call import open_call, stored, wait_greeting_done

pytestmark = pytest.mark.platform

OUTPUT_RATE = 16000


def audio_s_since(client, index: int) -> float:
    """Seconds of agent audio received after timeline position `index`."""
    return sum(n for kind, n in client.timeline[index:] if kind == "audio") / 2 / OUTPUT_RATE


def turn_metrics(client, mark: int, end: int | None = None) -> dict:
    """The last turn's metrics between two positions in the event list."""
    return [e for e in client.events[mark:end] if e["type"] == "turn.metrics"][-1]


async def ask_and_wait_for_speech(client, text: str, seconds: float) -> int:
    """Type a question, then keep the microphone open until `seconds` of the answer arrived."""
    mark = len(client.timeline)
    await client.send_json({"type": "text", "text": text})
    assert await client.silence_until(lambda: audio_s_since(client, mark) >= seconds, 60), "the agent never spoke"
    return mark


async def test_a_pause_mid_sentence_discards_the_early_turn_and_the_final_pause_uses_it(platform, speak):
    client = await open_call(platform, "pauser")
    await wait_greeting_done(client)
    mark = len(client.events)
    said = speak("What are your opening hours on") + silence(0.35) + speak("Saturday?")  # an unfinished point
    report = await speak_turn(client, said, timeout=60)
    heard = report.transcript.lower()
    assert "opening hours" in heard and "saturday" in heard, report.transcript  # one turn, both halves
    partials = [e["text"].lower() for e in client.events[mark:] if e["type"] == "transcript" and not e["final"]]
    assert any("saturday" not in p and "opening" in p for p in partials), partials  # the early run on the first half
    assert "Saturday" in " ".join(report.agent_text)
    metrics = turn_metrics(client, mark)
    assert metrics["preempted"] == "reply", metrics  # the final pause's run-ahead was the reply
    assert {"eos_to_transcript_ms", "dialogue_first_sentence_ms", "tts_first_audio_ms", "eos_to_first_audio_ms"} <= set(
        metrics
    )
    state = stored(platform, client.session["session_id"])
    assert [t.source for t in state.turns] == ["greeting", "speech"]  # nothing of the discarded run was kept
    await client.hangup()


async def test_a_turn_that_needs_a_tool_is_not_run_ahead(platform, speak):
    client = await open_call(platform, "demo-bob")
    await wait_greeting_done(client)
    mark = len(client.events)
    await speak_turn(client, speak("Where is my order?"), timeout=60)
    pin_mark = len(client.events)
    report = await speak_turn(client, speak("Four, three, two, one."), timeout=60)
    assert "Bob" in " ".join(report.agent_text), report
    assert turn_metrics(client, mark, pin_mark)["preempted"] == "reply"  # asking for the PIN touches nothing
    assert turn_metrics(client, pin_mark)["preempted"] == "transcript"  # checking it does: only ASR ran ahead
    state = stored(platform, client.session["session_id"])
    audit = [t.tool for t in state.turns[2].tool_results]
    assert audit == ["verify_pin"], audit  # called once, by the real turn
    await client.hangup()


async def test_a_pin_said_slowly_never_shows_in_a_partial_transcript(platform, speak):
    """Once the agent asked for the PIN, partials (Whisper's and the run-ahead's) mask it too."""
    client = await open_call(platform, "demo-alice")
    await wait_greeting_done(client)
    mark = len(client.events)
    await client.send_json({"type": "text", "text": "where is my order"})
    await client.wait_for(lambda: client.agent_idle_since(mark), 60)
    assert "PIN" in " ".join(e["text"] for e in client.events[mark:] if e["type"] == "agent.text")
    mark = len(client.events)
    # pauses long enough for partials and a run-ahead, short of the 500 ms endpoint: piper
    # leaves up to 0.3 s of its own quiet around a word, so 0.25 s more made the gap after
    # "two," 0.54 s, an endpoint on some runs
    said = b"".join(speak(word) + silence(0.15) for word in ("One,", "two,", "three,", "four."))
    report = await speak_turn(client, said, timeout=60)
    partials = [e["text"] for e in client.events[mark:] if e["type"] == "transcript" and not e["final"]]
    assert partials, "no partial transcript while the caller spoke"
    assert not [p for p in partials if re.search(r"\d|one|two|three|four", p, re.IGNORECASE)], partials
    assert report.transcript == "[PIN]" and "Alice" in " ".join(report.agent_text), report
    await client.hangup()


async def test_barge_in_clears_the_audio_and_keeps_only_what_was_heard(platform, speak):
    client = await open_call(platform, "barger")
    await wait_greeting_done(client)
    mark = await ask_and_wait_for_speech(client, "how long is the warranty", 1.0)
    report = await speak_turn(client, speak("Wait, where is my order?"), timeout=60)
    kinds = client.timeline[mark:]
    clear = kinds.index(("event", "audio.clear"))
    nxt = next(i for i in range(clear + 1, len(kinds)) if kinds[i] == ("event", "agent.text"))
    assert all(kind != "audio" for kind, _ in kinds[clear:nxt]), "audio of the cut reply arrived after audio.clear"
    assert "PIN" in " ".join(report.agent_text), report  # the new turn was answered

    state = stored(platform, client.session["session_id"])
    cut = state.turns[1]
    assert cut.interrupted and cut.reply, cut
    assert cut.reply[-1].endswith("…") and "two year" not in " ".join(cut.reply), cut.reply  # the rest was never heard
    full = [e["text"] for e in client.events if e["type"] == "agent.text" and e["turn_id"] == 1]
    assert len(" ".join(cut.reply)) < len(" ".join(full)) + 1
    assert state.turns[2].transcript.lower().startswith("wait")
    await client.hangup()


async def test_noise_and_a_backchannel_during_agent_speech_do_not_end_the_reply(platform, speak):
    client = await open_call(platform, "listener")
    await wait_greeting_done(client)
    mark = await ask_and_wait_for_speech(client, "how long is the warranty", 0.8)
    await client.stream(noise(0.6, amplitude=0.05))
    await client.stream(silence(0.8))
    await client.stream(speak("Mm-hmm, mm-hmm."))
    assert await client.silence_until(
        lambda: any(e["type"] == "turn.metrics" and e["turn_id"] == 1 for e in client.events), 60
    )

    state = stored(platform, client.session["session_id"])
    assert len(state.turns) == 2, [t.transcript for t in state.turns]  # neither became a turn
    reply = state.turns[1]
    assert not reply.interrupted and reply.reply[-1].endswith("warranty."), reply  # said to the end
    spoken = {e["text"] for e in client.events if e["type"] == "agent.text" and e.get("turn_id") == 1}
    assert spoken == set(reply.reply)
    assert audio_s_since(client, mark) > 5.0  # the whole answer was played
    await client.hangup()


async def test_wake_up_timer_checks_in_then_says_goodbye_and_waits_while_anyone_speaks(platform, speak):
    client = await open_call(platform, "sleepy")
    await wait_greeting_done(client)
    # 7 s of caller speech, longer than the 6 s timer: it must not fire while they talk
    long_turn = speak(
        "I have a question about my order. It was a present for my sister. "
        "She lives in Canada, and I want to know when it arrives."
    )
    assert len(long_turn) / 2 / 16000 > 6.5
    await speak_turn(client, long_turn, timeout=60)
    replied_at = time.monotonic()
    assert await client.silence_until(lambda: client.closed, 40)
    texts = [(e["text"], e["_at"]) for e in client.events if e["type"] == "agent.text"]
    check_ins = [at for text, at in texts if text == "Are you still there?"]
    assert len(check_ins) == 1 and check_ins[0] - replied_at >= 5.5, texts  # one check-in, after 6 s of quiet
    assert texts[-1][0].startswith("I haven't heard from you")
    assert client.of_type("session.ended")[-1]["reason"] == "idle_timeout" and client.close_code == 1000
    state = stored(platform, client.session["session_id"])
    assert [t.source for t in state.turns][-2:] == ["checkin", "goodbye"] and state.end_reason == "idle_timeout"


async def test_session_api_say_reply_interrupt_close(platform):
    import ray

    from serve_app.session_api import session_actor

    client = await open_call(platform, "steered")
    await wait_greeting_done(client)
    sid = client.session["session_id"]
    actor = session_actor(sid, platform["store"])

    await actor.say.remote("This is a message from the operator.")
    await client.silence_until(
        lambda: any(e.get("text") == "This is a message from the operator." for e in client.of_type("agent.text")), 30
    )

    await actor.reply.remote("what are your opening hours")
    with pytest.raises(ray.exceptions.RayTaskError, match="already in flight"):
        await actor.reply.remote("and on Sunday?")
    await client.silence_until(lambda: any("Monday" in e["text"] for e in client.of_type("agent.text")), 30)
    await client.silence_until(
        lambda: client.events[-1]["type"] == "agent.state" and client.events[-1]["state"] == "listening", 30
    )
    await actor.reply.remote("and are you open on Sunday?")  # the first one finished: allowed again

    mark = len(client.timeline)
    await client.silence_until(lambda: audio_s_since(client, mark) > 0.5, 30)
    await actor.interrupt.remote()
    await client.silence_until(lambda: ("event", "audio.clear") in client.timeline[mark:], 10)

    await actor.close.remote()
    assert await client.silence_until(lambda: client.closed, 20)
    assert client.of_type("session.ended")[-1]["reason"] == "closed" and client.close_code == 1000
    state = stored(platform, sid)
    assert [t.source for t in state.turns] == ["greeting", "say", "reply", "reply"], [t.source for t in state.turns]
    assert state.turns[3].interrupted and state.end_reason == "closed"
    with pytest.raises(LookupError):
        session_actor(sid, platform["store"])
    await asyncio.sleep(0)
