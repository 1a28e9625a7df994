"""The caller's own resume (serve_app/call_resume.py), against a small protocol server on
loopback that drops sockets for real: a drop is dialled back with the latest token, events go
on being recorded, our own close and a refused token are not retried."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlparse

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from serve_app import call_resume
from serve_app.call import CallClient


class HeldCall:
    """One call that a drop does not end: `resume=TOKEN` (the latest, once) takes it up again."""

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.sockets = 0
        self.tokens = ["t0"]
        self.live = None

    def check(self, connection, request):
        query = parse_qs(urlparse(request.path).query)
        resume = query.get("resume", [None])[0]
        if resume is not None and (self.refuse or resume != self.tokens[-1]):
            return connection.respond(403, "resume token unknown, used, expired or not yours\n")
        return None

    async def handle(self, ws):
        resumed = "resume=" in ws.request.path
        if resumed:
            self.tokens.append(f"t{len(self.tokens)}")
        self.sockets += 1
        self.live = ws
        await ws.send(json.dumps({"type": "session.started", "session_id": "s1", "resume_token": self.tokens[-1],
                                  "resumed": resumed}))  # fmt: skip
        try:
            async for msg in ws:
                ev = json.loads(msg)
                if ev["type"] == "hangup":
                    await ws.send(json.dumps({"type": "session.ended", "reason": "hangup"}))
                    await ws.close()
                elif ev["type"] == "text":
                    await ws.send(json.dumps({"type": "agent.text", "turn_id": 1, "text": f"you said {ev['text']}"}))
        except ConnectionClosed:
            pass  # dropped

    def drop(self) -> None:
        self.live.transport.abort()  # no close frame, no session.ended: the network went away


async def on_server(held: HeldCall):
    server = await serve(held.handle, "127.0.0.1", 0, process_request=held.check)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/ws/call"


async def test_a_dropped_socket_is_dialled_back_and_the_call_goes_on():
    held = HeldCall()
    server, url = await on_server(held)
    async with server:
        client = CallClient(url, "alice")
        await client.connect()
        held.drop()
        await client.wait_for(lambda: client.resumes == 1, 5)
        assert client.session["resume_token"] == "t1" and not client.closed
        await client.send_json({"type": "text", "text": "hello"})
        await client.wait_event("agent.text", 5, text="you said hello")

        held.drop()  # a second drop: dialled back with the token of the resume, not the first
        await client.wait_for(lambda: client.resumes == 2, 5)
        await client.hangup()
        assert client.close_code == 1000 and [e["resumed"] for e in client.of_type("session.started")] == [
            False,
            True,
            True,
        ]
        assert held.sockets == 3


async def test_audio_sent_while_the_socket_is_down_is_lost_not_an_error():
    held = HeldCall()
    server, url = await on_server(held)
    async with server:
        client = CallClient(url, "alice")
        await client.connect()
        held.drop()
        await client.stream(bytes(3200), realtime=False)  # the drop not yet seen, or seen: no error either way
        await client.wait_for(lambda: client.resumes == 1, 5)
        await client.hangup()


async def test_our_own_close_is_not_dialled_back():
    held = HeldCall()
    server, url = await on_server(held)
    async with server:
        client = CallClient(url, "alice")
        await client.connect()
        await client.close()
        await asyncio.sleep(0.5)  # past the first backoff
        assert held.sockets == 1 and client.resumes == 0 and client.closed


async def test_a_refused_token_ends_the_attempts(monkeypatch):
    monkeypatch.setattr(call_resume, "NOT_NOTICED_YET_S", 0)
    held = HeldCall(refuse=True)
    server, url = await on_server(held)
    async with server:
        client = CallClient(url, "alice")
        await client.connect()
        held.drop()
        await client.wait_for(lambda: client.closed, 5)
        assert client.close_code == 1006 and client.resumes == 0


async def test_no_resume_when_switched_off_or_after_the_window():
    held = HeldCall()
    server, url = await on_server(held)
    async with server:
        client = CallClient(url, "alice", resume_for=0)
        await client.connect()
        held.drop()
        await client.wait_for(lambda: client.closed, 5)
        assert held.sockets == 1
    # Nobody listens any more: attempts stop when the window is over.
    assert await call_resume.redial(url + "?resume=t1", resume_for=0.8) is None


@pytest.mark.parametrize(
    ("status", "since", "final"),
    [
        (403, 0.5, False),
        (403, 4.5, False),
        (403, 6, True),
        (400, 0, True),
        (429, 5, False),
        (503, 5, False),
        (500, 5, False),
    ],
)
def test_which_refusals_are_final(status, since, final):
    assert call_resume.final_refusal(status, since) is final


@pytest.mark.platform
async def test_on_the_platform_a_dropped_client_resumes_by_itself_and_its_next_turn_is_answered(platform, speak):
    import time

    from serve_app.call import speak_turn
    from tests.test_call import open_call, stored, wait_greeting_done

    client = await open_call(platform, "resuming-client")
    await wait_greeting_done(client)
    sid, greeting = client.session["session_id"], client.of_type("agent.text")
    t0 = time.monotonic()
    client._line.ws.transport.abort()  # the network goes away: no close frame, no hang-up
    await client.wait_for(lambda: client.resumes == 1, 15)
    resumed_in = time.monotonic() - t0
    assert client.session["session_id"] == sid and client.session["resumed"] and not client.closed

    report = await speak_turn(client, speak("What are your opening hours?"), timeout=60)
    assert "opening hours" in report.transcript.lower(), report.transcript
    assert "Monday to Friday" in " ".join(report.agent_text) and report.first_audio is not None
    assert client.of_type("agent.text")[: len(greeting)] == greeting
    assert not [e for e in client.of_type("agent.text")[len(greeting) :] if e["turn_id"] == 0]  # no second greeting
    await client.hangup()
    assert client.close_code == 1000 and client.resumes == 1
    state = stored(platform, sid)
    assert [t.turn_id for t in state.turns] == [0, 1] and state.end_reason == "hangup"
    print(f"drop to resumed session.started: {resumed_in * 1000:.0f} ms")
    assert resumed_in < 5, resumed_in
