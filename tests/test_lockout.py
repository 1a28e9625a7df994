"""PIN lockout per customer, across calls, in the support store (issue 11, finding 4).

Each call is a fresh agent memory over the same store, as when a caller hangs up and
redials; the store's clock is driven by the test."""

import asyncio
import time

import pytest

from deployments.dialogue.engine import IntentClassifier
from deployments.dialogue.support import SupportAgent
from deployments.dialogue.tools import support_tools
from deployments.policy.engine import PolicyEngine
from deployments.tools.router import ToolRouter
from deployments.tools.support_store import PinLockout, SupportStore
from serve_app import cli
from tests.test_tools import Clock, LocalBreaker


@pytest.fixture(scope="module")
def classify():
    from deployments.embeddings.engine import Embedder

    embedder = Embedder()

    async def embed_many(texts):
        return embedder.embed(texts)

    return IntentClassifier(embed_many)


@pytest.fixture
def clock():
    c = Clock()
    c.t = time.time()  # wall time: the unlock command's own store reads the same lock
    return c


@pytest.fixture
def store(tmp_path, clock):
    return SupportStore(tmp_path / "support.db", lockout=PinLockout(3, 900, 900), clock=clock)


@pytest.fixture
def new_call(store, classify):
    def _call(caller_id="demo-alice"):
        agent = SupportAgent(classify, ToolRouter(support_tools(store), LocalBreaker(), store), None, PolicyEngine(3))
        return Call(agent, caller_id)

    return _call


class Call:
    """One phone call: its own memory (a new agent too), the store shared."""

    n = 0

    def __init__(self, agent, caller_id):
        Call.n += 1
        self.agent, self.caller_id, self.memory, self.session = agent, caller_id, {}, f"call-{Call.n}"

    def say(self, text):
        result = asyncio.run(self.agent.respond(text, self.memory, self.session, self.caller_id))
        self.memory = result.memory
        result.text = " ".join(result.sentences)
        return result

    def pin(self, pin):
        r = self.say("where is my order 10042")
        assert "PIN" in r.text, r.text
        return self.say(pin)


def security_audit(store):
    return [(a["name"], a["outcome"]) for a in store.audit() if a["kind"] == "security"]


def test_three_wrong_pins_lock_the_customer_for_the_next_call_even_with_the_right_pin(new_call, store):
    first = new_call()
    assert "didn't match" in first.pin("1111").text
    assert "didn't match" in first.say("2222").text
    r = first.say("3333")
    assert r.escalate == "auth_locked" and r.end_call
    assert security_audit(store) == [("pin_lockout", "locked")]
    second = new_call()  # the caller redials: new memory, same customer
    r = second.pin("1234")
    assert r.escalate == "auth_locked" and r.end_call and not second.memory["authenticated"]
    assert "Too many wrong PINs" in r.text and "colleague" in r.text
    assert "running shoes" not in r.text
    assert [(t.tool, t.error) for t in r.tool_results] == [("verify_pin", "auth_locked")]


def test_failures_spread_over_calls_add_up(new_call, store):
    assert "2 attempts left" in new_call().pin("1111").text
    assert "1 attempt left" in new_call().pin("2222").text  # the store's count, not this call's 2
    r = new_call().pin("3333")
    assert r.escalate == "auth_locked", r.text  # locked at this call's first wrong PIN
    assert new_call().pin("1234").escalate == "auth_locked"
    assert store.customer("demo-alice")["locked_until"] is not None


def test_old_failures_leave_the_window_and_a_lock_ends(new_call, clock):
    new_call().pin("1111")
    new_call().pin("2222")
    clock.t += 901  # both failures are now older than the 15-minute window
    assert "2 attempts left" in new_call().pin("3333").text
    for pin in ("4444", "5555"):
        new_call().pin(pin)
    clock.t += 899
    assert new_call().pin("1234").escalate == "auth_locked"  # still locked
    clock.t += 2
    call = new_call()
    r = call.pin("1234")
    assert call.memory["authenticated"] and "running shoes" in r.text and r.escalate is None


def test_right_pin_clears_earlier_failures(new_call):
    new_call().pin("1111")
    new_call().pin("2222")
    assert new_call().pin("1234").escalate is None
    assert "2 attempts left" in new_call().pin("3333").text


