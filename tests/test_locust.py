"""README's Locust command against the real platform: callers that speak, type and barge in
get answered with no failure, and Locust's report reads as plain numbers (nothing of ours
masks the load generator's own output)."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.utterances import load_utterances

pytestmark = pytest.mark.platform
ROOT = Path(__file__).resolve().parent.parent


def test_locust_callers_are_answered_and_reported_in_plain_numbers(platform, tmp_path):
    load_utterances()  # synthesized here, not inside Locust's timed run
    host = f"ws://127.0.0.1:{platform['port']}"
    cmd = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless", "-u", "2", "-r", "2"]
    cmd += ["-t", "25s", "--stop-timeout", "60", "--host", host, "--csv", str(tmp_path / "run")]
    env = {**os.environ, "LOADTEST_TURNS": "3"}  # one turn of each kind per call
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    report = out.stdout + out.stderr
    assert not re.search(r"\[(CARD|PHONE|SSN|EMAIL|PIN)\]", report), report[-3000:]
    assert out.returncode == 0, report[-3000:]  # Locust exits 1 on any failure

    with open(tmp_path / "run_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    for name in ("setup", "voice turn", "typed turn", "barge-in stop"):
        row = rows[name]
        assert int(row["Request Count"]) >= 1 and int(row["Failure Count"]) == 0, row
        assert float(row["Median Response Time"]) > 0 and float(row["95%"]) >= float(row["50%"]), row
    assert float(rows["voice turn"]["Min Response Time"]) > 0
    stats = r"^WS\s+voice turn\s+\d+\s+0\(0\.00%\)\s+\|\s+\d+\s+\d+\s+\d+\s+\d+\s+\|"  # n, fails | avg min max med
    assert any(re.match(stats, line) for line in report.splitlines()), report[-3000:]
