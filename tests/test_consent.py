"""The recording and consent notice: how a caller's answer is read (deployments/policy/consent.py),
the notice as a fixed line, and its setting."""

from __future__ import annotations

import pytest

from common.config import ConfigError, load_settings
from deployments.dialogue.engine import GREETING
from deployments.dialogue.fixed_lines import fixed_lines, greeting_lines, notice_lines, prewarm_lines
from deployments.policy.consent import DECLINED_REPLY, carries_request, consent_after

DECLINES = [
    "No.",
    "no",
    "Nope, thanks.",
    "Um, no thank you.",
    "I'd rather not.",
    "Please don't.",
    "Not really.",
    "I don't consent.",
    "I do not agree to being recorded.",
    "Don't record this call, please.",
    "I'd rather you didn't record me.",
    "Please don't transcribe this.",
    "I object.",
    "No, where is my order?",
]
CONSENTS = [
    "Yes.",
    "Okay.",
    "Sure, go ahead.",
    "No problem.",
    "No, that's fine.",
    "No objection.",
    "I don't mind being recorded.",
    "Where is my order 10042?",
    "Hello?",
]
# Later in the call only an objection to the recording itself declines.
LATER_DECLINES = [
    "Stop recording this.",
    "I don't want this call recorded.",
    "Please don't keep a transcript.",
    "opt out",
]
LATER_NOT = [
    "No.",
    "No, I haven't received it.",
    "Nope.",
    "I don't mind the recording.",
    "Not that one, the other order.",
]


@pytest.mark.parametrize("text", DECLINES)
def test_a_refusal_right_after_the_notice_declines(text):
    assert consent_after("pending", text) == "declined"


@pytest.mark.parametrize("text", CONSENTS)
def test_anything_else_right_after_the_notice_consents(text):
    assert consent_after("pending", text) == "given"


@pytest.mark.parametrize("text", LATER_DECLINES)
def test_later_an_objection_to_the_recording_declines(text):
    assert consent_after("given", text) == "declined"


@pytest.mark.parametrize("text", LATER_NOT)
def test_later_a_plain_no_answers_something_else(text):
    assert consent_after("given", text) is None


def test_no_notice_or_an_earlier_decline_is_never_changed():
    assert consent_after(None, "Don't record me.") is None  # no notice was said: nothing to answer
    assert consent_after("declined", "Yes, go ahead and record.") is None  # declined for the rest of the call


def test_a_decline_with_a_request_is_answered_too():
    assert carries_request("No, where is my order?") and carries_request("No, I haven't received my package.")
    assert not any(carries_request(t) for t in ("No.", "No thanks.", "I don't want to be recorded.", "Please don't."))


def test_the_notice_and_its_answer_are_fixed_lines_the_tts_cache_keeps_and_prewarms():
    notice = notice_lines(True, "This call is recorded. Say no if you'd rather it wasn't.")
    assert notice == ["This call is recorded.", "Say no if you'd rather it wasn't."]
    assert notice_lines(False, "This call is recorded.") == []
    assert set(notice) <= set(prewarm_lines(notice)) and prewarm_lines(notice)[:2] == notice
    assert set(notice) | {DECLINED_REPLY} <= set(fixed_lines(None, notice))


def test_the_notice_setting(monkeypatch):
    monkeypatch.setenv("VOICE_CONSENT_NOTICE_ON", "true")
    assert "recorded" in load_settings().consent_notice
    monkeypatch.setenv("VOICE_CONSENT_NOTICE", "  ")
    with pytest.raises(ConfigError, match="VOICE_CONSENT_NOTICE must not be empty"):
        load_settings()
    monkeypatch.setenv("VOICE_CONSENT_NOTICE_ON", "maybe")
    with pytest.raises(ConfigError, match="VOICE_CONSENT_NOTICE_ON"):
        load_settings()


# --- the Dialogue deployment's side: the notice in the greeting, the answer before the engine ------


class EchoEngine:
    """A dialogue engine that answers every turn with the hours (and a tool call when asked)."""

    def __init__(self):
        self.asked: list[str] = []

    async def stream(self, text, memory, session_id, caller_id, history, turn_id):
        from deployments.dialogue.support import TurnResult
        from models.state import ToolResult

        self.asked.append(text)
        yield "We're open nine to five."
        tools = [ToolResult(tool="verify_pin", ok=True)] if "pin" in text else []
        memory = {**memory, "customer_id": "cust-demo-alice"} if tools else dict(memory)
        yield TurnResult(sentences=[], intent="faq", memory=memory, tool_results=tools)


