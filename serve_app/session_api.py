"""Steer a live call from anywhere in the cluster: `say`, `reply`, `interrupt`, `close`.

    actor = session_actor(session_id)
    await actor.say.remote("Your refund has been approved.")

The session store says which named actor holds the call; the actor passes each command to
the Gateway replica that owns the caller's socket. An actor serves calls one after another
(`VOICE_SESSION_ACTOR_MAX_CALLS`), so each command carries the session id it was looked up for:
one that reaches the actor after that call ended is refused, never said on the next call.
"""

from __future__ import annotations

from pathlib import Path

import ray

from common.config import get_settings
from deployments.session.actor import SESSION_NAMESPACE
from deployments.session.store import SessionStore, open_store


def session_actor(session_id: str, store_path: Path | str | None = None):
    """The live call's session actor; LookupError when the call is unknown or over.
    `store_path`: a SQLite file other than the configured store."""
    store = SessionStore(store_path) if store_path is not None else open_store(get_settings())
    try:
        state = store.load(session_id)
    finally:
        store.close()
    if state is None or state.ended_at_ms is not None or not state.actor_name:
        raise LookupError(f"no live call with session id {session_id}")
    return SessionLine(ray.get_actor(state.actor_name, namespace=SESSION_NAMESPACE), session_id)


STEERING = frozenset({"say", "reply", "interrupt", "close"})


class SessionLine:
    """The actor's handle, bound to one call: `line.say.remote(text)` sends the session id too.
    Other methods (`ping`, `current_call`) are the actor's own."""

    def __init__(self, actor, session_id: str):
        self.actor, self.session_id = actor, session_id

    def __getattr__(self, name: str):
        method = getattr(self.actor, name)
        return _Bound(method, self.session_id) if name in STEERING else method


class _Bound:
    def __init__(self, method, session_id: str):
        self._method, self._session_id = method, session_id

    def remote(self, *args, **kwargs):
        return self._method.remote(*args, session_id=self._session_id, **kwargs)
