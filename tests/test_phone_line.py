"""The phone line in-process: the μ-law codec, Twilio Media Streams' messages both ways, the keypad,
marks bounding what was heard, bad input, and the webhook's TwiML and signatures. A whole Call runs over
the line with the call fakes (tests/call_fakes.py); tests/test_twilio.py runs it on the platform."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import warnings

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from common.mulaw import pcm16_to_ulaw, ulaw_to_pcm16
from models.protocol import ConnectParams
from serve_app.conversation.call import Call
from serve_app.conversation.pacer import AudioPacer
from serve_app.conversation.session_client import SessionClient
from serve_app.deadlines import Deadlines
from serve_app.phone import webhook
from serve_app.phone.handover import Handover, MemoryBoard
from serve_app.phone.line import PhoneLine, caller_id_of
from tests.call_fakes import FakeDialogue, LoudVAD, session_actor, settings

STREAM, CALL = "MZ" + "0" * 32, "CA" + "1" * 32
SECRET = "twilio-test-auth-token"
PUBLIC = "https://voice.example.com"


class TwilioSide:
    """The carrier's end of the socket: it speaks Media Streams and records what the platform sends."""

    def __init__(self):
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.accepted = False
        self.closed: tuple[int, str] | None = None

    async def accept(self) -> None:
        self.accepted = True

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def put(self, msg) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": msg if isinstance(msg, str) else json.dumps(msg)})

    def start(self, caller: str = "+15550100001", token: str | None = None, call: str = CALL, **more: str) -> None:
        custom = {"caller": caller} | ({"token": token} if token is not None else {}) | more
        self.put({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.put(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM,
                "start": {
                    "accountSid": "AC" + "2" * 32,
                    "streamSid": STREAM,
                    "callSid": call,
                    "tracks": ["inbound"],
                    "customParameters": custom,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    def media(self, ulaw: bytes) -> None:
        payload = base64.b64encode(ulaw).decode()
        self.put({"event": "media", "streamSid": STREAM, "media": {"track": "inbound", "payload": payload}})

    def dtmf(self, keys: str) -> None:
        for key in keys:
            self.put({"event": "dtmf", "streamSid": STREAM, "dtmf": {"track": "inbound_track", "digit": key}})

    def of(self, event: str) -> list[dict]:
        return [m for m in self.sent if m["event"] == event]


async def opened(**kw) -> tuple[PhoneLine, TwilioSide]:
    side = TwilioSide()
    side.start(**kw)
    line = PhoneLine(side, max_bad=5)
    assert await line.open() is not None
    return line, side


def test_mulaw_matches_audioop_on_every_sample_and_round_trips_speech():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    every = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    assert pcm16_to_ulaw(every) == audioop.lin2ulaw(every, 2)
    assert ulaw_to_pcm16(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 12000).astype(np.int16)
    back = np.frombuffer(ulaw_to_pcm16(pcm16_to_ulaw(tone.tobytes())), np.int16)
    snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((tone - back).astype(float) ** 2))
    assert snr > 30, snr  # G.711's ~38 dB on a loud tone


def test_a_callers_number_becomes_the_caller_id_and_a_withheld_one_the_calls_id():
    assert caller_id_of("+15550100001", CALL) == "15550100001"
    assert caller_id_of("demo-alice", CALL) == "demo-alice"
    assert caller_id_of("anonymous", CALL) == CALL
    assert caller_id_of("client:bob", CALL) == CALL


async def test_start_gives_the_calls_parameters_and_media_before_it_is_dropped(caplog):
    side = TwilioSide()
    side.media(b"\xff" * 160)  # before start: logged, ignored
    side.start()
    line = PhoneLine(side)
    with caplog.at_level(logging.INFO, "serve_app.phone"):
        params = await line.open()
    assert params == ConnectParams(caller_id="15550100001", sample_rate=8000, output_sample_rate=8000)
    assert side.accepted and line.stream_sid == STREAM and line.call_sid == CALL
    assert "media before start, ignored" in caplog.text


async def test_a_stream_in_another_format_or_without_start_is_refused():
    side = TwilioSide()
    side.put({"event": "start", "start": {"streamSid": STREAM, "callSid": CALL, "mediaFormat": {"encoding": "L16"}}})
    assert await PhoneLine(side).open() is None and side.closed[0] == 1008
    side = TwilioSide()
    side.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
    assert await PhoneLine(side).open() is None


async def test_with_an_auth_token_the_stream_needs_the_webhooks_token():
    for token, ok in [(None, False), ("0" * 32, False), (webhook.stream_token(SECRET, CALL, "+15550100001"), True)]:
        side = TwilioSide()
        side.start(token=token)
        assert (await PhoneLine(side, SECRET).open() is not None) is ok, token


async def test_media_decodes_to_pcm16_at_8khz():
    line, side = await opened()
    ulaw = pcm16_to_ulaw((np.arange(160, dtype=np.int16) * 100).tobytes())
    side.media(ulaw)
    msg = await line.receive()
    assert msg["bytes"] == ulaw_to_pcm16(ulaw) and len(msg["bytes"]) == 320


async def test_keypad_digits_until_hash_are_one_typed_turn_never_logged(caplog):
    line, side = await opened()
    side.dtmf("9*1234#")  # `*` starts the entry over
    side.dtmf("#")  # nothing keyed: no turn
    side.put({"event": "stop", "streamSid": STREAM, "stop": {"accountSid": "AC", "callSid": CALL}})
    with caplog.at_level(logging.DEBUG):
        first = await line.receive()
        second = await line.receive()
    assert json.loads(first["text"]) == {"type": "text", "text": "1234"}
    assert json.loads(second["text"]) == {"type": "hangup"} and line.hung_up
    assert "1234" not in caplog.text and "4 digits" in caplog.text


async def test_bad_messages_are_logged_and_skipped_then_too_many_end_the_call(caplog):
    line, side = await opened()
    bad = [
        "{not json",
        json.dumps({"event": "teleport"}),
        json.dumps({"event": "media", "media": {"payload": "@@@not base64@@@"}}),
        json.dumps({"event": "dtmf", "dtmf": {"digit": "twelve"}}),
    ]
    for raw in bad:
        side.put(raw)
    side.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x00\x01"})
    side.media(b"\xff" * 160)
    with caplog.at_level(logging.INFO, "serve_app.phone"):
        msg = await line.receive()  # the call goes on: the next good media arrives
    assert len(msg["bytes"]) == 320 and line.bad_messages == 5
    for needle in ("malformed JSON", "unknown event 'teleport'", "not base64", "keypad digit", "binary frame"):
        assert needle in caplog.text
    side.put("[]")  # the sixth: over max_bad
    assert json.loads((await line.receive())["text"]) == {"type": "hangup"}


async def test_a_stream_that_drops_without_stop_is_a_hangup_then_gone():
    line, side = await opened()
    side.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
    assert json.loads((await line.receive())["text"]) == {"type": "hangup"}
    assert (await line.receive())["type"] == "websocket.disconnect"


async def test_agent_audio_goes_as_mulaw_media_with_a_mark_per_sentence_and_clear_at_barge_in():
    line, side = await opened()
    pcm = (np.arange(800, dtype=np.int16) * 30).tobytes()  # 100 ms
    await line.send_text(json.dumps({"type": "agent.text", "turn_id": 1, "text": "One."}))
    await line.send_bytes(pcm)
    await line.send_text(json.dumps({"type": "agent.text", "turn_id": 1, "text": "Two."}))
    await line.send_bytes(pcm)
    await line.send_text(json.dumps({"type": "agent.state", "state": "listening"}))
    media = side.of("media")
    assert [m["streamSid"] for m in media] == [STREAM, STREAM]
    assert base64.b64decode(media[0]["media"]["payload"]) == pcm16_to_ulaw(pcm)
    marks = [m["mark"]["name"] for m in side.of("mark")]
    assert [m["event"] for m in side.sent] == ["media", "mark", "media", "mark"]
    assert line.heard_bounds() == (0, 1600)  # nothing back yet: at most the first sentence
    side.put({"event": "mark", "streamSid": STREAM, "mark": {"name": marks[0]}})
    side.put({"event": "mark", "streamSid": STREAM, "mark": {"name": "never-sent"}})
    side.media(b"\xff" * 160)
    await line.receive()
    assert line.heard_bounds() == (1600, 3200) and line.marks_heard == [marks[0]]
    await line.send_bytes(pcm)
    await line.send_text(json.dumps({"type": "audio.clear", "turn_id": 1}))
    assert side.sent[-1] == {"event": "clear", "streamSid": STREAM}
    side.put({"event": "mark", "streamSid": STREAM, "mark": {"name": marks[1]}})  # returned by the clear
    side.media(b"\xff" * 160)
    await line.receive()
    assert line.marks_heard == [marks[0]] and line.heard_bounds() == (1600, 4800)


def test_the_pacers_estimate_is_bounded_by_the_marks():
    async def send(frame):
        pass

    bounds = (0, 4800)
    pacer = AudioPacer(send, 8000, max_lead_s=0.4, frame_ms=100, heard=lambda: bounds)
    pacer.bytes_sent = 16000  # 1 s sent, nothing in the lead: the estimate says all was played
    assert pacer.played_s(0) == pytest.approx(0.3)  # a mark still out at 300 ms: at most that
    bounds = (12800, 16000)
    assert pacer.played_s(0) == pytest.approx(1.0)


def phone_call(line: PhoneLine, actor, cfg) -> Call:
    async def no_asr(request):
        return {"text": "", "confidence": 0.0}

    async def tts(text: str, rate: int, locale: str = "en-US", first: bool = False):
        for _ in range(30):  # three seconds of audio a sentence, 100 ms at a time
            yield bytes(rate // 10 * 2)

    session = SessionClient(actor, actor.dialogue, actor.obj._engine.context(), Deadlines.from_settings(cfg))
    return Call(line, line.params, session, no_asr, tts, LoudVAD(), cfg)


async def test_a_phone_call_runs_through_the_call_keypad_pin_and_barge_in(tmp_path, monkeypatch, caplog):
    def replies(text, memory, run_ahead):
        return (["Your PIN is verified."], {}) if text == "1234" else (["A long answer."], {})

    dialogue = FakeDialogue(replies)
    actor = session_actor(dialogue, tmp_path, monkeypatch)
    line, side = await opened(caller="demo-alice")
    call = phone_call(line, actor, settings(playback_lead_ms=200, output_frame_ms=20, barge_in_min_ms=60))
    running = asyncio.create_task(call.run())
    for _ in range(400):  # the greeting plays
        await asyncio.sleep(0.02)
        if side.of("mark"):
            break
    assert side.of("media") and side.of("mark")
    side.dtmf("1234#")
    for _ in range(200):
        await asyncio.sleep(0.02)
        if dialogue.requests:
            break
    assert dialogue.requests[0].transcript == "1234"
    await asyncio.sleep(0.3)  # the reply is playing
    loud = pcm16_to_ulaw(np.full(160, 8000, dtype=np.int16).tobytes())
    for _ in range(40):
        side.media(loud)
        await asyncio.sleep(0.02)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if side.of("clear"):
            break
    assert side.of("clear"), [m["event"] for m in side.sent]
    side.put({"event": "stop", "streamSid": STREAM, "stop": {"callSid": CALL}})
    assert await asyncio.wait_for(running, 5) == "hangup"
    assert "1234" not in caplog.text


def webhook_client(public_url: str | None, token: str | None, handover: Handover | None = None) -> TestClient:
    cfg = settings(public_url=public_url, twilio_auth_token=token)
    handover = handover or Handover(MemoryBoard(), 30)

    async def route(request):
        return await webhook.answer(request, cfg, handover)

    return TestClient(Starlette(routes=[Route(webhook.VOICE_PATH, route, methods=["POST"])]))


def test_the_webhook_answers_twiml_connecting_the_stream_with_the_callers_number():
    form = {"CallSid": CALL, "From": "+15550100001", "To": "+15550109999"}
    url = PUBLIC + webhook.VOICE_PATH
    good = RequestValidator(SECRET).compute_signature(url, form)
    client = webhook_client(PUBLIC, SECRET)
    ok = client.post(webhook.VOICE_PATH, data=form, headers={"X-Twilio-Signature": good})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/xml")
    assert '<Connect><Stream url="wss://voice.example.com/twilio/stream">' in ok.text
    assert '<Parameter name="caller" value="+15550100001" />' in ok.text
    assert f'<Parameter name="token" value="{webhook.stream_token(SECRET, CALL, "+15550100001")}" />' in ok.text
    # Reached only when the platform closes the stream: a caller's hang-up ends the call at Twilio.
    assert '</Connect><Redirect method="POST">https://voice.example.com/twilio/voice?after=stream</Redirect>' in ok.text
    assert client.post(webhook.VOICE_PATH, data=form).status_code == 403
    assert (
        client.post(webhook.VOICE_PATH, data=form, headers={"X-Twilio-Signature": good[:-4] + "AAA="}).status_code
        == 403
    )
    tampered = {**form, "From": "+15550100002"}
    assert client.post(webhook.VOICE_PATH, data=tampered, headers={"X-Twilio-Signature": good}).status_code == 403
    unsigned = webhook_client(PUBLIC, None).post(webhook.VOICE_PATH, data=form)
    assert unsigned.status_code == 200 and 'name="token"' not in unsigned.text
    assert webhook_client(None, None).post(webhook.VOICE_PATH, data=form).status_code == 404


def test_the_public_urls_host_is_allowed_beside_the_configured_ones():
    from serve_app.http_guard import Guard

    async def ok(request):
        return PlainTextResponse("ok")

    def client(public_url):
        app = Starlette(routes=[Route("/", ok)])
        app.add_middleware(Guard, settings=lambda: settings(public_url=public_url))
        return TestClient(app)

    assert client(PUBLIC).get("/", headers={"Host": "voice.example.com"}).status_code == 200
    assert client(None).get("/", headers={"Host": "voice.example.com"}).status_code == 421
    assert client(PUBLIC).get("/", headers={"Host": "evil.example.com"}).status_code == 421


@pytest.mark.parametrize("bad", ["voice.example.com", "ftp://voice.example.com", "https://", "https://h/?q=1"])
def test_a_bad_public_url_fails_at_start_naming_the_variable(monkeypatch, bad):
    from common.config import ConfigError, load_settings

    monkeypatch.setenv("VOICE_PUBLIC_URL", bad)
    with pytest.raises(ConfigError, match="VOICE_PUBLIC_URL"):
        load_settings()
    monkeypatch.setenv("VOICE_PUBLIC_URL", "https://voice.example.com/")
    assert load_settings().public_url == "https://voice.example.com"


async def test_the_twilio_stand_in_and_the_line_agree_over_a_real_websocket(tmp_path, monkeypatch):
    """tests/twilio_caller.py against the line on a real server (uvicorn), the Call on fakes: what the
    platform tests rely on, checked without Ray."""
    import socket

    import uvicorn
    from starlette.routing import WebSocketRoute

    from tests.twilio_caller import TwilioCaller

    dialogue = FakeDialogue(lambda text, memory, run_ahead: ([f"You keyed {len(text)} digits."], {}))
    actor = session_actor(dialogue, tmp_path, monkeypatch)
    lines: list[PhoneLine] = []

    async def stream(ws):
        line = PhoneLine(ws)
        lines.append(line)
        if await line.open() is not None:
            await phone_call(line, actor, settings(playback_lead_ms=200, barge_in_min_ms=60)).run()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=[WebSocketRoute(webhook.STREAM_PATH, stream)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        phone = TwilioCaller(f"ws://127.0.0.1:{port}{webhook.STREAM_PATH}", CALL, {"caller": "+15550100001"})
        await phone.connect()
        await phone.silence_until(lambda: phone.quiet_for(0.5), 20)  # the greeting, 3 s of μ-law
        assert len(phone.agent_audio) == 3 * 16000 and phone.marks_sent
        assert lines[0].params.caller_id == "15550100001" and lines[0].marks_heard == phone.marks_sent
        await phone.dtmf("1234#")
        await phone.silence_until(lambda: bool(dialogue.requests) and len(phone.agent_audio) > 3 * 16000, 10)
        assert dialogue.requests[0].transcript == "1234"
        await phone.play(np.full(8000, 8000, dtype=np.int16).tobytes(), 8000)  # a second of speech over it
        assert phone.clears
        await phone.stop()
        assert phone.closed_at is not None and lines[0].hung_up
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 5)
