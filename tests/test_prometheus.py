"""A real Prometheus (Debian's) scrapes the platform through Ray's service-discovery file, as
deploy/prometheus/prometheus.yml says; after a real call, PromQL through its HTTP API returns
the catalog's metrics. The platform is started with README's run command (`scripts/run.sh`:
`voice-agent up`, its own Ray with the dashboard, which writes the discovery file and which the
session platform fixture runs without), on free ports and an empty HOME, as on the machine of a
user who never ran Ray: the run command must create Ray's token, and `voice-agent down` must
stop that cluster alone. Screenshots of the Ray dashboard's metrics view and of the metrics in
Prometheus land in test-output/test_after_a_call_promql_returns_the_platforms_metrics/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from serve_app import local_ray
from serve_app.call import CallClient, speak_turn
from serve_app.cluster import RAY_HISTORY
from tests.conftest import ROOT, _free_port
from tests.test_browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.platform

CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SD_FILE = "prom_metrics_service_discovery.json"
CAPACITY = 5


def scrape_config(sd_file: Path, interval: str = "1s") -> dict:
    """deploy/prometheus/prometheus.yml for one Ray session: its own discovery file (the
    /tmp/ray link follows whichever cluster started last), a short interval, rule files by path."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {**config["global"], "scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(CONFIG.parent / f) for f in config.get("rule_files", [])]
    (job,) = config["scrape_configs"]
    job["file_sd_configs"] = [{"files": [str(sd_file)]}]
    return config


def test_the_shipped_config_finds_ray_through_its_discovery_file():
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"] == [{"files": [f"/tmp/ray/{SD_FILE}"]}]
    patched = scrape_config(Path("/tmp/ray/session_x") / SD_FILE)
    assert patched["scrape_configs"][0]["file_sd_configs"][0]["files"] == [f"/tmp/ray/session_x/{SD_FILE}"]
    assert all(Path(f).is_absolute() for f in patched["rule_files"])


def get_json(url: str, headers: dict | None = None, timeout: float = 5) -> dict:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.loads(r.read())


def promql(base: str, query: str) -> list[dict]:
    answer = get_json(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(what: str, get, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if value := get():
                return value
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(1)


@contextlib.contextmanager
def prometheus(config: dict, workdir: Path, port: int):
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "prometheus.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus ready", lambda: proc.poll() is None and get_json(f"{base}/api/v1/status/config"), 30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def one_call(ws_url: str, speech: bytes) -> dict:
    client = CallClient(ws_url, "prometheus", resume_for=0)
    await client.connect()
    await client.silence_until(lambda: any(e.get("state") == "listening" for e in client.events), 60)
    report = await speak_turn(client, speech, timeout=60)
    await client.hangup()
    await client.close()
    return report.metrics


def screenshots(dashboard: str, token: str, prom: str, out: Path) -> list[str]:
    """The Ray dashboard's metrics view (signed in with the cluster's token) and the turn
    latency series in Prometheus's own page; returns the texts each page showed."""
    from playwright.sync_api import sync_playwright

    texts = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, extra_http_headers={"Authorization": f"Bearer {token}"}
            )
            page = context.new_page()
            page.goto(f"{dashboard}/#/metrics", wait_until="networkidle", timeout=60_000)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "ray-dashboard-metrics.png"), full_page=True)
            texts.append(page.inner_text("body"))
            expr = urllib.parse.quote("sum by (deployment) (ray_voice_turn_latency_ms_count)")
            page.goto(f"{prom}/graph?g0.expr={expr}&g0.tab=1", wait_until="networkidle", timeout=60_000)
            page.get_by_text('deployment="Gateway"').first.wait_for(timeout=30_000)
            page.screenshot(path=str(out / "prometheus-turn-latency.png"), full_page=True)
            texts.append(page.inner_text("body"))
        finally:
            browser.close()
    return texts


def test_after_a_call_promql_returns_the_platforms_metrics(tmp_path, output_dir, speak):
    ports = {name: _free_port() for name in ("RAY", "HTTP", "DASHBOARD", "METRICS")}
    prom_port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_", "RAY_"))}
    env.update({f"VOICE_{name}_PORT": str(port) for name, port in ports.items()})
    env.update(
        HOME=str(home),
        VOICE_STORE_PATH=str(tmp_path / "sessions.db"),
        VOICE_RAY_NUM_CPUS="2",
        VOICE_MAX_CALLS_PER_REPLICA=str(CAPACITY),
        RAY_PROMETHEUS_HOST=f"http://127.0.0.1:{prom_port}",  # the dashboard asks this Prometheus
    )
    cli = [sys.executable, "-m", "serve_app"]
    try:
        up = subprocess.run(["bash", "scripts/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        token_file = home / ".ray" / "auth_token"  # the user never ran Ray: run.sh made the token
        assert "created Ray's authentication token" in up.stdout
        assert len(token_file.read_text().strip()) == 64
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # a secret: the owner alone reads it
        session = local_ray.session_dir(ports["RAY"])
        assert session is not None
        (gcs,) = [p for p in local_ray.cluster_processes(ports["RAY"]) if p.name() == "gcs_server"]
        assert RAY_HISTORY.items() <= gcs.environ().items()  # its history bounded: a long run's memory
        sd_file = session / SD_FILE
        wait_for("the dashboard's discovery file", sd_file.is_file)
        with prometheus(scrape_config(sd_file), tmp_path, prom_port) as prom:
            # the node's metrics port among the discovered targets, up (the others may be scraped first)
            wait_for(
                "Ray's metrics target up",
                lambda: [
                    t
                    for t in get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
                    if t["health"] == "up" and t["labels"]["instance"].endswith(f":{ports['METRICS']}")
                ],
            )
            turn = asyncio.run(
                one_call(f"ws://127.0.0.1:{ports['HTTP']}/ws/call", speak("What are your opening hours?"))
            )
            assert turn["eos_to_first_audio_ms"] > 0, turn
            count = wait_for(
                "a turn in the turn-latency histogram",
                lambda: promql(prom, "sum(ray_voice_turn_latency_ms_count) > 0"),
            )
            answers = {"sum(ray_voice_turn_latency_ms_count)": count}
            # Each replica's metrics reach Prometheus at its own scrape: wait for every stage's
            # count, and for the call's end, before reading the rest.
            for stage in ("asr_latency_ms", "llm_latency_ms", "tts_first_chunk_ms"):
                query = f"sum(ray_voice_{stage}_count)"
                answers[query] = wait_for(f"{stage} counted", lambda q=query: promql(prom, f"{q} > 0"))
            wait_for("the call's end counted", lambda: promql(prom, 'ray_voice_sessions_total{outcome="completed"}'))
            for query in (
                "histogram_quantile(0.95, sum by (le) (ray_voice_turn_latency_ms_bucket))",
                "ray_voice_active_sessions",
                "ray_voice_capacity_sessions",
                "sum by (outcome) (ray_voice_sessions_total)",
            ):
                answers[query] = promql(prom, query)
            (output_dir / "promql.json").write_text(json.dumps(answers, indent=1))
            print(json.dumps(answers, indent=1))
            for stage in ("asr_latency_ms", "llm_latency_ms", "tts_first_chunk_ms"):
                assert float(answers[f"sum(ray_voice_{stage}_count)"][0]["value"][1]) >= 1, answers
            assert float(count[0]["value"][1]) >= 1
            active = answers["ray_voice_active_sessions"]
            assert active and all(s["metric"]["deployment"] == "Gateway" for s in active), active
            capacity = answers["ray_voice_capacity_sessions"]
            assert capacity and {float(s["value"][1]) for s in capacity} == {CAPACITY}, capacity

            token = (home / ".ray" / "auth_token").read_text().strip()
            dashboard = f"http://127.0.0.1:{ports['DASHBOARD']}"
            health = get_json(f"{dashboard}/api/prometheus_health", {"Authorization": f"Bearer {token}"})
            assert health["result"] is True, health  # the dashboard reaches this Prometheus
            ray_page, prom_page = screenshots(dashboard, token, prom, output_dir)
            assert (output_dir / "ray-dashboard-metrics.png").stat().st_size > 10_000
            assert "Metrics" in ray_page
            assert 'deployment="Gateway"' in prom_page
            # Asked again, the token is kept (a new one would lock out the running cluster's clients).
            status = subprocess.run([*cli, "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert status.returncode == 0, status.stdout + status.stderr
    finally:
        down = subprocess.run([*cli, "down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr[-2000:]
    assert not _cluster_alive(ports["RAY"])  # down stopped this cluster
    assert token_file.exists()


def _cluster_alive(port: int) -> bool:
    import psutil

    for p in psutil.process_iter():
        try:
            if f"--gcs_server_port={port}" in p.cmdline():
                return True
        except psutil.Error:
            continue
    return False
