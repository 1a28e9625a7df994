"""GPU placement for ASR: the device setting becomes Ray's `num_gpus`, checked before deploying.

Serve replaces a deployment's code-level `ray_actor_options` with serve_config.yaml's whole dict,
so the GPU request is written into the config that gets deployed, not only into the code. A
replica that asks for a GPU the cluster lacks would wait PENDING for ever: refuse that up front.
"""

from __future__ import annotations

from collections.abc import Mapping

ASR = "ASR"
DEVICE_VARS = ("VOICE_WHISPER_DEVICE", "VOICE_ASR_DEVICE")  # same order as the Settings field's AliasChoices


class GPUUnavailable(RuntimeError):
    """The config asks Ray for more GPUs than the cluster has."""


def device_setting(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, value) of the ASR device setting in `env`, the first alias set; None when unset."""
    for name in DEVICE_VARS:
        if env.get(name, "").strip():
            return name, env[name].strip().lower()
    return None


def asr_gpus(config: dict) -> dict:
    """Ask Ray for one GPU per ASR replica where an application's env_vars say cuda; a num_gpus
    already in serve_config.yaml wins (0 included)."""
    for app in config["applications"]:
        setting = device_setting(app.get("runtime_env", {}).get("env_vars", {}))
        if setting is None or setting[1] != "cuda":
            continue
        for deployment in app.get("deployments", []):
            if deployment.get("name") == ASR:
                deployment.setdefault("ray_actor_options", {}).setdefault("num_gpus", 1)
    return config


def _start_replicas(deployment: dict) -> int:
    """Replicas Serve starts at deploy time (at least one: a scaled-to-zero ASR still needs a GPU at the first call)."""
    auto = deployment.get("autoscaling_config")
    if auto:
        start = auto.get("initial_replicas")
        return max(1, int(start if start is not None else auto.get("min_replicas", 1)))
    replicas = deployment.get("num_replicas", 1)
    return max(1, replicas if isinstance(replicas, int) else 1)


def gpus_needed(config: dict) -> list[tuple[str, float, str]]:
    """(deployment, GPUs its starting replicas need, why) for each deployment that asks for a GPU."""
    needs = []
    for app in config["applications"]:
        env_vars = app.get("runtime_env", {}).get("env_vars", {})
        for deployment in app.get("deployments", []):
            per_replica = float(deployment.get("ray_actor_options", {}).get("num_gpus") or 0)
            if per_replica <= 0:
                continue
            setting = device_setting(env_vars) if deployment.get("name") == ASR else None
            why = f"{setting[0]}={setting[1]}" if setting else "ray_actor_options.num_gpus in serve_config.yaml"
            needs.append((deployment["name"], per_replica * _start_replicas(deployment), why))
    return needs


def check_gpus(config: dict, resources: Mapping[str, float]) -> None:
    """Raise GPUUnavailable, naming the setting and what Ray reports, when `resources`
    (ray.cluster_resources()) cannot hold the GPUs the config asks for."""
    needs = gpus_needed(config)
    total = sum(n for _, n, _ in needs)
    have = float(resources.get("GPU", 0))
    if total <= have:
        return
    asks = ", ".join(f"{name} {n:g} ({why})" for name, n, why in needs)
    reported = f"GPU: {have:g}" if "GPU" in resources else "no GPU resource"
    raise GPUUnavailable(
        f"the config asks Ray for {total:g} GPU(s) ({asks}) but ray.cluster_resources() reports {reported}; "
        "unset the setting (ASR then runs CPU int8) or run on a GPU node"
    )
