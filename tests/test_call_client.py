"""The test and load-test caller's idea of "the agent answered what I said", without a server."""

import json

from serve_app.call import CallClient


async def _state(client: CallClient, state: str, at: float, monkeypatch) -> None:
    monkeypatch.setattr("serve_app.call.time.monotonic", lambda: at)
    await client._handle(json.dumps({"type": "agent.state", "state": state}))


async def test_a_reply_to_the_first_half_of_a_paused_sentence_is_not_the_answer(monkeypatch):
    client = CallClient("ws://127.0.0.1:9/ws/call", "caller")
    # The caller paused mid-sentence at t=1: that half was answered, then barged in on (t=1.4)
    # while the caller went on talking until t=3.
    for state, at in [("thinking", 1.0), ("speaking", 1.2), ("listening", 1.4)]:
        await _state(client, state, at, monkeypatch)
    assert client.agent_idle_since(0)  # without the time of the last word it looks answered
    assert not client.agent_idle_since(0, said_at=3.0)
    await _state(client, "thinking", 3.3, monkeypatch)
    assert not client.agent_idle_since(0, said_at=3.0)  # thinking about the whole of it
    for state, at in [("speaking", 3.6), ("listening", 5.0)]:
        await _state(client, state, at, monkeypatch)
    assert client.agent_idle_since(0, said_at=3.0)
