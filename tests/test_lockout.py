"""PIN lockout per customer, across calls, in the state store's `customers` part (issue 11,
finding 4), on both backends: SQLite and a real redis-server.

Each call is a fresh agent memory over the same stores, as when a caller hangs up and
redials; the PIN guard's clock is driven by the test."""

import asyncio
import time

import pytest
import redis

from deployments.dialogue.engine import IntentClassifier
from deployments.dialogue.support import SupportAgent
from deployments.dialogue.tools import support_router
from deployments.policy.engine import PolicyEngine
from deployments.state import redis_state, sqlite_state
from deployments.state.parts import PinLockout
from deployments.tools.pin_guard import PinGuard
from deployments.tools.support_store import SupportStore
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
def store(tmp_path):
    return SupportStore(tmp_path / "support.db")


@pytest.fixture(params=["sqlite", "redis"])
def state(request, tmp_path, redis_url, monkeypatch):
    """Where the state lives, and the settings that name it for the CLI."""
    monkeypatch.setenv("VOICE_STORE_PATH", str(tmp_path / "sessions.db"))  # state.db beside it
    if request.param == "sqlite":
        monkeypatch.delenv("VOICE_STORE_URL", raising=False)
        state = sqlite_state(tmp_path / "state.db")
    else:
        redis.Redis.from_url(redis_url).flushdb()
        monkeypatch.setenv("VOICE_STORE_URL", redis_url)
        state = redis_state(redis_url)
    yield state
    state.close()


@pytest.fixture
def pins(store, state, clock):
    return PinGuard(store, state.customers, state.audit, PinLockout(3, 900, 900), clock)


@pytest.fixture
def new_call(store, state, pins, classify):
    def _call(caller_id="demo-alice"):
        agent = SupportAgent(classify, support_router(store, state, LocalBreaker(), pins), None, PolicyEngine(3))
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


def security_audit(state):
    return [(a["name"], a["outcome"]) for a in state.audit.read() if a["kind"] == "security"]


def test_three_wrong_pins_lock_the_customer_for_the_next_call_even_with_the_right_pin(new_call, state):
    first = new_call()
    assert "didn't match" in first.pin("1111").text
    assert "didn't match" in first.say("2222").text
    r = first.say("3333")
    assert r.escalate == "auth_locked" and r.end_call
    assert security_audit(state) == [("pin_lockout", "locked")]
    second = new_call()  # the caller redials: new memory, same customer
    r = second.pin("1234")
    assert r.escalate == "auth_locked" and r.end_call and not second.memory["authenticated"]
    assert "Too many wrong PINs" in r.text and "colleague" in r.text
    assert "running shoes" not in r.text
    assert [(t.tool, t.error) for t in r.tool_results] == [("verify_pin", "auth_locked")]


def test_failures_spread_over_calls_add_up(new_call, pins):
    assert "2 attempts left" in new_call().pin("1111").text
    assert "1 attempt left" in new_call().pin("2222").text  # the store's count, not this call's 2
    r = new_call().pin("3333")
    assert r.escalate == "auth_locked", r.text  # locked at this call's first wrong PIN
    assert new_call().pin("1234").escalate == "auth_locked"
    assert pins.customer("demo-alice")["locked_until"] is not None


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


def test_unlock_lifts_the_lock_and_is_audited(new_call, state, pins):
    for pin in ("1111", "2222", "3333"):
        new_call().pin(pin)
    assert new_call().pin("1234").escalate == "auth_locked"
    unlocked = pins.unlock("demo-alice", by="test")
    assert unlocked["was_locked"] and unlocked["customer_id"] == "cust-demo-alice"
    call = new_call()
    call.pin("1234")
    assert call.memory["authenticated"]
    assert security_audit(state) == [("pin_lockout", "locked"), ("pin_unlock", "unlocked")]
    assert pins.unlock("cust-demo-alice")["was_locked"] is False  # by customer id too
    assert pins.unlock("nobody") is None


