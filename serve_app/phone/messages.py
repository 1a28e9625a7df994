"""Twilio Media Streams' JSON messages (docs: twilio.com/docs/voice/media-streams/websocket-messages).

In: `connected`, `start` (stream and call ids, custom parameters, media format), `media` (base64 μ-law,
8 kHz, 20 ms a message), `dtmf`, `mark` (a mark we sent has played, or a `clear` dropped it), `stop`.
Out: `media`, `mark` and `clear`, each naming the stream. Parsing is pure: a bad message raises
`BadMessage` with a line fit for a log, and the line decides whether the call goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
MAX_MESSAGE_CHARS = 64 * 1024
EVENTS = ("connected", "start", "media", "dtmf", "mark", "stop")


class BadMessage(ValueError):
    """A message that cannot be used: malformed JSON, an unknown event, a bad payload."""


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    custom: dict[str, str] = field(default_factory=dict)


def parse(raw: str) -> tuple[str, dict]:
    """(event, message) of one text frame."""
    if len(raw) > MAX_MESSAGE_CHARS:
        raise BadMessage(f"message of {len(raw)} characters (the limit is {MAX_MESSAGE_CHARS})")
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadMessage("malformed JSON") from None
    if not isinstance(msg, dict):
        raise BadMessage("not a JSON object")
    kind = msg.get("event")
    if kind not in EVENTS:
        raise BadMessage(f"unknown event {str(kind)[:32]!r}")
    return kind, msg


def _part(msg: dict, key: str) -> dict:
    part = msg.get(key)
    if not isinstance(part, dict):
        raise BadMessage(f"{msg.get('event')} without a {key!r} object")
    return part


def start_of(msg: dict) -> Start:
    """The stream's ids and parameters; a media format other than μ-law 8 kHz mono is refused."""
    start = _part(msg, "start")
    stream_sid, call_sid = start.get("streamSid") or msg.get("streamSid"), start.get("callSid")
    if not isinstance(stream_sid, str) or not stream_sid or not isinstance(call_sid, str) or not call_sid:
        raise BadMessage("start without streamSid and callSid")
    media_format = start.get("mediaFormat")
    if media_format != MEDIA_FORMAT:
        raise BadMessage(f"unsupported media format {str(media_format)[:80]} (expected {MEDIA_FORMAT})")
    custom = start.get("customParameters") or {}
    if not isinstance(custom, dict):
        raise BadMessage("customParameters is not an object")
    return Start(stream_sid[:64], call_sid[:64], {str(k)[:64]: str(v)[:256] for k, v in custom.items()})


def media_payload(msg: dict) -> bytes:
    """The μ-law bytes of a `media` message."""
    payload = _part(msg, "media").get("payload")
    if not isinstance(payload, str):
        raise BadMessage("media without a payload")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage("media payload is not base64") from None


def dtmf_digit(msg: dict) -> str:
    digit = _part(msg, "dtmf").get("digit")
    if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
        raise BadMessage("dtmf without a keypad digit")
    return digit


def mark_name(msg: dict) -> str:
    name = _part(msg, "mark").get("name")
    if not isinstance(name, str):
        raise BadMessage("mark without a name")
    return name


def media(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
