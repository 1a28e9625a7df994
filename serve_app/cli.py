"""Operator CLI: `voice-agent up|down|status` (or `python -m serve_app ...`).

`up` starts a single-node Ray on 127.0.0.1 (if none is running), deploys
serve_config.yaml, waits until the platform answers, and says how to make a first call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from serve_app import cluster
from serve_app.config import ConfigError, load_settings

RAY_PORT = 6379
DASHBOARD_PORT = 8265
METRICS_PORT = 8080


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _ray_running() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", RAY_PORT)) == 0


def _cli_env() -> None:
    """`ray start` enables token auth (~/.ray/auth_token); our driver must use it too."""
    cluster.loopback_env()
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _export_dotenv() -> None:
    """Ray workers read settings from their environment: pass `.env` on through ours."""
    from dotenv import dotenv_values

    for key, value in dotenv_values(".env").items():
        if value is not None:
            os.environ.setdefault(key, value)


def _get_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def up(args) -> int:
    t0 = time.monotonic()
    _export_dotenv()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    _cli_env()
    os.environ["VOICE_STORE_PATH"] = str(settings.store_path.resolve())
    if _ray_running():
        print(f"Ray already running on 127.0.0.1:{RAY_PORT}; deploying onto it")
    else:
        cmd = [
            _ray_bin(), "start", "--head", f"--port={RAY_PORT}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={settings.ray_num_cpus:g}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={DASHBOARD_PORT}", f"--metrics-export-port={METRICS_PORT}", "--disable-usage-stats",
        ]
        print(f"starting Ray: {' '.join(cmd[1:])}")
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            print("voice-agent: `ray start` failed; see /tmp/ray/session_latest/logs", file=sys.stderr)
            return 1
    import ray

    ray.init(address=f"127.0.0.1:{RAY_PORT}", namespace="serve", log_to_driver=False)
    print(f"deploying {cluster.CONFIG_PATH.name} (loading models: about 30 s on 2 cores)")
    try:
        cluster.deploy(cluster.load_config(http_port=settings.http_port, env=cluster.settings_env()))
    except (RuntimeError, TimeoutError) as exc:
        print(f"voice-agent: deploy failed: {exc}", file=sys.stderr)
        return 1
    base = f"http://{settings.http_host}:{settings.http_port}"
    deadline = time.monotonic() + 60
    while (status := _get_json(f"{base}/ready"))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    ray.shutdown()
    from serve_app.samples import make_samples

    samples = make_samples(cluster.ROOT / "samples")
    rel = [str(p.relative_to(cluster.ROOT)) for p in samples[:2]]
    print(
        f"""
Voice agent is up in {time.monotonic() - t0:.0f} s (ready: {status[1]}).
  Call:       ws://{settings.http_host}:{settings.http_port}/ws/call?caller_id=YOU&sample_rate=16000   (protocol: docs/protocol.md)
  Health:     {base}/health   {base}/ready
  Dashboard:  http://127.0.0.1:{DASHBOARD_PORT}    Prometheus metrics: http://127.0.0.1:{METRICS_PORT}/metrics
First call (speaks two sample WAVs, prints transcripts, replies and latency):
  .venv/bin/voice-call {' '.join(rel)}
Stop:  .venv/bin/voice-agent down"""
    )
    return 0


def down(_args) -> int:
    _cli_env()
    if _ray_running():
        import ray
        from ray import serve

        ray.init(address=f"127.0.0.1:{RAY_PORT}", namespace="serve", log_to_driver=False)
        serve.shutdown()
        ray.shutdown()
    subprocess.run([_ray_bin(), "stop"], capture_output=True)
    print("voice agent stopped")
    return 0


def status(_args) -> int:
    settings = load_settings()
    if not _ray_running():
        print("not running (start with: voice-agent up)")
        return 1
    code, body = _get_json(f"http://{settings.http_host}:{settings.http_port}/ready")
    print(f"ready: HTTP {code} {body}")
    return 0 if code == 200 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voice-agent", description="Run the voice-agent platform on a local Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start Ray on 127.0.0.1 and deploy serve_config.yaml").set_defaults(func=up)
    sub.add_parser("down", help="shut the platform and Ray down").set_defaults(func=down)
    sub.add_parser("status", help="is the platform up and ready?").set_defaults(func=status)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