def test_unlock_command(new_call, state, pins, tmp_path, monkeypatch, capsys):
    for pin in ("1111", "2222", "3333"):
        new_call().pin(pin)
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "support.db"))
    assert cli.main(["customers", "unlock", "demo-alice"]) == 0
    assert "cust-demo-alice (caller id demo-alice): unlocked" in capsys.readouterr().out
    assert pins.customer("demo-alice")["locked_until"] is None
    assert security_audit(state)[-1] == ("pin_unlock", "unlocked")
    assert cli.main(["customers", "unlock", "cust-demo-alice"]) == 0
    assert "was not locked" in capsys.readouterr().out
    assert cli.main(["customers", "unlock", "somebody-else"]) == 1
    assert "no customer with customer id or caller id 'somebody-else'" in capsys.readouterr().err
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "missing" / "support.db"))
    assert cli.main(["customers", "unlock", "demo-alice"]) == 1
    monkeypatch.setenv("VOICE_PIN_LOCKOUT_S", "-1")
    assert cli.main(["customers", "unlock", "demo-alice"]) == 2


def test_wrong_pins_for_an_unknown_caller(new_call, state, pins):
    call = new_call("stranger-1")
    assert "didn't match" in call.pin("1234").text
    call.say("1111")
    assert call.say("2222").escalate == "auth_locked"  # this call's own limit still ends it
    assert security_audit(state) == []  # no customer, nothing to lock
    assert pins.check_pin("stranger-1", "1234").outcome == "unknown"
    alice = new_call()
    alice.pin("1234")
    assert alice.memory["authenticated"]  # nobody else is affected


def test_the_store_compares_no_pin_while_locked(state, pins, clock):
    for pin in ("1111", "2222"):
        assert pins.check_pin("demo-alice", pin).outcome == "wrong"
    locked = pins.check_pin("demo-alice", "3333", "s1")
    assert locked.outcome == "locked" and locked.locked_until == clock.t + 900
    assert pins.check_pin("demo-alice", "1234").outcome == "locked"
    assert pins.verify_pin("demo-alice", "1234") is None
    assert state.audit.read("s1")[0]["name"] == "pin_lockout"


def test_show_command_prints_the_cross_call_state_masked(new_call, state, tmp_path, monkeypatch, capsys):
    from deployments.dialogue.remember import to_remember

    call = new_call()
    call.memory["locale"] = "en-GB"  # the call's locale, as the session actor gives it
    r = call.pin("1234")  # verified, order 10042 looked up: what the Dialogue deployment keeps
    customer_id, fields = to_remember(r.memory, r.tool_results)
    state.customers.remember(customer_id, **fields)
    new_call().pin("1111")
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "support.db"))
    assert cli.main(["customers", "show", "demo-alice"]) == 0
    out = capsys.readouterr().out
    assert "cust-demo-alice (caller id demo-alice)" in out and "failed PINs  1 in the last 900 s" in out
    assert "PIN lock     none" in out and "last order   10042" in out and "locale       en-GB" in out
    assert "1234" not in out and "1111" not in out
    assert cli.main(["customers", "show", "nobody"]) == 1


async def test_the_openai_engine_obeys_the_store_lock(store, state, pins):
    """The LLM engine takes the same store decision: locked in earlier calls, a right PIN now
    is refused, the model is told, the call goes to a human."""
    import json

    import openai

    from deployments.dialogue.openai_engine import OpenAIDialogueEngine
    from deployments.dialogue.support import HANDOFF, TurnResult
    from tests.fake_openai import FakeChatServer, text, tool_calls

    for pin in ("1111", "2222", "3333"):
        pins.check_pin("demo-alice", pin)

    def script(body, n):
        if n == 1:
            return tool_calls(("verify_pin", '{"pin": "1234"}'))
        told = json.loads([m for m in body["messages"] if m["role"] == "tool"][-1]["content"])
        assert told["verified"] is False and "locked" in told["error"]
        return text("I'm sorry.")

    async with FakeChatServer(script) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        router = support_router(store, state, LocalBreaker(), pins)
        engine = OpenAIDialogueEngine(client, "test-model", router, PolicyEngine(3))
        items = [item async for item in engine.stream("my PIN is 1234", {}, "llm-call", "demo-alice")]
    result = items[-1]
    assert isinstance(result, TurnResult) and result.escalate == "auth_locked" and result.end_call
    assert not result.memory["authenticated"] and HANDOFF["auth_locked"] in items
