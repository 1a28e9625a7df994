"""README's run command on a machine whose user never ran Ray: an empty HOME, so no
~/.ray/auth_token. `scripts/run.sh` must create the token, start Ray and the platform, and
`voice-agent down` must stop that cluster alone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import ROOT, _free_port

pytestmark = pytest.mark.platform


def _cluster_alive(port: int) -> bool:
    import psutil

    for p in psutil.process_iter():
        try:
            if f"--gcs_server_port={port}" in p.cmdline():
                return True
        except psutil.Error:
            continue
    return False


def test_run_command_starts_the_platform_with_an_empty_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    ports = {name: _free_port() for name in ("RAY", "HTTP", "DASHBOARD", "METRICS")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_", "RAY_"))}
    env.update(HOME=str(home), VOICE_STORE_PATH=str(tmp_path / "sessions.db"), VOICE_RAY_NUM_CPUS="2")
    env.update({f"VOICE_{name}_PORT": str(port) for name, port in ports.items()})
    try:
        up = subprocess.run(["bash", "scripts/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        token = home / ".ray" / "auth_token"
        assert "created Ray's authentication token" in up.stdout
        assert len(token.read_text().strip()) == 64
        assert stat.S_IMODE(token.stat().st_mode) == 0o600  # a secret: the owner alone reads it
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['HTTP']}/ready", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())["ready"] is True
        with connect(
            f"ws://127.0.0.1:{ports['HTTP']}/ws/call?caller_id=fresh&sample_rate=16000", open_timeout=30
        ) as ws:
            first = json.loads(ws.recv(timeout=30))
            assert first["type"] == "session.started"
        # Run again: the token is kept (a new one would lock out the running cluster's clients).
        again = subprocess.run(
            [".venv/bin/voice-agent", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        down = subprocess.run(
            [".venv/bin/voice-agent", "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr[-2000:]
    assert not _cluster_alive(ports["RAY"])
    assert Path(home / ".ray" / "auth_token").exists()
