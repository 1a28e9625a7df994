"""The audit trail in Redis (a cluster): one stream, `voice:audit`, trimmed to the retention
(`MINID`) and a length cap at each add, and by the retention purge (`governance.py`).

A stream entry cannot be changed in place: an anonymised entry is deleted and added again at the
stream's end with its original `at_ms` and id (`moved_from`; `read` orders by it), and its new
id is indexed by that time in `voice:audit:moved`, so the purge still drops it when its
original time passes the retention. Links from audited sessions to their caller's and
customer's digests are sets `voice:audit:subject:<digest>`, expiring with the retention.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from common.pii import mask_pii
from deployments.state.parts import AUDIT_FIELDS, subject
from deployments.state.redis_parts import PREFIX

AUDIT_KEY = PREFIX + "audit"
MOVED_KEY = PREFIX + "audit:moved"
SUBJECT_KEY = PREFIX + "audit:subject:{}"
AUDIT_MAX_ENTRIES = 1_000_000  # a cap beside the retention, so a flood cannot fill the server
_SCAN = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entry(raw: dict) -> dict:
    v = {k.decode(): x.decode() for k, x in raw.items()}
    return {**{k: v.get(k, "") for k in AUDIT_FIELDS}, "at_ms": int(v["at_ms"]), "latency_ms": float(v["latency_ms"])}


def _place(entry_id: bytes, raw: dict) -> tuple[int, int]:
    """Where an entry stands in the trail: its id, or for a moved copy the id it was written under."""
    ms, _, seq = (raw.get(b"moved_from") or entry_id).decode().partition("-")
    return int(ms), int(seq or 0)


class RedisAudit:
    def __init__(self, client: redis.Redis, retention_s: float, max_entries: int = AUDIT_MAX_ENTRIES):
        self._r, self._retention_ms, self._max = client, int(retention_s * 1000), max_entries

    def record(self, session_id: str, kind: str, name: str, outcome: str, latency_ms: float, detail: dict) -> None:
        now = _now_ms()
        row = (now, session_id, kind, name, mask_pii(outcome), latency_ms, mask_pii(json.dumps(detail)))
        with self._r.pipeline() as pipe:
            entry = dict(zip(AUDIT_FIELDS, map(str, row)))
            pipe.xadd(AUDIT_KEY, entry, minid=now - self._retention_ms, approximate=False)
            pipe.xtrim(AUDIT_KEY, maxlen=self._max, approximate=True)
            pipe.execute()

    def _scan(self, min_id: str = "-"):
        """(id, entry) over the stream in pages, so a long stream never blocks the server."""
        start = min_id
        while page := self._r.xrange(AUDIT_KEY, min=start, count=_SCAN):
            for entry_id, raw in page:
                yield entry_id, _place(entry_id, raw), _entry(raw)
            start = "(" + page[-1][0].decode()

    def read(self, session_id: str | None = None, since_ms: int | None = None) -> list[dict]:
        """A scan of the retained stream: for operators and tests, not for the call path."""
        since = max(_now_ms() - self._retention_ms, since_ms or 0)
        found = [(place, e) for _, place, e in self._scan(f"{since}-0") if e["at_ms"] >= since]
        return [e for _, e in sorted(found, key=lambda x: x[0]) if not session_id or e["session_id"] == session_id]

    def link(self, session_id: str, *identities: str) -> None:
        ttl_s = max(1, self._retention_ms // 1000)
        with self._r.pipeline() as pipe:
            for digest in (subject(i) for i in identities if i):
                pipe.sadd(SUBJECT_KEY.format(digest), session_id)
                pipe.expire(SUBJECT_KEY.format(digest), ttl_s)
            pipe.execute()

    def sessions_of(self, *identities: str) -> set[str]:
        keys = [SUBJECT_KEY.format(subject(i)) for i in identities if i]
        return {m.decode() for m in self._r.sunion(keys)} if keys else set()

    def unlink(self, *identities: str) -> None:
        keys = [SUBJECT_KEY.format(subject(i)) for i in identities if i]
        if keys:
            self._r.delete(*keys)

    def anonymise(self, rewrite: Callable[[dict], dict | None]) -> int:
        changed = [
            (entry_id, place, new) for entry_id, place, e in list(self._scan()) if (new := rewrite(e)) is not None
        ]
        for entry_id, place, new in changed:
            with self._r.pipeline() as pipe:  # MULTI/EXEC: never both copies, never neither
                pipe.xdel(AUDIT_KEY, entry_id)
                pipe.xadd(AUDIT_KEY, {**{k: str(new[k]) for k in AUDIT_FIELDS}, "moved_from": f"{place[0]}-{place[1]}"})
                moved_id = pipe.execute()[1]
            self._r.zadd(MOVED_KEY, {moved_id: new["at_ms"]})
        return len(changed)

    def purge(self, before_ms: int) -> int:
        moved = self._r.zrangebyscore(MOVED_KEY, "-inf", f"({before_ms}")
        with self._r.pipeline() as pipe:
            pipe.xtrim(AUDIT_KEY, minid=f"{before_ms}-0", approximate=False)
            if moved:
                pipe.xdel(AUDIT_KEY, *moved)
                pipe.zrem(MOVED_KEY, *moved)
            done = pipe.execute()
        return done[0] + (done[1] if moved else 0)
