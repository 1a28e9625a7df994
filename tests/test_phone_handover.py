"""A phone call across a drain, in-process (serve_app/phone/handover.py): the drained call is recorded under
its CallSid before the stream closes, Twilio's redirect finds it and opens a stream that resumes it, with no
second greeting; any other end of the call makes the redirect hang up; a replayed or forged redirect, or a
forged stream, takes no one's call over. tests/test_twilio.py runs it on the platform across a redeploy."""

from __future__ import annotations

import asyncio

from twilio.request_validator import RequestValidator

from models.protocol import CloseCode
from serve_app.conversation.call import Call
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines
from serve_app.phone import webhook
from serve_app.phone.handover import Handover, MemoryBoard, MovingLine
from tests.call_fakes import FakeClock, FakeDialogue, LoudVAD, fresh_actor, settings
from tests.test_phone_line import CALL, PUBLIC, SECRET, TwilioSide, webhook_client
from tests.twilio_caller import stream_of

NUMBER = "+15550100001"
RUNG = {"caller": NUMBER, "token": webhook.stream_token(SECRET, CALL, NUMBER)}  # the first ring's stream
REDIRECT = webhook.VOICE_PATH + "?" + webhook.AFTER_STREAM


def redirect(client, form: dict, secret: str | None = SECRET):
    """The POST Twilio makes for the <Redirect> after the stream, signed over the URL with its mark."""
    headers = {}
    if secret is not None:
        headers["X-Twilio-Signature"] = RequestValidator(secret).compute_signature(PUBLIC + REDIRECT, form)
    return client.post(REDIRECT, data=form, headers=headers)


def in_progress(call_sid: str = CALL, caller: str = NUMBER) -> dict:
    return {"CallSid": call_sid, "From": caller, "To": "+15550109999", "CallStatus": "in-progress"}


async def line_from(handover: Handover, custom: dict, call: str = CALL) -> tuple[MovingLine, TwilioSide, object]:
    side = TwilioSide()
    side.start(call=call, **custom)
    line = MovingLine(side, handover, SECRET, max_bad=5)
    return line, side, await line.open()


