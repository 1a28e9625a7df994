"""The alert rules (deploy/prometheus/alerts.yml) pass Prometheus's own checks and unit tests, name
only metrics the platform exports, and are pinned: each alert has a test that fires it and one that
keeps it silent, and moving any threshold past those series makes `promtool test rules` fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.metric_catalog import exported_names

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
RULE_TESTS = sorted(PROM.glob("*_test.yml"))  # escalations_test.yml apart: a day of history is slow
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian's `prometheus` package; scripts/setup.sh)"
)
METRIC = re.compile(r"\bray_voice_[a-z0-9_]+")

# Threshold moves the test series must catch: (alert, text in its expr, moved up, moved down). Up
# silences its "fires" test; down makes its "stays silent" twin fire.
THRESHOLDS = [
    ("VoiceTurnLatencyHigh", "> 2500", "> 2600", "> 2450"),
    ("VoiceAsrLatencyHigh", "> 600", "> 620", "> 590"),
    ("VoiceDialogueLatencyHigh", "> 1200", "> 1260", "> 1190"),
    ("VoiceTtsFirstChunkHigh", "> 600", "> 620", "> 590"),
    ("VoiceTtsFirstChunkHigh", "0.95,", "0.9,"),  # the quantile itself
    ("VoiceToolFailureRateHigh", "> 0.01", "> 0.016", "> 0.004"),
    ("VoiceEscalationsAboveBaseline", "> 2 *", "> 3.1 *", "> 1.4 *"),
    ("VoiceEscalationsAboveBaseline", ", 0.2)", ", 0.6)", ", 0.1)"),  # the floor for a zero baseline
    ("VoiceSessionsNearCapacity", "> 0.8", "> 0.86", ">= 0.8"),
    ("VoiceSessionErrorRateHigh", "> 0.05", "> 0.065", "> 0.035"),
    ("VoiceBreakerOpen", "== 2", "== 3", "== 1"),
]
THRESHOLD_MOVES = [(alert, old, new) for alert, old, *moved in THRESHOLDS for new in moved]


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def cases(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["tests"]


def alerts_tested_in(path: Path) -> set[str]:
    return {check["alertname"] for case in cases(path) for check in case.get("alert_rule_test", [])}


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_issue_alerts_are_all_there():
    names = {r["alert"] for r in rules()}
    assert names == {m[0] for m in THRESHOLD_MOVES}
    for r in rules():
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"] and "Runbook" in r["annotations"]["description"], r["alert"]


def test_every_metric_in_the_rules_is_exported():
    named = {m for r in rules() for m in METRIC.findall(r["expr"])}
    assert named, "no ray_voice_* metric found in alerts.yml"
    assert named <= exported_names(), named - exported_names()


def test_every_alert_has_a_firing_and_a_silent_test():
    fires, silent = set(), set()
    for case in (c for path in RULE_TESTS for c in cases(path)):
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in rules()}
    assert names - fires == set(), "alerts no test fires"
    assert names - silent == set(), "alerts no test keeps silent"
    assert (fires | silent) <= names, "tests for alerts that do not exist"


@needs_promtool
def test_promtool_checks_the_rules():
    out = promtool("check", "rules", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    out = promtool("test", "rules", *(p.name for p in RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULE_TESTS) >= 2


@needs_promtool
@pytest.mark.parametrize(("alert", "old", "new"), THRESHOLD_MOVES)
def test_a_moved_threshold_fails_the_unit_tests(alert, old, new, tmp_path):
    doc = yaml.safe_load(RULES.read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r["alert"] == alert]
    assert rule["expr"].count(old) == 1, rule["expr"]
    rule["expr"] = rule["expr"].replace(old, new)
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    files = [p.name for p in RULE_TESTS if alert in alerts_tested_in(p)]  # only those testing this alert
    for name in files:
        shutil.copy(PROM / name, tmp_path / name)
    out = promtool("test", "rules", *files, cwd=tmp_path)
    assert out.returncode != 0, f"{alert}: {old!r} -> {new!r} still passes"
    assert f"alertname: {alert}," in out.stdout + out.stderr
