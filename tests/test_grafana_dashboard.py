"""The Grafana dashboard (deploy/grafana/voice.json) queries only what the platform exports: every
panel names at least one metric, every metric it names is in common/metric_catalog.py, every
metric the issue asks to see is on it, and its queries parse as PromQL (promtool, when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from common.metric_catalog import BY_NAME, exported_names

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "voice.json"
# The metrics issue 15 asks the dashboard to show (latency per stage, calls against capacity,
# outcomes, escalations, barge-ins, tools, breakers).
SHOWN = (
    "voice_turn_latency_ms",
    "voice_asr_latency_ms",
    "voice_llm_latency_ms",
    "voice_tts_first_chunk_ms",
    "voice_tool_calls_total",
    "voice_tool_failures_total",
    "voice_escalations_total",
    "voice_barge_ins_total",
    "voice_active_sessions",
    "voice_capacity_sessions",
    "voice_sessions_total",
    "voice_breaker_state",
)
# What is left of a query once strings, label sets, ranges, groupings and calls are taken out: metric
# names, plus these PromQL words.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
STRIP = [
    re.compile(r'"(?:[^"\\]|\\.)*"'),  # strings
    re.compile(r"\{[^}]*\}"),  # label matchers
    re.compile(r"\[[^\]]*\]"),  # ranges
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),  # label lists
    re.compile(r"\b[a-z_]+\s*\("),  # function and aggregation calls
]
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def panels() -> list[dict]:
    doc = json.loads(DASHBOARD.read_text())
    return [p for p in doc["panels"] if p["type"] != "row"]


def metrics_in(expr: str) -> set[str]:
    for pattern in STRIP:
        expr = pattern.sub(" ", expr)
    return {w for w in IDENT.findall(expr) if w not in KEYWORDS and not re.fullmatch(r"[eE]\d*", w)}


def test_metrics_in_sees_through_promql():
    expr = 'sum by (tool) (rate(ray_voice_tool_failures_total{tool!="x"}[$__rate_interval])) / on() group_left up'
    assert metrics_in(expr) == {"ray_voice_tool_failures_total", "up"}


def test_the_dashboard_is_json_with_a_prometheus_datasource_variable():
    doc = json.loads(DASHBOARD.read_text())
    (var,) = [v for v in doc["templating"]["list"] if v["name"] == "datasource"]
    assert (var["type"], var["query"]) == ("datasource", "prometheus")
    assert doc["uid"] and doc["title"]
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]


def test_every_panel_queries_only_exported_metrics():
    exported = exported_names()
    for p in panels():
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            named = metrics_in(t["expr"])
            assert named, f"{p['title']!r}: {t['expr']!r} names no metric"
            assert named <= exported, f"{p['title']!r} queries metrics the platform does not export: {named - exported}"


def test_every_metric_the_issue_lists_is_on_the_dashboard():
    named = {m for p in panels() for t in p["targets"] for m in metrics_in(t["expr"])}
    missing = [name for name in SHOWN if not set(BY_NAME[name].exported()) & named]
    assert missing == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian's `prometheus` package)")
def test_every_query_parses_as_promql(tmp_path):
    """Each query as a recording rule, with Grafana's interval variable at 5m: promtool parses it."""
    exprs = [t["expr"].replace("$__rate_interval", "5m") for p in panels() for t in p["targets"]]
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout
