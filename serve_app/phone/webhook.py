"""`POST /twilio/voice`: Twilio's webhook for a ringing call, answered with TwiML that connects the call to
this platform's media stream (`<Connect><Stream>`, bidirectional), the caller's number as a stream parameter.

Signatures: with VOICE_TWILIO_AUTH_TOKEN set, Twilio signs every webhook over the URL it requested (our
public URL, not the address the TLS proxy forwarded to) and the form's fields; a request whose
X-Twilio-Signature does not match gets 403. The media stream's WebSocket carries no such signature, so the
webhook hands the stream a token (an HMAC of the call's id and number under the same secret) as a second
parameter: a stream that claims a caller the webhook never saw is refused at `start`.

After the stream, a `<Redirect>` back here (`?after=stream`): Twilio reaches it only when the platform closed
the stream. It answers a stream that resumes the call when a drain handed the call over (handover.py), and
`<Hangup/>` otherwise: never a new call, never a second greeting.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from common.config import Settings
from models.protocol import CALLER_ID_RE

if TYPE_CHECKING:
    from serve_app.phone.handover import Handover

log = logging.getLogger(__name__)

VOICE_PATH = "/twilio/voice"
STREAM_PATH = "/twilio/stream"
MAX_FORM_BYTES = 64 * 1024
AFTER_STREAM = "after=stream"  # the redirect's mark: Twilio signs the URL with it
NO_NUMBER = {"", "anonymous", "restricted", "unavailable", "unknown", "private"}


def stream_url(public_url: str) -> str:
    """wss:// (ws:// for a plain http:// base) at the stream's path."""
    scheme, _, rest = public_url.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{STREAM_PATH}"


def caller_id_of(caller: str, call_sid: str) -> str:
    """A number's digits (+15551234567 -> 15551234567), an id as it is; a withheld number: the call's id."""
    number = caller[1:] if caller.startswith("+") else caller
    if caller.lower() not in NO_NUMBER and CALLER_ID_RE.match(number):
        return number
    return call_sid if CALLER_ID_RE.match(call_sid) else "phone-call"


def stream_token(secret: str, call_sid: str, caller: str, resume: str = "") -> str:
    """What the webhook vouches for: this call's id and caller (and a resume's mark), under the Twilio auth
    token."""
    vouched = f"{call_sid}|{caller}" + (f"|resume={resume}" if resume else "")
    return hmac.new(secret.encode(), vouched.encode(), hashlib.sha256).hexdigest()[:32]


def twiml(public_url: str, caller: str, token: str | None, resume: bool = False) -> str:
    """Connect the call to the stream (`resume`: the stream takes up the call a drain handed over), then
    come back here if the platform closes it."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url(public_url))
    stream.parameter(name="caller", value=caller)
    if token is not None:
        stream.parameter(name="token", value=token)
    if resume:
        stream.parameter(name="resume", value="1")
    response.append(connect)
    response.redirect(f"{public_url}{VOICE_PATH}?{AFTER_STREAM}", method="POST")
    return str(response)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


async def answer(request: Request, settings: Settings, handover: Handover) -> Response:
    """The TwiML for a ringing call, or for the redirect after its stream; 404 when phone calls are off,
    403 for a bad signature."""
    if settings.public_url is None:
        return JSONResponse({"detail": "phone calls are off: set VOICE_PUBLIC_URL"}, status_code=404)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return JSONResponse({"detail": "webhook body too large"}, status_code=413)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    secret = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token is not None else ""
    if secret:
        url = settings.public_url + VOICE_PATH + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("x-twilio-signature", "")
        if not signature or not RequestValidator(secret).validate(url, form, signature):
            log.info("refused a Twilio webhook without a valid signature")
            return JSONResponse({"detail": "invalid X-Twilio-Signature"}, status_code=403)
    call_sid, caller = form.get("CallSid", ""), form.get("From", "")
    if request.url.query == AFTER_STREAM:
        if not await handover.waiting(call_sid, caller_id_of(caller, call_sid)):
            log.info("phone call %s: the platform ended the stream; hanging up", call_sid[:40])
            return Response(hangup(), media_type="application/xml")
        log.info("phone call %s: redirected after a drain; resuming on a new stream", call_sid[:40])
        token = stream_token(secret, call_sid, caller, "1") if secret else None
        return Response(twiml(settings.public_url, caller, token, resume=True), media_type="application/xml")
    token = stream_token(secret, call_sid, caller) if secret else None
    log.info("phone call %s ringing from %s", call_sid[:40], caller[:40])  # the number is masked in logs
    return Response(twiml(settings.public_url, caller, token), media_type="application/xml")