@pytest.fixture
def dialogue(tmp_path):
    """The deployment's class as Serve runs it, on a real state store, with a stand-in engine."""
    from deployments.dialogue.deployment import Dialogue
    from deployments.state import sqlite_state

    made = object.__new__(Dialogue.func_or_class)
    made._engine = made._engine_ahead = EchoEngine()
    made._state = sqlite_state(tmp_path / "state.db")
    made._notice = notice_lines(True, "This call is recorded. Say no if you'd rather it wasn't.")
    made._greeting = list(GREETING)  # VOICE_GREETING's default
    yield made
    made._state.close()


async def turn(dialogue, text: str, consent: str | None, from_caller: bool = True):
    from models.dialogue import DialogueRequest, Sentence

    request = DialogueRequest(
        transcript=text, memory={"consent": consent}, session_id="s1", caller_id="demo-alice", from_caller=from_caller
    )
    items = [item async for item in dialogue.respond(request)]
    return [i.text for i in items if isinstance(i, Sentence)], items[-1]


async def test_the_greeting_says_the_notice_first_and_waits_for_its_answer(dialogue):
    items = [item async for item in dialogue.greeting()]
    assert [i.text for i in items[:-1]] == [*dialogue._notice, *GREETING]
    assert items[-1].memory == {"consent": "pending"}
    dialogue._notice = []  # VOICE_CONSENT_NOTICE_ON=false: the greeting as before, nothing asked
    items = [item async for item in dialogue.greeting()]
    assert [i.text for i in items[:-1]] == GREETING and items[-1].memory is None


async def test_the_operators_greeting_is_said_and_is_a_fixed_line(dialogue, monkeypatch):
    """VOICE_GREETING replaces the default word for word; it is said after the notice, closes a
    decline's answer, and is among the lines the TTS replicas make at start and cache."""
    monkeypatch.delenv("VOICE_GREETING", raising=False)  # the platform tests' shorter one
    assert load_settings().greeting == " ".join(GREETING)
    monkeypatch.setenv("VOICE_GREETING", "Acme support, this is Sam. What can I do for you?")
    ours = greeting_lines(load_settings().greeting)
    assert ours == ["Acme support, this is Sam.", "What can I do for you?"]
    dialogue._greeting = ours
    items = [item async for item in dialogue.greeting()]
    assert [i.text for i in items[:-1]] == [*dialogue._notice, *ours]
    said, _ = await turn(dialogue, "No thanks.", "pending")
    assert said == [DECLINED_REPLY, "What can I do for you?"]
    assert set(ours) <= set(prewarm_lines(dialogue._notice, ours)) and set(ours) <= set(fixed_lines(None, (), ours))
    assert not set(GREETING) & set(prewarm_lines((), ours))  # the default is not made for nothing
    monkeypatch.setenv("VOICE_GREETING", "  ")
    with pytest.raises(ConfigError, match="VOICE_GREETING"):
        load_settings()


async def test_a_decline_is_acknowledged_and_any_request_with_it_answered(dialogue):
    said, summary = await turn(dialogue, "No thanks.", "pending")
    assert said == [DECLINED_REPLY, GREETING[-1]] and summary.memory["consent"] == "declined"
    assert dialogue._engine.asked == []  # the engine never saw it
    said, summary = await turn(dialogue, "No, when are you open on Saturday?", "pending")
    assert said == [DECLINED_REPLY, "We're open nine to five."] and summary.memory["consent"] == "declined"
    said, summary = await turn(dialogue, "when are you open on Saturday", "pending")
    assert said == ["We're open nine to five."] and summary.memory["consent"] == "given"
    said, summary = await turn(dialogue, "no", "pending", from_caller=False)  # a session-API instruction
    assert said == ["We're open nine to five."] and summary.memory["consent"] == "pending"


async def test_a_turn_with_tools_links_its_audit_entries_to_the_caller_and_customer(dialogue):
    await turn(dialogue, "my pin is on its way", "given")
    assert dialogue._state.audit.sessions_of("demo-alice") == {"s1"}
    assert dialogue._state.audit.sessions_of("cust-demo-alice") == {"s1"}
    await turn(dialogue, "when are you open", "given")  # no tool, nothing audited: no link needed
    assert dialogue._state.audit.sessions_of("someone-else") == set()
