import json

import pytest

from models.protocol import (
    MAX_FRAME_BYTES,
    CloseCode,
    HangupMessage,
    ProtocolError,
    TextMessage,
    check_audio_frame,
    event,
    parse_client_text,
    parse_connect,
    session_started,
)


def test_text_and_hangup_parse_and_ignore_unknown_fields():
    msg = parse_client_text('{"type":"text","text":"hello","extra":1}')
    assert isinstance(msg, TextMessage) and msg.text == "hello"
    assert isinstance(parse_client_text('{"type":"hangup"}'), HangupMessage)


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_message"),
        ('"text"', "invalid_message"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"text":"no type"}', "unknown_type"),
        ('{"type":"text"}', "invalid_message"),
        ('{"type":"text","text":""}', "invalid_message"),
        ('{"type":"text","text":42}', "invalid_message"),
        (json.dumps({"type": "text", "text": "x" * 2001}), "invalid_message"),
        ("[" * 100000, "message_too_big"),
    ],
)
def test_bad_text_frames_get_a_named_error(raw, code):
    with pytest.raises(ProtocolError) as exc:
        parse_client_text(raw)
    assert exc.value.code == code
    assert exc.value.message
    # only an oversized frame ends the call
    assert (exc.value.close_code == CloseCode.TOO_BIG) == (code == "message_too_big")


def test_deeply_nested_json_is_an_error_not_a_crash():
    with pytest.raises(ProtocolError) as exc:
        parse_client_text("[" * 60000 + "]" * 60000)
    assert exc.value.code in ("invalid_json", "message_too_big")


def test_audio_frames():
    check_audio_frame(b"\x00\x01" * 160)
    check_audio_frame(b"\x00" * MAX_FRAME_BYTES)
    with pytest.raises(ProtocolError) as exc:
        check_audio_frame(b"\x00" * 321)
    assert exc.value.code == "invalid_audio" and exc.value.close_code is None
    with pytest.raises(ProtocolError) as exc:
        check_audio_frame(b"\x00" * (MAX_FRAME_BYTES + 2))
    assert exc.value.close_code == CloseCode.TOO_BIG


def test_connect_defaults_and_output_rate_follows_input():
    p = parse_connect({"caller_id": "a.b-c_1"})
    assert (p.locale, p.sample_rate, p.output_sample_rate) == ("en-US", 16000, 16000)
    p = parse_connect({"caller_id": "x", "sample_rate": "48000"})
    assert p.output_sample_rate == 48000
    p = parse_connect({"caller_id": "x", "sample_rate": "8000", "output_sample_rate": "24000"})
    assert (p.sample_rate, p.output_sample_rate) == (8000, 24000)


@pytest.mark.parametrize(
    "query, code",
    [
        ({}, "invalid_caller_id"),
        ({"caller_id": ""}, "invalid_caller_id"),
        ({"caller_id": "a" * 65}, "invalid_caller_id"),
        ({"caller_id": "bad id"}, "invalid_caller_id"),
        ({"caller_id": "x", "sample_rate": "12345"}, "unsupported_sample_rate"),
        ({"caller_id": "x", "sample_rate": "abc"}, "unsupported_sample_rate"),
        ({"caller_id": "x", "output_sample_rate": "1"}, "unsupported_sample_rate"),
        ({"caller_id": "x", "locale": "<script>"}, "invalid_locale"),
    ],
)
def test_bad_connect_is_refused(query, code):
    with pytest.raises(ProtocolError) as exc:
        parse_connect(query)
    assert exc.value.code == code and exc.value.close_code == CloseCode.POLICY


def test_server_events_are_json_with_type_first():
    started = json.loads(session_started("s1", 16000, 22050))
    assert started == {
        "type": "session.started",
        "session_id": "s1",
        "input_sample_rate": 16000,
        "output_sample_rate": 22050,
        "protocol": 1,
        "resumed": False,
    }
    back = json.loads(session_started("s1", 16000, 16000, resume_token="s1.secret", resumed=True))
    assert back["resumed"] is True and back["resume_token"] == "s1.secret"
    assert event("agent.state", state="listening").startswith('{"type":"agent.state"')
