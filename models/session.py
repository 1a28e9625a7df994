"""What a call's Gateway and its session actor say to each other (every message typed).

The Gateway drives the call and streams each reply straight from the Dialogue deployment; the
actor owns the session: it records each turn, applies the dialogue's verdict, checkpoints, and
hands back the `TurnContext` the next turn needs. Session-API commands flow the other way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

from models.dialogue import Exchange, TurnSummary
from models.state import SessionState

TurnSource = Literal["greeting", "speech", "text", "say", "reply", "checkin", "goodbye"]


class SessionSettings(BaseModel):
    """The part of the platform's settings a session actor runs on, validated by the Gateway's
    `Settings` and handed to each actor it starts, so that a process per call does not load the
    settings machinery (pydantic-settings, `.env` parsing) to read seven values."""

    store_path: Path
    store_url: SecretStr | None = None
    state_ttl_s: int
    max_turns: int
    resume_window_s: float
    session_lease_s: float
    session_actor_max_calls: int = 1


class StartSession(BaseModel):
    session_id: str
    caller_id: str
    locale: str = "en-US"


class TurnContext(BaseModel):
    """The session as the next turn needs it; the Gateway keeps the latest one it was given."""

    session_id: str
    caller_id: str
    version: int  # bumped by every change a turn run ahead may have read
    next_turn_id: int
    memory: dict[str, Any]
    history: list[Exchange] = Field(default_factory=list)
    awaiting: str | None = None  # what the agent asked for (`pin` masks partial transcripts)
    over_turn_limit: bool = False


class SessionOpened(BaseModel):
    state: SessionState
    context: TurnContext
    resume_token: str | None = None  # for the caller's session.started: the way back after a drop


class TurnRecord(BaseModel):
    """A turn's words and outcome, sent once its reply stream has closed."""

    turn_id: int
    source: TurnSource
    transcript: str = ""  # as heard; the actor masks it before it is stored
    confidence: float | None = None
    sentences: list[str] = Field(default_factory=list)
    summary: TurnSummary | None = None  # None: the dialogue failed before its verdict
    read_version: int | None = None  # run ahead: the context version it read (stale if changed since)


class TurnRecorded(BaseModel):
    stale: bool = False  # the session changed since the turn was run ahead: nothing recorded
    transcript: str = ""  # masked, as stored
    context: TurnContext


class TurnFinish(BaseModel):
    """A turn's close, when its audio is done: metrics, and after a barge-in what was heard."""

    turn_id: int
    metrics: dict[str, float] = Field(default_factory=dict)
    interrupted: bool = False
    heard: list[str] | None = None  # only these sentences stay in the history


class SessionCommand(BaseModel):
    """The session API steering a live call (serve_app.session_api)."""

    op: Literal["say", "reply", "interrupt", "close"]
    text: str = ""
    reason: str = "closed"
