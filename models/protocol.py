"""Wire protocol v1 of `/ws/call` (documented in docs/protocol.md).

Parsing here is pure so every bad input has one tested answer: a `ProtocolError` that
says whether the call can go on (an `error` event) or must close (and with which code).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 2000
# \Z, not $: "$" also matches before a final newline, which would let "alice\n" through.
CALLER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
RESUME_TOKEN_RE = re.compile(r"^[0-9a-f]{32}\.[A-Za-z0-9_-]{16,64}\Z")  # session id . secret
LOCALE_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*+\Z")  # possessive: '-' parts are read once
SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class CloseCode:
    NORMAL = 1000
    POLICY = 1008
    INVALID_PAYLOAD = 1007
    TOO_BIG = 1009
    SERVER_ERROR = 1011
    SERVICE_RESTART = 1012  # draining: resume with the token in session.ended
    AT_CAPACITY = 1013


class ProtocolError(Exception):
    """Bad client input. `close_code` None means: send an `error` event and go on."""

    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# --- client -> server -------------------------------------------------------


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextMessage(_ClientMessage):
    type: Literal["text"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class HangupMessage(_ClientMessage):
    type: Literal["hangup"]


ClientMessage = TextMessage | HangupMessage
_CLIENT_TYPES = {"text": TextMessage, "hangup": HangupMessage}


def parse_client_text(raw: str) -> ClientMessage:
    """Parse one client text frame; unknown fields are ignored, unknown types are not."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError("message_too_big", f"text frame over {MAX_FRAME_BYTES} bytes", CloseCode.TOO_BIG)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("invalid_json", "text frames must be one JSON object") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "text frames must be a JSON object with a 'type'")
    kind = data.get("type")
    model = _CLIENT_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected one of {sorted(_CLIENT_TYPES)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        raise ProtocolError("invalid_message", f"{kind}: {where}: {first['msg']}") from None


def check_audio_frame(frame: bytes) -> None:
    """Client audio is PCM s16le mono: even length, at most MAX_FRAME_BYTES."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(
            "frame_too_big", f"binary frame of {len(frame)} bytes; the limit is {MAX_FRAME_BYTES}", CloseCode.TOO_BIG
        )
    if len(frame) % 2:
        raise ProtocolError("invalid_audio", f"binary frame of {len(frame)} bytes: PCM s16le needs an even length")


class ConnectParams(BaseModel):
    caller_id: str
    locale: str = "en-US"
    sample_rate: int = 16000
    output_sample_rate: int
    resume: str | None = None  # the resume token of a dropped call (from its session.started)


def parse_connect(query: dict[str, str]) -> ConnectParams:
    """Validate the `/ws/call` query string; errors are refused before `session.started`."""
    caller_id = query.get("caller_id")
    if not caller_id or not CALLER_ID_RE.match(caller_id):
        raise ProtocolError("invalid_caller_id", "caller_id is required: 1 to 64 of [A-Za-z0-9_.-]", CloseCode.POLICY)
    locale = query.get("locale") or "en-US"
    if not LOCALE_RE.match(locale):
        raise ProtocolError(
            "invalid_locale", f"locale {locale[:32]!r} is not a language tag like en-US", CloseCode.POLICY
        )
    rates = {}
    for key, default in (("sample_rate", "16000"), ("output_sample_rate", None)):
        raw = query.get(key) or default or str(rates["sample_rate"])
        try:
            rate = int(raw)
        except ValueError:
            rate = -1
        if rate not in SUPPORTED_SAMPLE_RATES:
            raise ProtocolError(
                "unsupported_sample_rate",
                f"{key} {raw[:16]!r} is not supported; use one of {list(SUPPORTED_SAMPLE_RATES)}",
                CloseCode.POLICY,
            )
        rates[key] = rate
    resume = query.get("resume") or None
    if resume is not None and not RESUME_TOKEN_RE.match(resume):
        raise ProtocolError("invalid_resume", "resume is not a resume token from session.started", CloseCode.POLICY)
    return ConnectParams(caller_id=caller_id, locale=locale, resume=resume, **rates)


# --- server -> client -------------------------------------------------------


def event(kind: str, **fields: Any) -> str:
    """Serialize a server event; `type` always comes first for humans reading logs."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def session_started(
    session_id: str, input_rate: int, output_rate: int, resume_token: str | None = None, resumed: bool = False
) -> str:
    """`resume_token`: reconnect with `resume=TOKEN` after a drop (single use; a new one comes
    with every session.started); `resumed`: this is the same call, taken up again."""
    extra = {"resume_token": resume_token} if resume_token else {}
    return event(
        "session.started",
        session_id=session_id,
        input_sample_rate=input_rate,
        output_sample_rate=output_rate,
        protocol=PROTOCOL_VERSION,
        resumed=resumed,
        **extra,
    )


def error_event(code: str, message: str, suppressed: int = 0) -> str:
    """`suppressed`: errors of this code held back since the last one sent (rate limit)."""
    if suppressed:
        return event("error", code=code, message=message, suppressed=suppressed)
    return event("error", code=code, message=message)
