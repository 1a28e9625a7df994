"""Operator CLI: `voice-agent up|down|status|customers|session|secrets` (or `python -m serve_app ...`).

`up` starts a single-node Ray on 127.0.0.1 (if none is running) and the loopback Redis that
VOICE_STORE_URL names (serve_app/store_redis.py), deploys
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

from common.config import ConfigError, load_settings
from common.logs import mask_logs_in_this_process
from serve_app import cluster, customers_cli, governance_cli, local_ray, session_cli, store_redis


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
    if settings.store_url is not None:  # the replicas' store must answer before they start
        try:
            started_redis = store_redis.ensure(settings.store_url.get_secret_value(), ray_port=settings.ray_port)
        except store_redis.RedisUnavailable as exc:
            print(f"voice-agent: {exc}", file=sys.stderr)
            return 1
        if started_redis:
            print(started_redis)
    local_ray.cli_env()
    os.environ["VOICE_STORE_PATH"] = str(settings.store_path.resolve())
    ports = settings.ray_port, settings.dashboard_port, settings.metrics_port
    if local_ray.listening(settings.ray_port):
        print(f"Ray already running on 127.0.0.1:{settings.ray_port}; deploying onto it")
    else:
        cmd = [
            local_ray.ray_bin(),
            "start",
            "--head",
            f"--port={ports[0]}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={settings.ray_num_cpus:g}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports[1]}",
            f"--metrics-export-port={ports[2]}",
            "--disable-usage-stats",
        ]
        if (created := local_ray.ensure_auth_token()) is not None:
            print(f"created Ray's authentication token at {created}")
        print(f"starting Ray: {' '.join(cmd[1:])}")
        started = subprocess.run(cmd, capture_output=True, text=True)
        if started.returncode != 0:
            detail = (started.stderr or started.stdout).strip().splitlines()[-3:]
            print("voice-agent: `ray start` failed: " + " / ".join(detail), file=sys.stderr)
            print("  logs: /tmp/ray/session_latest/logs", file=sys.stderr)
            return 1
    import ray

    ray.init(address=f"127.0.0.1:{settings.ray_port}", namespace="serve", log_to_driver=False)
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
  Call:       ws://{settings.http_host}:{settings.http_port}/ws/call?caller_id=YOU&sample_rate=16000
              (protocol: docs/protocol.md)
  Health:     {base}/health   {base}/ready
  Dashboard:  http://127.0.0.1:{ports[1]}    Prometheus metrics: http://127.0.0.1:{ports[2]}/metrics
First call (speaks two sample WAVs, prints transcripts, replies and latency):
  .venv/bin/voice-call {" ".join(rel)}
Stop:  .venv/bin/voice-agent down"""
    )
    return 0


def down(_args) -> int:
    """Shut Serve down, then stop this platform's Ray cluster only (not `ray stop`, which ends
    every Ray cluster on the machine)."""
    import psutil

    settings = load_settings()
    local_ray.cli_env()
    if local_ray.listening(settings.ray_port):
        import ray
        from ray import serve

        try:
            ray.init(address=f"127.0.0.1:{settings.ray_port}", namespace="serve", log_to_driver=False)
            serve.shutdown()
        except Exception as exc:  # stop the processes all the same
            print(f"voice-agent: Serve did not shut down cleanly: {exc}", file=sys.stderr)
        finally:
            ray.shutdown()
    procs = local_ray.cluster_processes(settings.ray_port)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    if store_redis.stop():
        print("redis-server stopped (its data stays in data/redis)")
    print("voice agent stopped")
    return 0


def status(_args) -> int:
    settings = load_settings()
    if not local_ray.listening(settings.ray_port):
        print("not running (start with: voice-agent up)")
        return 1
    code, body = _get_json(f"http://{settings.http_host}:{settings.http_port}/ready")
    print(f"ready: HTTP {code} {body}")
    return 0 if code == 200 else 1


def secrets_push(args) -> int:
    """For `serve deploy serve_config.yaml` on a cluster: hand this shell's secret variables
    (cloud keys, VOICE_ADMIN_TOKEN) to the replicas through Ray's KV store, as `up` does."""
    _export_dotenv()
    local_ray.cli_env()
    import ray

    ray.init(address=args.address or f"127.0.0.1:{load_settings().ray_port}", namespace="serve", log_to_driver=False)
    try:
        names = cluster.publish_secrets()
    finally:
        ray.shutdown()
    print(f"secrets stored for the replicas: {', '.join(names) or 'none'} (redeploy or restart replicas to read them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    mask_logs_in_this_process()  # the CLI logs callers (customers, sessions): masked as the platform is
    p = argparse.ArgumentParser(prog="voice-agent", description="Run the voice-agent platform on a local Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start Ray on 127.0.0.1 and deploy serve_config.yaml").set_defaults(func=up)
    sub.add_parser("down", help="shut the platform and Ray down").set_defaults(func=down)
    sub.add_parser("status", help="is the platform up and ready?").set_defaults(func=status)
    customers_cli.add_parser(sub)
    governance_cli.add_parsers(sub)
    session_cli.add_parser(sub)
    secrets = sub.add_parser("secrets", help="secrets for the replicas (never in the runtime_env)")
    push = secrets.add_subparsers(dest="action", required=True).add_parser(
        "push", help="store this shell's secrets in the cluster"
    )
    push.add_argument("--address", help="Ray address (default: the local head, VOICE_RAY_PORT)")
    push.set_defaults(func=secrets_push)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
