"""Start a local Ray on loopback and deploy serve_config.yaml: shared by the CLI and the tests."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import yaml

from common import secret_store
from serve_app import gpu

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "serve_config.yaml"
FORWARDED_ENV = ("VOICE_", "DEEPGRAM_API_KEY", "OPENAI_API_KEY", "LANGFUSE_")


def loopback_env() -> None:
    """Keep GCS, raylet, workers and the dashboard on 127.0.0.1 and ask nothing of the internet."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # Ray reads that variable once, when it is imported: a process that imported it before
    # (most do) would otherwise resolve "127.0.0.1" to the machine's routable address and
    # start every Ray service there. Its workers inherit the variable and read it themselves.
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Serve's proxy is uvicorn, which by default believes X-Forwarded-For from 127.0.0.1: any
    # local client could then pick its own address for the per-address call limit. Trust no
    # proxy unless the operator names theirs (FORWARDED_ALLOW_IPS=10.0.0.5 before `up`).
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
    bounded_history_env()


# Ray keeps every task's events (100,000 by default) and every ended actor (100,000) in the GCS for
# its dashboard and state API. Each Serve request is an actor task and each call ends an actor, so
# on a long-running box that history, not the calls, grows the GCS for hours: keep the recent part.
RAY_HISTORY = {
    "RAY_task_events_max_num_task_in_gcs": "10000",
    "RAY_maximum_gcs_destroyed_actor_cached_count": "1000",
}


def bounded_history_env() -> None:
    """Bound what Ray's GCS keeps of finished tasks and ended actors (an operator's value wins)."""
    for key, value in RAY_HISTORY.items():
        os.environ.setdefault(key, value)


def local_ray(num_cpus: float, namespace: str = "serve") -> None:
    """A Ray of this process's own (tests, benchmarks) on loopback: never a running platform's,
    its node's address 127.0.0.1 as `voice-agent up`'s is, no dashboard."""
    import ray

    loopback_env()
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        namespace=namespace,
    )


def settings_env() -> dict[str, str]:
    """VOICE_* (and LANGFUSE_*) settings of this process (secrets included: load_config keeps those out)."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def load_config(path: Path = CONFIG_PATH, http_port: int | None = None, env: dict[str, str] | None = None) -> dict:
    """serve_config.yaml with `env` in every application's runtime_env, secrets left out
    (`deploy` hands those over through Ray's KV store: common/secret_store.py), and a GPU for
    each ASR replica when the env_vars set VOICE_WHISPER_DEVICE=cuda (serve_app/gpu.py)."""
    config = yaml.safe_load(Path(path).read_text())
    plain, _ = secret_store.split_env(env or {})
    if http_port is not None:
        config.setdefault("http_options", {})["port"] = http_port
        plain["VOICE_HTTP_PORT"] = str(http_port)  # the Gateway's default allowed hosts and origins name it
    for app in config["applications"]:
        runtime_env = app.setdefault("runtime_env", {})
        runtime_env.setdefault("env_vars", {}).update(plain)
    return gpu.asr_gpus(config)


def publish_secrets(env: dict[str, str] | None = None) -> list[str]:
    """Hand this process's secret variables to the cluster's replicas (KV store); their names."""
    _, secrets = secret_store.split_env(settings_env() if env is None else env)
    secret_store.publish(secrets)
    return sorted(secrets)


def deploy(config: dict, timeout_s: float = 300) -> None:
    """Deploy a serve_config dict on the connected Ray and wait until every app runs; this
    process's secrets go to the replicas through the KV store first."""
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    env_vars = [k for app in config["applications"] for k in app.get("runtime_env", {}).get("env_vars", {})]
    leaked = [k for k in env_vars if secret_store.is_secret(k)]
    if leaked:
        raise ValueError(f"secrets in a runtime_env would show in `serve config`: {', '.join(leaked)}")
    if gpu.gpus_needed(config):
        import ray

        gpu.check_gpus(config, ray.cluster_resources())  # else the replica waits PENDING for a GPU never coming
    publish_secrets()
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema, _blocking=False)
    names = [a.name for a in schema.applications]
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {n: apps[n].status if n in apps else "NOT_STARTED" for n in names}
        if all(s == "RUNNING" for s in states.values()):
            return
        for n, s in states.items():
            if s in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise RuntimeError(f"application {n} {s}: {apps[n].message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {timeout_s:.0f}s: {states}")
        time.sleep(0.5)
