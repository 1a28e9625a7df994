"""Floods by frame count: every binary frame counts (empty and odd-length ones too), and error
events are rate-limited per code so a flood is never echoed back (in-process, no Ray)."""

from __future__ import annotations

import asyncio

from models.protocol import error_event
from serve_app.conversation.guards import ErrorLimiter, TokenBucket
from tests.call_fakes import FRAME, FakeClock, FakeDialogue, FakeWS, handler, session_actor, settings


def hours(text, memory, run_ahead):
    return ["We're open nine to five."], {"intent": "hours", "memory": memory}


async def start(ws, actor, clock, **overrides):
    h = handler(ws, actor, settings(max_frames_per_s=200, frame_burst=50, **overrides), clock=clock)
    task = asyncio.create_task(h.run())
    await ws.idle()
    return task


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(200, 50, clock)
    assert sum(bucket.take() for _ in range(60)) == 50
    clock.t += 0.1  # 20 more tokens
    assert sum(bucket.take() for _ in range(60)) == 20


def test_error_limiter_sends_one_per_code_per_second_and_counts_the_rest():
    clock = FakeClock()
    limit = ErrorLimiter(1.0, clock)
    assert limit.admit("invalid_audio") == 0
    assert [limit.admit("invalid_audio") for _ in range(5)] == [None] * 5
    assert limit.admit("invalid_json") == 0  # per code
    clock.t += 1.0
    assert limit.admit("invalid_audio") == 5 and limit.held == 0
    assert '"suppressed":5' in error_event("invalid_audio", "odd", 5) and "suppressed" not in error_event("x", "y")


async def test_empty_frames_over_the_rate_close_the_call_1008_flooding(tmp_path, monkeypatch):
    ws, clock = FakeWS(), FakeClock()
    task = await start(ws, session_actor(FakeDialogue(hours), tmp_path, monkeypatch), clock)
    for _ in range(60):  # no time passes: the burst of 50 is all there is
        ws.bytes(b"")
    assert await asyncio.wait_for(task, 1) == "flooding"
    assert ws.close_code == 1008 and ws.of("session.ended", reason="flooding")
    assert [e["code"] for e in ws.of("error")] == ["flooding"]


async def test_frames_at_a_microphones_pace_are_fine(tmp_path, monkeypatch):
    ws, clock = FakeWS(), FakeClock()
    task = await start(ws, session_actor(FakeDialogue(hours), tmp_path, monkeypatch), clock)
    for _ in range(10):  # 10 s of 20 ms frames, at 50 a second
        for _ in range(50):
            ws.bytes(FRAME)
        await ws.drain()
        clock.t += 1.0
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup" and not ws.of("error")


async def test_odd_frames_get_one_error_a_second_with_the_rest_counted(tmp_path, monkeypatch):
    ws, clock = FakeWS(), FakeClock()
    task = await start(ws, session_actor(FakeDialogue(hours), tmp_path, monkeypatch), clock)
    for _ in range(40):
        ws.bytes(b"\x01")
    await ws.drain()
    clock.t += 1.0
    ws.bytes(b"\x01\x02\x03")
    await ws.wait(lambda: len(ws.of("error")) == 2)
    first, second = ws.of("error")
    assert first["code"] == second["code"] == "invalid_audio"
    assert "suppressed" not in first and second["suppressed"] == 39
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 1) == "hangup"