def phone_call(line, params, actor, dialogue, opened_context, resume_token, resumed: bool) -> Call:
    async def no_asr(request):
        return {"text": "", "confidence": 0.0}

    async def tts(text: str, rate: int, locale: str = "en-US", first: bool = False):
        for _ in range(3):
            yield bytes(rate // 10 * 2)

    cfg = settings(playback_lead_ms=200, output_frame_ms=20)
    session = SessionClient(actor, dialogue, opened_context, Deadlines.from_settings(cfg))
    return Call(line, params, session, no_asr, tts, LoudVAD(), cfg, resume_token=resume_token, resumed=resumed)


async def until(predicate, timeout: float = 5.0) -> None:
    async def wait():
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


async def test_a_drained_phone_call_is_resumed_through_the_redirect_with_its_turns_and_no_second_greeting(
    tmp_path, monkeypatch
):
    dialogue = FakeDialogue(lambda text, memory, run_ahead: ([f"You keyed {len(text)} digits."], {}))
    actor = fresh_actor(tmp_path, monkeypatch)
    actor.obj._engine.start("s1", "15550100001", "en-US")
    token = actor.obj._engine.issue_token()
    board = MemoryBoard()
    handover = Handover(board, 30)
    client = webhook_client(PUBLIC, SECRET, handover)
    line, side, params = await line_from(handover, RUNG)
    call = phone_call(line, params, actor, dialogue, actor.obj._engine.context(), token, resumed=False)
    running = asyncio.create_task(call.run())
    await until(lambda: side.of("mark"))  # the greeting played
    side.dtmf("1234#")
    await until(lambda: dialogue.requests and len(side.of("mark")) >= 2)
    call.drain(5.0)
    assert await asyncio.wait_for(running, 5) == "draining" and call.held
    assert side.closed[0] == CloseCode.SERVICE_RESTART  # our close: Twilio goes on to the <Redirect>
    assert list(board) == [CALL]

    answer = redirect(client, in_progress())
    url, custom = stream_of(answer.text)
    assert url == "wss://voice.example.com/twilio/stream" and custom["resume"] == "1" and custom["caller"] == NUMBER
    assert "<Redirect" in answer.text  # a second drain finds its way back too
    assert redirect(client, in_progress()).text == answer.text  # the webhook only looks: a lost stream retries

    line2, side2, params2 = await line_from(handover, custom)
    assert params2 is not None and params2.resume and params2.caller_id == "15550100001"
    assert not board  # the stream took the hand-over: single use
    assert "<Hangup />" in redirect(client, in_progress()).text  # a replay of the redirect: nothing to resume
    again = await line_from(handover, custom)
    assert again[2] is None and again[1].closed[0] == CloseCode.POLICY  # a replayed stream: nothing held

    opened = await actor.resume.remote(params2.resume, params2.caller_id)  # what Resumption.take asks the actor
    assert opened is not None
    call2 = phone_call(line2, params2, actor, dialogue, opened.context, opened.resume_token, resumed=True)
    running = asyncio.create_task(call2.run())
    side2.dtmf("42#")
    await until(lambda: len(dialogue.requests) == 2 and side2.of("mark"))
    side2.put({"event": "stop", "streamSid": side2.of("mark")[0]["streamSid"], "stop": {"callSid": CALL}})
    assert await asyncio.wait_for(running, 5) == "hangup"
    turns = actor.obj._engine.state.turns
    assert [t.source for t in turns].count("greeting") == 1, [(t.turn_id, t.source) for t in turns]
    assert [t.transcript for t in turns if t.source == "text"] == ["1234", "42"]
    assert "<Hangup />" in redirect(client, in_progress()).text  # the caller's stop: no hand-over


async def test_a_call_the_platform_ended_otherwise_hangs_up_at_the_redirect(tmp_path, monkeypatch):
    dialogue = FakeDialogue(lambda text, memory, run_ahead: (["Goodbye."], {}))
    actor = fresh_actor(tmp_path, monkeypatch)
    actor.obj._engine.start("s1", "15550100001", "en-US")
    board = MemoryBoard()
    handover = Handover(board, 30)
    line, side, params = await line_from(handover, RUNG)
    call = phone_call(line, params, actor, dialogue, actor.obj._engine.context(), "s1.x", resumed=False)
    running = asyncio.create_task(call.run())
    await until(lambda: side.of("mark"))
    for _ in range(6):  # too many bad messages: the platform ends the call
        side.put("{not json")
    assert await asyncio.wait_for(running, 5) == "hangup" and side.closed is not None
    line, side, params = await line_from(handover, RUNG)
    call = phone_call(line, params, actor, dialogue, actor.obj._engine.context(), "s1.x", resumed=True)
    call.finish("escalated")  # any end but a drain (an agent's hang-up, a policy's end, an error)
    assert await asyncio.wait_for(call.run(), 5) == "escalated"
    assert not board
    answer = redirect(webhook_client(PUBLIC, SECRET, handover), in_progress())
    assert answer.status_code == 200 and "<Hangup />" in answer.text and "<Connect>" not in answer.text


async def test_a_forged_or_replayed_redirect_or_stream_takes_over_no_one_elses_call():
    clock = FakeClock(1000.0)
    board = MemoryBoard()
    handover = Handover(board, 10, clock)
    await handover.record(CALL, "15550100001", "s1.secret")
    client = webhook_client(PUBLIC, SECRET, handover)
    other = "CA" + "9" * 32
    assert redirect(client, in_progress(), secret=None).status_code == 403  # unsigned
    assert redirect(client, in_progress(), secret="another-accounts-token").status_code == 403
    assert "<Hangup />" in redirect(client, in_progress(call_sid=other)).text  # another call: none held for it
    assert "<Hangup />" in redirect(client, in_progress(caller="+15550100002")).text  # not this call's caller
    # Streams: the first ring's token is not a resume's; a resume's is bound to its call and caller.
    plain = webhook.stream_token(SECRET, CALL, NUMBER)
    resume = webhook.stream_token(SECRET, CALL, NUMBER, "1")
    for custom, call in [
        ({"caller": NUMBER, "token": plain, "resume": "1"}, CALL),
        ({"caller": NUMBER, "token": resume, "resume": "1"}, other),
        ({"caller": "+15550100002", "token": resume, "resume": "1"}, CALL),
    ]:
        line, side, params = await line_from(handover, custom, call)
        assert params is None and side.closed[0] == CloseCode.POLICY, custom
    assert list(board) == [CALL]  # none of them touched the held call
    clock.t += 11  # past the resume window: the record is stale
    assert "<Hangup />" in redirect(client, in_progress()).text
    line, side, params = await line_from(handover, {"caller": NUMBER, "token": resume, "resume": "1"})
    assert params is None
    await handover.record(other, "15550100002", "s2.secret")  # the next hand-over sweeps the stale one
    assert list(board) == [other]


async def test_the_stand_in_follows_the_redirect_into_the_resumed_call_over_real_sockets(tmp_path, monkeypatch):
    """tests/twilio_caller.py's Twilio behaviour (the <Redirect> after a stream the platform closed) against
    the webhook and the line on a real server (uvicorn), the Call on fakes: what the platform test relies on."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route, WebSocketRoute

    from tests.twilio_caller import Follow, TwilioCaller, ring

    dialogue = FakeDialogue(lambda text, memory, run_ahead: ([f"You keyed {len(text)} digits."], {}))
    actor = fresh_actor(tmp_path, monkeypatch)
    actor.obj._engine.start("s1", "15550100001", "en-US")
    first_token = actor.obj._engine.issue_token()
    handover, cfg, calls = Handover(MemoryBoard(), 30), settings(public_url=PUBLIC, twilio_auth_token=SECRET), []

    async def voice(request):
        return await webhook.answer(request, cfg, handover)

    async def stream(ws):
        line = MovingLine(ws, handover, SECRET)
        params = await line.open()
        if params is None:
            return
        opened = None if params.resume is None else await actor.resume.remote(params.resume, params.caller_id)
        context = actor.obj._engine.context() if opened is None else opened.context
        token = first_token if opened is None else opened.resume_token
        calls.append(phone_call(line, params, actor, dialogue, context, token, resumed=opened is not None))
        await calls[-1].run()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    routes = [Route(webhook.VOICE_PATH, voice, methods=["POST"]), WebSocketRoute(webhook.STREAM_PATH, stream)]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        http, form = f"http://127.0.0.1:{port}", in_progress() | {"CallStatus": "ringing"}
        status, twiml = await asyncio.to_thread(ring, http, PUBLIC, SECRET, form)
        assert status == 200, twiml
        follow = Follow(http, SECRET, form, twiml)
        phone = TwilioCaller(f"ws://127.0.0.1:{port}{webhook.STREAM_PATH}", CALL, stream_of(twiml)[1], follow)
        await phone.connect()
        await phone.silence_until(lambda: phone.quiet_for(0.3), 20)  # the greeting
        greeting = len(phone.agent_audio)
        await phone.dtmf("1234#")
        await phone.silence_until(lambda: len(phone.agent_audio) > greeting and phone.quiet_for(0.3), 10)
        calls[0].drain(5.0)
        # redirected, on a new stream, and the server has resumed the call on it
        await phone.silence_until(lambda: len(phone.streams) == 2 and len(calls) == 2, 10)
        assert stream_of(follow.answers[0])[1]["resume"] == "1" and calls[1].resumed
        before = len(phone.agent_audio)
        await phone.dtmf("42#")
        await phone.silence_until(lambda: len(phone.agent_audio) > before and phone.quiet_for(0.3), 10)
        await phone.stop()
        assert phone.closed_at is not None and len(follow.answers) == 1  # a hang-up: Twilio follows no verb
        turns = actor.obj._engine.state.turns
        assert [t.source for t in turns].count("greeting") == 1, [(t.turn_id, t.source) for t in turns]
        assert [t.transcript for t in turns if t.source == "text"] == ["1234", "42"]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 5)
