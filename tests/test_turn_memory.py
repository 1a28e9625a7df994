"""What a call remembers between turns: a turn run ahead is applied only over the memory it
read, and partial transcripts are masked from the moment a PIN is asked for (in-process)."""

from __future__ import annotations

import asyncio
import re

from deployments.session.engine import SessionEngine
from deployments.session.store import SessionStore
from models.dialogue import TurnSummary
from models.session import TurnRecord
from serve_app.conversation.partial_mask import mask_number_runs
from tests.call_fakes import FRAME, LOUD, FakeDialogue, FakeWS, handler, session_actor, settings

NUMBERISH = re.compile(r"\d|\b(one|two|three|four)\b", re.IGNORECASE)


def frames(chunk: bytes, ms: int) -> list[bytes]:
    return [chunk] * (ms // 20)


async def send(ws, chunks, settle: float = 0.02):
    for c in chunks:
        ws.bytes(c)
    await ws.drain()
    await asyncio.sleep(settle)  # partials and run-aheads are tasks of their own


def support(text, memory, run_ahead):
    slots = memory.setdefault("slots", {})
    if text == "where is my order":
        slots["awaiting"] = "pin"
        return ["Sure. What's your PIN?"], {"intent": "order_status", "memory": memory}
    if "four" in text or text == "1234":
        if run_ahead:
            return None  # checking a PIN needs a tool: never run ahead
        slots.pop("awaiting", None)
        memory["authenticated"] = True
        return ["Thanks, you're verified."], {"intent": "authenticate", "memory": memory, "sensitive": True}
    who = "verified" if memory["authenticated"] else "guest"
    return [f"Balance for a {who} caller."], {"intent": "balance", "memory": memory}


def asr(text):
    async def transcribe(request):
        return {"text": text, "confidence": 0.9}

    return transcribe


async def test_a_pin_in_a_partial_transcript_is_masked_once_the_agent_asked_for_it(tmp_path, monkeypatch):
    ws, actor = FakeWS(), session_actor(FakeDialogue(support), tmp_path, monkeypatch)
    cfg = settings(partial_interval_ms=300, preemptive_ms=100)
    h = handler(ws, actor, cfg, transcribe=asr("One, two, three, four."))
    task = asyncio.create_task(h.run())
    await ws.idle()
    mark = len(ws.events)
    ws.text({"type": "text", "text": "where is my order"})
    await ws.wait(lambda: ws.of("agent.text", text="Sure. What's your PIN?"))
    await ws.idle(mark)
    mark = len(ws.events)
    await send(ws, frames(LOUD, 400))  # a Whisper partial after 300 ms of speech
    # it arrives before the pause (one still on its way then is dropped: the run-ahead's supersedes it)
    await ws.wait(lambda: [e for e in ws.events[mark:] if e["type"] == "transcript" and not e["final"]])
    await send(ws, frames(FRAME, 160))  # a pause: the run-ahead's partial
    await send(ws, frames(LOUD, 100) + frames(FRAME, 900))  # the caller goes on, then stops
    await ws.wait(lambda: ws.of("transcript", final=True, turn_id=2))
    partials = [e["text"] for e in ws.events[mark:] if e["type"] == "transcript" and not e["final"]]
    assert len(partials) >= 2, partials  # both kinds were sent ...
    assert not [p for p in partials if NUMBERISH.search(p)], partials  # ... and none carries a digit
    assert ws.of("transcript", final=True, turn_id=2)[0]["text"] == "[PIN]"
    await ws.wait(lambda: ws.of("agent.text", text="Thanks, you're verified."))
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


def test_number_runs_are_masked_whole():
    assert mask_number_runs("It's one, two, three") == "It's [PIN]"
    assert mask_number_runs("1 2 3 4 please") == "[PIN] please"
    assert mask_number_runs("one two three for") == "[PIN]"
    assert mask_number_runs("I want to check it for you") == "I want to check it for you"


async def test_a_turn_run_ahead_is_recomputed_when_a_typed_turn_changed_the_memory(tmp_path, monkeypatch):
    """The caller pauses (the reply is prepared as a guest), types their PIN, then the pause
    becomes the endpoint: the prepared reply is stale and must not undo the authentication."""
    dialogue = FakeDialogue(support)
    ws, actor = FakeWS(), session_actor(dialogue, tmp_path, monkeypatch)
    h = handler(ws, actor, settings(preemptive_ms=100), transcribe=asr("what's my balance"))
    task = asyncio.create_task(h.run())
    await ws.idle()
    await send(ws, frames(LOUD, 300) + frames(FRAME, 160))
    await asyncio.wait_for(dialogue.prepared.wait(), 1)  # the reply was prepared during the pause
    await asyncio.sleep(0.05)
    ws.text({"type": "text", "text": "1234"})
    await ws.wait(lambda: ws.of("agent.text", text="Thanks, you're verified."))
    await send(ws, frames(FRAME, 1700))  # the endpoint, whatever the pause was judged (1.5 s at most)
    await ws.wait(lambda: ws.of("turn.metrics", turn_id=2))
    said = [e["text"] for e in ws.of("agent.text")]
    assert "Balance for a verified caller." in said and "Balance for a guest caller." not in said, said
    assert ws.of("turn.metrics", turn_id=2)[0]["preempted"] == "transcript"  # only its ASR was used
    state = actor.obj._engine.state
    assert state.authenticated and [t.source for t in state.turns] == ["greeting", "text", "speech"]
    ws.text({"type": "hangup"})
    assert await asyncio.wait_for(task, 2) == "hangup"


def test_the_engine_commits_a_prepared_turn_only_over_the_version_it_read(tmp_path):
    engine = SessionEngine(SessionStore(tmp_path / "s.db"), max_turns=50)
    engine.start("s1", "tester", "en-US")
    read = engine.version
    guest = TurnSummary(memory={**engine.memory(), "authenticated": False})

    def prepared(version: int, turn_id: int) -> TurnRecord:
        sentences = ["Balance for a guest caller."]
        said = "what's my balance"
        return TurnRecord(
            turn_id=turn_id, source="speech", transcript=said, sentences=sentences, summary=guest, read_version=version
        )

    signed_in = TurnSummary(memory={**engine.memory(), "authenticated": True})
    engine.record_turn(TurnRecord(turn_id=0, source="text", transcript="1234", summary=signed_in))  # a typed turn
    assert engine.record_turn(prepared(read, 1)).stale  # ... makes the turn run before it stale
    assert engine.state.authenticated and len(engine.state.turns) == 1
    recorded = engine.record_turn(prepared(engine.version, 1))
    assert not recorded.stale and engine.state.turns[-1].reply == ["Balance for a guest caller."]
