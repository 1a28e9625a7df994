"""`voice-agent purge`, `voice-agent audit` and `voice-agent customers forget` through the CLI's
entry point, on the configured stores (SQLite, then a real redis-server), exit codes included."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from deployments.session.engine import SessionEngine
from deployments.state import open_state
from deployments.tools.support_store import SupportStore
from models.dialogue import TurnSummary
from models.session import TurnRecord
from serve_app import cli


@pytest.fixture(params=["sqlite", "redis"])
def configured(request, tmp_path, redis_url, monkeypatch):
    """The settings the CLI reads (environment), a seeded support backend, and the state store
    they name, opened as the platform opens it."""
    from common.config import load_settings

    monkeypatch.setenv("VOICE_STORE_PATH", str(tmp_path / "sessions.db"))
    monkeypatch.setenv("VOICE_SUPPORT_DB_PATH", str(tmp_path / "support.db"))
    SupportStore(tmp_path / "support.db")  # the demo customers
    if request.param == "redis":
        redis.Redis.from_url(redis_url).flushdb()
        monkeypatch.setenv("VOICE_STORE_URL", redis_url)
    else:
        monkeypatch.delenv("VOICE_STORE_URL", raising=False)
    state = open_state(load_settings(), sessions=True)
    yield state
    state.close()


def a_call(state, session_id: str, caller_id: str, words: str, customer_id: str | None = None) -> None:
    engine = SessionEngine(state.sessions, max_turns=50)
    engine.start(session_id, caller_id, "en-US")
    memory = {"customer_id": customer_id} if customer_id else None
    engine.record_turn(TurnRecord(turn_id=0, source="text", transcript=words, summary=TurnSummary(memory=memory)))
    engine.close("caller_hangup")


def test_forget_then_audit(configured, capsys):
    a_call(configured, "alice-1", "demo-alice", "where is my order", customer_id="cust-demo-alice")
    a_call(configured, "bob-1", "demo-bob", "what are your hours")
    configured.audit.link("alice-1", "demo-alice", "cust-demo-alice")
    configured.audit.record("alice-1", "tool", "verify_pin", "ok", 4.0, {"attempts": 1})
    configured.audit.record("bob-1", "escalation", "caller_request", "card 4111 1111 1111 1111", 0.0, {})

    assert cli.main(["audit", "--customer", "demo-alice"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "alice-1  tool  verify_pin  ok  4ms" in out[0]
    assert cli.main(["audit"]) == 0
    out = capsys.readouterr().out
    assert "caller_request" in out and "4111" not in out and "[CARD]" in out  # masked

    assert cli.main(["customers", "forget", "cust-demo-alice"]) == 0  # by customer id (or caller id)
    assert "deleted 1 calls, anonymised 1 audit entries" in capsys.readouterr().out
    assert configured.sessions.load("alice-1") is None and configured.sessions.load("bob-1") is not None
    assert cli.main(["audit", "--customer", "demo-alice"]) == 1  # nothing ties an entry to her now
    assert cli.main(["audit"]) == 0
    out = capsys.readouterr().out
    assert "[forgotten]  tool  verify_pin" in out and "governance  customer_forget  forgotten" in out
    assert "alice" not in out
    assert cli.main(["customers", "forget", "nobody-at-all"]) == 1
    assert "nothing stored" in capsys.readouterr().err


def test_audit_since(configured, capsys):
    configured.audit.record("s-1", "tool", "order_status", "ok", 1.0, {})
    assert cli.main(["audit", "--since", "1h"]) == 0 and "order_status" in capsys.readouterr().out
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    assert cli.main(["audit", "--since", future]) == 0 and capsys.readouterr().out == ""
    assert cli.main(["audit", "--since", "last tuesday"]) == 2
    assert "neither an ISO time nor an age" in capsys.readouterr().err


def test_purge(configured, capsys, monkeypatch):
    a_call(configured, "old-1", "demo-alice", "where is my order")
    configured.audit.record("old-1", "tool", "order_status", "ok", 1.0, {})
    time.sleep(0.3)
    monkeypatch.setenv("VOICE_RETENTION_DAYS", str(0.2 / 86400))  # 0.2 s
    assert cli.main(["purge"]) == 0
    assert "purged 1 calls and " in capsys.readouterr().out  # SQLite's audit also drops expired rows at open
    assert configured.sessions.load("old-1") is None and configured.audit.read(since_ms=0) == []
    monkeypatch.setenv("VOICE_RETENTION_DAYS", "0")
    assert cli.main(["purge"]) == 2
    assert "VOICE_RETENTION_DAYS" in capsys.readouterr().err


def test_the_command_in_a_process_of_its_own(tmp_path):
    """`python -m serve_app` runs the same `main` as pyproject's `voice-agent` script, on this checkout."""
    env = {**os.environ, "VOICE_STORE_PATH": str(tmp_path / "sessions.db"), "VOICE_RETENTION_DAYS": "30"}
    env.pop("VOICE_STORE_URL", None)
    command = [sys.executable, "-m", "serve_app"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([*command, "purge"], env=env, capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0 and "purged 0 calls and 0 audit entries older than 30 days" in done.stdout
    env["VOICE_STORE_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    done = subprocess.run([*command, "audit"], env=env, capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 2 and "unreachable" in done.stderr and "Traceback" not in done.stderr