def test_unlock_lifts_the_lock_and_is_audited(new_call, store):
    for pin in ("1111", "2222", "3333"):
        new_call().pin(pin)
    assert new_call().pin("1234").escalate == "auth_locked"
    unlocked = store.unlock("demo-alice", by="test")
    assert unlocked["was_locked"] and unlocked["customer_id"] == "cust-demo-alice"
    call = new_call()
    call.pin("1234")
    assert call.memory["authenticated"]
    assert security_audit(store) == [("pin_lockout", "locked"), ("pin_unlock", "unlocked")]
    assert store.unlock("cust-demo-alice")["was_locked"] is False  # by customer id too
    assert store.unlock("nobody") is None


def test_unlock_command(new_call, store, tmp_path, monkeypatch, capsys):
    for pin in ("1111", "2222", "3333"):
        new_call().pin(pin)
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "support.db"))
    assert cli.main(["customers", "unlock", "demo-alice"]) == 0
    assert "cust-demo-alice (caller id demo-alice): unlocked" in capsys.readouterr().out
    assert store.customer("demo-alice")["locked_until"] is None
    assert security_audit(store)[-1] == ("pin_unlock", "unlocked")
    assert cli.main(["customers", "unlock", "cust-demo-alice"]) == 0
    assert "was not locked" in capsys.readouterr().out
    assert cli.main(["customers", "unlock", "somebody-else"]) == 1
    assert "no customer with customer id or caller id 'somebody-else'" in capsys.readouterr().err
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "missing" / "support.db"))
    assert cli.main(["customers", "unlock", "demo-alice"]) == 1
    monkeypatch.setenv("VOICE_PIN_LOCKOUT_S", "-1")
    assert cli.main(["customers", "unlock", "demo-alice"]) == 2


def test_wrong_pins_for_an_unknown_caller(new_call, store):
    call = new_call("stranger-1")
    assert "didn't match" in call.pin("1234").text
    call.say("1111")
    assert call.say("2222").escalate == "auth_locked"  # this call's own limit still ends it
    assert security_audit(store) == []  # no customer, nothing to lock
    assert store.check_pin("stranger-1", "1234").outcome == "unknown"
    alice = new_call()
    alice.pin("1234")
    assert alice.memory["authenticated"]  # nobody else is affected


def test_the_store_compares_no_pin_while_locked(store, clock):
    for pin in ("1111", "2222"):
        assert store.check_pin("demo-alice", pin).outcome == "wrong"
    locked = store.check_pin("demo-alice", "3333", "s1")
    assert locked.outcome == "locked" and locked.locked_until == clock.t + 900
    assert store.check_pin("demo-alice", "1234").outcome == "locked"
    assert store.verify_pin("demo-alice", "1234") is None
    assert store.audit("s1")[0]["name"] == "pin_lockout"


async def test_the_openai_engine_obeys_the_store_lock(store):
    """The LLM engine takes the same store decision: locked in earlier calls, a right PIN now
    is refused, the model is told, the call goes to a human."""
    import json

    import openai

    from deployments.dialogue.openai_engine import OpenAIDialogueEngine
    from deployments.dialogue.support import HANDOFF, TurnResult
    from tests.fake_openai import FakeChatServer, text, tool_calls

    for pin in ("1111", "2222", "3333"):
        store.check_pin("demo-alice", pin)

    def script(body, n):
        if n == 1:
            return tool_calls(("verify_pin", '{"pin": "1234"}'))
        told = json.loads([m for m in body["messages"] if m["role"] == "tool"][-1]["content"])
        assert told["verified"] is False and "locked" in told["error"]
        return text("I'm sorry.")

    async with FakeChatServer(script) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        router = ToolRouter(support_tools(store), LocalBreaker(), store)
        engine = OpenAIDialogueEngine(client, "test-model", router, PolicyEngine(3))
        items = [item async for item in engine.stream("my PIN is 1234", {}, "llm-call", "demo-alice")]
    result = items[-1]
    assert isinstance(result, TurnResult) and result.escalate == "auth_locked" and result.end_call
    assert not result.memory["authenticated"] and HANDOFF["auth_locked"] in items
