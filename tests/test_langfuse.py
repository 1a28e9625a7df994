"""Langfuse tracing through the real platform: the Gateway (tracing on) and the Dialogue (the
OpenAI engine, against tests/fake_openai.py) redeployed, a spoken call with a tool turn, a PIN,
a card number and an email, and what the installed SDK sent to a local Langfuse stand-in
(tests/fake_langfuse.py: OTLP protobuf, decoded): names, nesting, times, and nothing personal."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from contextlib import contextmanager

import pytest

from serve_app.tracing import caller_hash
from tests.fake_langfuse import FakeLangfuse
from tests.fake_openai import FakeChatServer, text, tool_calls

SECRET = "sk-lf-test-5e1d"
CALLER = "demo-alice"
PIN, CARD, EMAIL = "1234", "4111111111111111", "jane.doe@example.com"


@contextmanager
def chat_server_in_thread(script):
    """The fake chat server on a loop of its own: redeploy() blocks the test's loop while it probes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeChatServer(script)
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def script(body, n):
    """First the PIN and the order through tools, then a reply that reads the email back."""
    said = body["messages"][-1]
    if said["role"] == "user" and "pin" in said["content"].lower():
        return tool_calls(("verify_pin", json.dumps({"pin": PIN})), ("order_status", '{"order_id": "10042"}'))
    if said["role"] == "tool":
        return text("Thanks Alice. Your running shoes shipped.")
    return text(f"I can't take card numbers here. I'll send the receipt to {EMAIL}.")


