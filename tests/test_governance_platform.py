"""Governance on the real platform: the cluster's retention actor purges old calls by itself.
(The declined-consent call is proven in-process, tests/test_consent.py; its platform test is
not yet reliable: a Gateway may greet from a Dialogue replica the redeploy is replacing.)"""

from __future__ import annotations

import sqlite3
import time

import pytest

pytestmark = pytest.mark.platform


def test_the_retention_actor_purges_old_calls_in_the_cluster(platform):
    """A call last written longer ago than VOICE_RETENTION_DAYS is gone once the actor runs: it
    runs at its start (a restart too) and every VOICE_RETENTION_PURGE_INTERVAL_S after."""
    import ray

    from deployments.state.retention_actor import ACTOR_NAME, NAMESPACE

    actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)  # started by the Dialogue replica
    assert ray.get(actor.runs.remote(), timeout=30) >= 1
    old_ms = int((time.time() - 31 * 86400) * 1000)  # the default retention is 30 days
    with sqlite3.connect(platform["store"]) as db:
        db.execute(
            "INSERT INTO sessions(session_id, caller_id, status, state, updated_at_ms, revision) VALUES (?,?,?,?,?,1)",
            ("old-call", "someone", "ended", '{"session_id":"old-call","caller_id":"someone"}', old_ms),
        )
    ray.kill(actor, no_restart=False)  # Ray restarts it; the restarted actor purges at once
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(platform["store"]) as db:
            left = db.execute("SELECT COUNT(*) FROM sessions WHERE session_id='old-call'").fetchone()[0]
        if not left:
            break
        assert time.monotonic() < deadline, "the retention actor did not purge the old call"
        time.sleep(0.5)
    assert ray.get(ray.get_actor(ACTOR_NAME, namespace=NAMESPACE).runs.remote(), timeout=30) >= 1
