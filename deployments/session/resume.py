"""Resume tokens: the way back into a call whose socket dropped.

A token is `<session_id>.<secret>`; only the secret's SHA-256 is stored, bound to the session
and its caller. It is single-use: every resume rotates it. Pure functions, so the rule is
tested without Ray or a socket.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from models.state import SessionState


def new_token(session_id: str) -> tuple[str, str]:
    """A fresh token and the hash to store."""
    secret = secrets.token_urlsafe(24)
    return f"{session_id}.{secret}", _hash(secret)


def session_of(token: str) -> str:
    return token.partition(".")[0]


def refusal(state: SessionState | None, token: str, caller_id: str, now_ms: int, window_s: float) -> str | None:
    """Why `token` may not resume `state` (None: it may). One answer for every bad token
    outside the log, so a caller learns nothing from trying."""
    if state is None:
        return "unknown session"
    if state.ended_at_ms is not None:
        return "session ended"
    if state.dropped_at_ms is None:
        return "session not dropped"
    if now_ms - state.dropped_at_ms > window_s * 1000:
        return "resume window passed"
    if state.caller_id != caller_id:
        return "another caller"
    secret = token.partition(".")[2]
    if state.resume_hash is None or not hmac.compare_digest(state.resume_hash, _hash(secret)):
        return "token used or wrong"
    return None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