def health(platform) -> dict:
    with urllib.request.urlopen(f"{platform['http']}/health", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def traced_platform(platform):
    """Gateway with Langfuse on and Dialogue on the OpenAI engine; both put back afterwards."""
    from ray import serve

    from models.dialogue import DialogueRequest
    from tests.conftest import redeploy

    with FakeLangfuse() as langfuse, chat_server_in_thread(script) as chat:
        dialogue = serve.get_deployment_handle("Dialogue", "voice")

        def asks_the_model() -> bool:
            before = len(chat.requests)
            request = DialogueRequest(transcript="hello there", memory={}, session_id="probe", caller_id="probe")
            list(dialogue.options(stream=True).respond.remote(request))
            return len(chat.requests) > before

        llm = {
            "VOICE_DIALOGUE_PROVIDER": "openai",
            "VOICE_OPENAI_API_KEY": "sk-test",
            "VOICE_OPENAI_MODEL": "test-model",
        }
        keys = {"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": SECRET, "LANGFUSE_HOST": langfuse.url}
        both = {"Dialogue": llm | {"VOICE_OPENAI_BASE_URL": chat.base_url}}
        on = lambda: health(platform)["tracing"] == "langfuse" and asks_the_model()  # noqa: E731
        redeploy(platform, "Gateway", keys, on, also=both)
        langfuse.received.clear()
        try:
            yield langfuse, chat
        finally:
            redeploy(platform, "Gateway", None, lambda: health(platform)["tracing"] == "off" and not asks_the_model())


async def test_the_sdk_sends_the_turn_tree_as_otlp_with_real_times_and_masked_text():
    """The sink alone (no platform): what the installed SDK puts on the wire for one turn."""
    from serve_app.tracing import Tracing
    from serve_app.tracing_langfuse import LangfuseSink
    from tests.test_tracing import METRICS, tool_turn

    with FakeLangfuse() as langfuse:
        trace = Tracing(LangfuseSink("pk-lf-unit", "sk-lf-unit", langfuse.url), "sk-lf-unit").call("s-1", CALLER)
        eos = time.monotonic() - 2.0
        trace.turn_started(2, eos, "speech")
        trace.turn_recorded(tool_turn()["record"].model_copy(update={"turn_id": 2}), "my card is 4111 1111 1111 1111")
        trace.turn_finished(2, METRICS, False)
        await trace.end("hangup")
        spans = {s["name"]: s for s in langfuse.spans()}
    assert set(spans) == {"call", "turn 2", "asr", "dialogue", "tool:verify_pin", "tool:order_status", "tts"}
    parent = {
        name: next((p for p, s in spans.items() if s["span_id"] == span["parent_id"]), None)
        for name, span in spans.items()
    }
    assert parent == {
        "call": None,
        "turn 2": "call",
        "asr": "turn 2",
        "dialogue": "turn 2",
        "tts": "turn 2",
        "tool:verify_pin": "dialogue",
        "tool:order_status": "dialogue",
    }
    assert abs((spans["call"]["start_ns"] - spans["turn 2"]["start_ns"]) / 1e6 - 2000) < 200  # started 2 s before
    assert (spans["asr"]["end_ns"] - spans["asr"]["start_ns"]) / 1e6 == METRICS["eos_to_transcript_ms"]
    assert spans["dialogue"]["attributes"]["langfuse.observation.model.name"] == "gpt-test"
    raw = b"".join(r.body for r in langfuse.received)
    assert b"4111" not in raw and b"example.com" not in raw and CALLER.encode() not in raw
    assert langfuse.basic_auth() == {("pk-lf-unit", "sk-lf-unit")}


def _within(child: dict, parent: dict, slack_ns: int = 5_000_000) -> bool:
    return parent["start_ns"] - slack_ns <= child["start_ns"] <= child["end_ns"] <= parent["end_ns"] + slack_ns


@pytest.mark.platform
async def test_a_call_is_one_trace_of_turns_with_asr_dialogue_tools_and_tts_and_nothing_personal(
    platform, traced_platform, speak, output_dir
):
    from serve_app.call import speak_turn
    from tests.test_call import open_call, wait_greeting_done

    langfuse, chat = traced_platform
    client = await open_call(platform, caller_id=CALLER)
    await wait_greeting_done(client)
    first = await speak_turn(client, speak("My PIN is one two three four. Where is my order one zero zero four two?"))
    second = await speak_turn(
        client,
        speak(
            "My card number is four one one one, one one one one, one one one one, one one one one."
            " My email is jane dot doe at example dot com."  # Whisper: "... 111, 111, jane.do at example.com."
        ),
    )
    session_id = client.session["session_id"]
    await client.hangup()
    assert "shipped" in " ".join(first.agent_text) and "receipt" in " ".join(second.agent_text)

    deadline = time.monotonic() + 30  # flushed at call end
    while not any(s["name"] == "call" for s in langfuse.spans()):
        assert time.monotonic() < deadline, "the call's trace never arrived"
        await asyncio.sleep(0.2)
    spans = langfuse.spans()
    (output_dir / "spans.json").write_text(json.dumps(spans, indent=1))

    # one trace: the call at its root, by session id and the caller's keyed hash, never the caller id
    assert {s["trace_id"] for s in spans} == {spans[0]["trace_id"]}
    (call,) = [s for s in spans if s["parent_id"] == ""]
    assert call["name"] == "call" and call["attributes"]["session.id"] == session_id
    assert all(s["attributes"]["user.id"] == caller_hash(CALLER, SECRET) for s in spans)
    assert json.loads(call["attributes"]["langfuse.observation.output"]) == {"end_reason": "hangup"}
    children = {s["span_id"]: [c for c in spans if c["parent_id"] == s["span_id"]] for s in spans}
    turns = children[call["span_id"]]
    turns.sort(key=lambda t: t["start_ns"])
    assert len(turns) == 2 and all(t["name"].startswith("turn ") for t in turns)  # the greeting is no caller turn
    for turn in turns:
        assert _within(turn, call)
        parts = {c["name"]: c for c in children[turn["span_id"]]}
        assert set(parts) == {"asr", "dialogue", "tts"}
        assert all(_within(p, turn) for p in parts.values())
        assert parts["asr"]["end_ns"] <= parts["dialogue"]["start_ns"] + 5_000_000  # heard, then answered
        assert 0 < (parts["asr"]["end_ns"] - turn["start_ns"]) / 1e6 < 10_000
        assert 0 < (parts["tts"]["end_ns"] - parts["tts"]["start_ns"]) / 1e6 < 30_000
        attrs = parts["dialogue"]["attributes"]
        assert attrs["langfuse.observation.type"] == "generation"
        assert attrs["langfuse.observation.model.name"] == "test-model"
        usage = json.loads(attrs["langfuse.observation.usage_details"])
        assert usage["input"] > 0 and usage["total"] == usage["input"] + usage["output"]
    tools = children[[c for c in children[turns[0]["span_id"]] if c["name"] == "dialogue"][0]["span_id"]]
    assert [t["name"] for t in sorted(tools, key=lambda t: t["start_ns"])] == ["tool:verify_pin", "tool:order_status"]
    assert all(t["attributes"]["langfuse.observation.type"] == "tool" for t in tools)
    assert children[[c for c in children[turns[1]["span_id"]] if c["name"] == "dialogue"][0]["span_id"]] == []

    # nothing personal anywhere: neither in any attribute nor in the raw bytes the SDK sent
    texts = [v for s in spans for v in s["attributes"].values() if isinstance(v, str)]
    raw = b"".join(r.body for r in langfuse.received)
    for said in texts:
        digits = re.sub(r"[\s,.\-]", "", said)
        assert PIN not in digits and re.search(r"\d{13,}", digits) is None, said  # a PIN, a card however heard
        assert "example" not in said.lower() and CALLER not in said, said
    for secret in (PIN, CARD, "4111 1111", EMAIL, "example", CALLER):
        assert secret.encode() not in raw
    assert any("[EMAIL]" in t for t in texts)  # the reply's email was there, masked
    assert langfuse.basic_auth() == {("pk-lf-test", SECRET)}
