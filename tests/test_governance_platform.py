"""Governance on the real platform: the cluster's retention actor purges old calls by itself, and
with the recording notice on, a caller who declines goes on talking and leaves no words stored."""

from __future__ import annotations

import sqlite3
import time

import pytest

from serve_app.call import CallClient, speak_turn
from tests.test_call import open_call, wait_greeting_done
from tests.test_durable import said, typed

pytestmark = pytest.mark.platform


@pytest.fixture
def notice_on(platform):
    """Dialogue redeployed with VOICE_CONSENT_NOTICE_ON (one replica, so no call is greeted by a
    replica being replaced), put back as configured afterwards. Yields the notice's sentences."""
    from ray import serve

    from deployments.dialogue.fixed_lines import notice_lines
    from tests.conftest import redeploy

    said = "This call is recorded. Say no if you'd rather it wasn't."  # an operator's, shorter than the default
    notice = notice_lines(True, said)
    dialogue = serve.get_deployment_handle("Dialogue", "voice")

    def greets_with_notice() -> bool:
        first = next(iter(dialogue.options(stream=True).greeting.remote()))
        return first.text == notice[0]

    env = {"VOICE_CONSENT_NOTICE_ON": "true", "VOICE_CONSENT_NOTICE": said}
    redeploy(platform, "Dialogue", env, greets_with_notice, replicas=1)
    try:
        yield notice
    finally:
        redeploy(platform, "Dialogue", None, lambda: not greets_with_notice())


async def _greeted_call(platform, caller_id: str, notice: list[str]) -> CallClient:
    client = await open_call(platform, caller_id)
    await wait_greeting_done(client)
    greeted = [e["text"] for e in client.of_type("agent.text")]
    assert greeted[: len(notice)] == notice, f"the call was not greeted with the recording notice: {greeted}"
    return client


def _everything_stored(store) -> str:
    with sqlite3.connect(store) as db:
        return "\n".join(db.iterdump()).lower()


async def test_a_caller_who_declines_the_recording_goes_on_and_leaves_no_words(platform, notice_on, speak):
    """The notice is said before the greeting; a spoken "no" declines. The agent says so, the
    call goes on (a question is answered), and none of the call's words reach the store, while
    a caller who agrees on the same platform has theirs kept."""
    from deployments.policy.consent import DECLINED_REPLY
    from deployments.session.store import SessionStore

    declining = await _greeted_call(platform, "consent-declines", notice_on)
    report = await speak_turn(declining, speak("No, I'd rather not be recorded."), timeout=60)
    assert DECLINED_REPLY in report.agent_text, (report, declining.events[-12:], declining.close_code)
    answer = said(await typed(declining, "What are your opening hours? My zebra blanket never came."))
    assert answer and not declining.closed, "the call did not go on after the decline"
    await declining.hangup()

    agreeing = await _greeted_call(platform, "consent-agrees", notice_on)
    report = await speak_turn(agreeing, speak("Yes, that's fine."), timeout=60)
    assert DECLINED_REPLY not in report.agent_text
    await typed(agreeing, "What are your opening hours? My giraffe lamp never came.")
    await agreeing.hangup()

    sessions = SessionStore(platform["store"])
    declined = sessions.load(declining.session["session_id"])
    assert declined.consent == "declined" and len(declined.turns) >= 3
    assert all(not t.transcript and not t.reply for t in declined.turns), "a declined call's words were kept"
    kept = sessions.load(agreeing.session["session_id"])
    assert kept.consent == "given" and any("giraffe" in (t.transcript or "").lower() for t in kept.turns)
    stored = _everything_stored(platform["store"])
    assert "giraffe" in stored and "zebra" not in stored


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
