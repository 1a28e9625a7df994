"""One state store with named parts (see `parts.py`), on SQLite for one node or on Redis for a
cluster: `open_state(settings)` picks the backend as the session store does (VOICE_STORE_URL).

`sessions` is the call-state store of `deployments/session/store.py`, reused as it is; the
other parts live in `state.db` beside it (SQLite) or under `voice:` keys (Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.config import Settings
from deployments.session.store import Store, open_store
from deployments.state.parts import Audit, Cache, Customers, Workflow

DAY_S = 86400


@dataclass
class State:
    workflow: Workflow
    cache: Cache
    customers: Customers
    audit: Audit
    sessions: Store | None = None  # opened only for those that keep call state
    _close: tuple = ()

    def close(self) -> None:
        for resource in self._close:
            resource.close()
        if self.sessions is not None:
            self.sessions.close()


def state_path(settings: Settings) -> Path:
    """The SQLite file of the parts other than sessions: beside the session store."""
    return settings.store_path.with_name("state.db")


def open_state(settings: Settings, sessions: bool = False) -> State:
    """The parts the settings name: Redis when `store_url` is set, else SQLite beside `store_path`."""
    ttls = dict(
        journal_ttl_s=settings.state_ttl_s,
        customer_ttl_s=settings.customer_state_ttl_s,
        audit_retention_s=settings.retention_days * DAY_S,
    )
    if settings.store_url is not None:
        state = redis_state(settings.store_url.get_secret_value(), **ttls)
    else:
        state = sqlite_state(state_path(settings), **ttls)
    if sessions:
        state.sessions = open_store(settings)
    return state


def sqlite_state(
    path: Path | str, journal_ttl_s: float = DAY_S, customer_ttl_s: float = 90 * DAY_S, audit_retention_s=30 * DAY_S
) -> State:
    from deployments.state.sqlite import Db, SqliteCache, SqliteCustomers, SqliteWorkflow
    from deployments.state.sqlite_audit import SqliteAudit

    path = Path(path)
    db = Db(path / "state.db" if path.suffix != ".db" else path)
    return State(
        SqliteWorkflow(db, journal_ttl_s),
        SqliteCache(db),
        SqliteCustomers(db, customer_ttl_s),
        SqliteAudit(db, audit_retention_s),
        _close=(db,),
    )


def redis_state(
    url: str, journal_ttl_s: float = DAY_S, customer_ttl_s: float = 90 * DAY_S, audit_retention_s=30 * DAY_S
) -> State:
    from deployments.state.redis_audit import RedisAudit
    from deployments.state.redis_parts import RedisCache, RedisCustomers, RedisWorkflow, connect

    client = connect(url)
    return State(
        RedisWorkflow(client, journal_ttl_s),
        RedisCache(client),
        RedisCustomers(client, customer_ttl_s),
        RedisAudit(client, audit_retention_s),
        _close=(client,),
    )
