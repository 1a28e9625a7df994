"""The cluster deployments keep their promises, checked on the files alone (no cluster, no Ray
started): cluster.yaml for Ray's cluster launcher and the KubeRay manifests, whose embedded Serve
config must equal serve_config.yaml apart from the overrides documented here and in the manifest."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from common.config import Settings
from common.secret_store import is_secret

ROOT = Path(__file__).resolve().parent.parent
KUBERAY = ROOT / "deploy" / "kuberay"
VENV_PATH = 'export PATH="$HOME/voice-agent/.venv/bin:$PATH"'
RAY_COMMAND = re.compile(r"(?:^|[\s;&|(])ray\s")
ANY = object()  # an override whose value the operator sets

# Where the RayService's Serve config may differ from serve_config.yaml: path -> (value, why).
ALLOWED_OVERRIDES = {
    "http_options.host": ("0.0.0.0", "in a pod the proxies listen on the pod's address for the Serve Service"),
    "applications[voice].runtime_env.env_vars.VOICE_ALLOWED_HOSTS": (ANY, "the public host name callers use"),
    "applications[voice].runtime_env.env_vars.VOICE_ALLOWED_ORIGINS": (ANY, "the caller page's origin"),
    "applications[voice].deployments[ASR].ray_actor_options.num_gpus": (1, "ASR replicas go to the gpu group"),
    "applications[voice].deployments[ASR].ray_actor_options.runtime_env.env_vars.VOICE_WHISPER_DEVICE": (
        "cuda",
        "float16 on the GPU, never a quiet CPU fallback",
    ),
}
MISSING = "<missing>"


def flatten(node, prefix: str = "") -> dict[str, object]:
    """Leaves by path; lists of named items (applications, deployments) keyed by name, so a path
    names the same setting in both files whatever the order."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and node and all(isinstance(i, dict) and "name" in i for i in node):
        out = {}
        for item in node:
            out.update(flatten({k: v for k, v in item.items() if k != "name"}, f"{prefix}[{item['name']}]"))
        return out
    return {prefix: node}


def differences(base: dict, embedded: dict) -> dict[str, tuple[object, object]]:
    a, b = flatten(base), flatten(embedded)
    return {
        p: (a.get(p, MISSING), b.get(p, MISSING)) for p in a.keys() | b.keys() if a.get(p, MISSING) != b.get(p, MISSING)
    }


def unexplained(base: dict, embedded: dict) -> list[str]:
    """Every difference that is not a documented override, and every documented override that is
    wrong or no longer differs (stale documentation)."""
    diffs, flat = differences(base, embedded), flatten(embedded)
    problems = [
        f"{p}: serve_config.yaml {a!r}, manifest {b!r}" for p, (a, b) in diffs.items() if p not in ALLOWED_OVERRIDES
    ]
    for path, (value, _why) in ALLOWED_OVERRIDES.items():
        if path not in diffs:
            problems.append(f"{path}: documented override no longer differs from serve_config.yaml")
        elif flat.get(path, MISSING) is MISSING or (value is not ANY and flat[path] != value):
            problems.append(f"{path}: override should be {value!r}, manifest has {flat.get(path, MISSING)!r}")
    return sorted(problems)


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def rayservice() -> dict:
    (service,) = [d for d in load_all(KUBERAY / "rayservice.yaml") if d["kind"] == "RayService"]
    return service


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def serve_config() -> dict:
    return yaml.safe_load((ROOT / "serve_config.yaml").read_text())


def embedded(rayservice: dict) -> dict:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def test_embedded_serve_config_is_serve_config_yaml_apart_from_documented_overrides(rayservice):
    assert unexplained(serve_config(), embedded(rayservice)) == []
    text = (KUBERAY / "rayservice.yaml").read_text()
    undocumented = [p for p in ALLOWED_OVERRIDES if f"#   {p}" not in text]
    assert undocumented == [], "each override must be explained in the manifest's header comment"


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["applications"][0]["deployments"][0].update(max_ongoing_requests=101),
        lambda c: c["applications"][0]["deployments"].append({"name": "Reranker", "num_replicas": 1}),
        lambda c: c["applications"][0]["runtime_env"]["env_vars"].pop("OMP_NUM_THREADS"),
        lambda c: c["http_options"].update(port=8001),
        lambda c: c["applications"][0]["deployments"][1]["ray_actor_options"].update(num_gpus=1),
    ],
)
def test_an_edit_of_serve_config_yaml_alone_is_caught(rayservice, edit):
    edited = serve_config()
    edit(edited)
    assert unexplained(edited, embedded(rayservice)) != []


def test_embedded_serve_config_is_valid_for_serve(rayservice):
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(embedded(rayservice))


def test_cluster_yaml_passes_ray_launcher_validation(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cluster))
    for address in [cluster["provider"]["head_ip"], *cluster["provider"]["worker_ips"]]:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", address), f"{address!r} is no IP address or DNS name"


def start_commands(cluster: dict) -> list[str]:
    return cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]


def test_venv_is_on_path_before_any_ray_command(cluster):
    for cmd in cluster["setup_commands"]:
        assert not RAY_COMMAND.search(cmd), f"setup runs ray before the venv exists: {cmd}"
    setup = "\n".join(cluster["setup_commands"])
    assert setup.index("scripts/setup.sh") < setup.index(".bashrc"), "the venv is made, then put on PATH"
    for cmd in start_commands(cluster):
        first_ray = RAY_COMMAND.search(cmd)
        if first_ray:
            assert VENV_PATH in cmd[: first_ray.start()], f"ray runs before the venv is on PATH: {cmd}"


def test_every_command_is_valid_bash_and_swallows_no_failure(cluster):
    for cmd in cluster["setup_commands"] + start_commands(cluster):
        assert not re.search(r"\|\|\s*(true|:)", cmd), f"a failure swallowed: {cmd}"
        assert subprocess.run(["bash", "-n", "-c", cmd], capture_output=True).returncode == 0, cmd


@pytest.mark.parametrize("repo", [None, "", "/nonexistent/voice-agent.git"])
def test_a_missing_or_unset_repository_stops_setup(cluster, tmp_path, repo):
    (clone,) = [c for c in cluster["setup_commands"] if "git clone" in c]
    if repo is not None:
        clone = re.sub(r"REPO=\S+;", f"REPO={repo!r};", clone, count=1)
    done = subprocess.run(
        ["bash", "-c", clone], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, capture_output=True
    )
    assert done.returncode != 0
    assert not (tmp_path / "voice-agent").exists()


def test_dashboard_on_the_heads_private_address_with_token_auth(cluster):
    head = "\n".join(cluster["head_start_ray_commands"])
    assert "0.0.0.0" not in head
    assert re.search(r'--dashboard-host="\$HEAD"', head) and re.search(r'--node-ip-address="\$HEAD"', head)
    assert re.search(r'HEAD=\$\(python .*ray_bootstrap_config\.yaml.*\["provider"\]\["head_ip"\]', head, re.S)
    for cmd in start_commands(cluster):
        if "ray start" in cmd:
            assert cmd.index("RAY_AUTH_MODE=token") < cmd.index("ray start")
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_redis_runs_on_the_head_with_a_password_and_every_node_is_told(cluster):
    head = "\n".join(cluster["head_start_ray_commands"])
    assert '"bind $HEAD"' in head and '"requirepass $REDIS_PASSWORD"' in head and '"protected-mode yes"' in head
    assert head.index("redis-server") < head.index("ray start --head")
    for cmd in start_commands(cluster):
        if "ray start" in cmd:
            (url,) = re.findall(r'VOICE_STORE_URL="([^"]+)"', cmd[: cmd.index("ray start")])
            filled = re.sub(r"\$\(cat [^)]*\)|\$\w+", "x", url)
            assert Settings(store_url=filled).store_url.get_secret_value() == filled
            assert url.endswith(":6380/0")  # not 6379, the GCS port


def ray_containers(service: dict) -> list[tuple[str, dict]]:
    spec = service["spec"]["rayClusterConfig"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, c) for name, group in groups for c in group["template"]["spec"]["containers"]]


def test_rayservice_cluster_version_auth_and_resource_requests(rayservice):
    spec = rayservice["spec"]["rayClusterConfig"]
    assert spec["rayVersion"] == importlib.metadata.version("ray")
    assert spec["authOptions"]["mode"] == "token"
    for name, container in ray_containers(rayservice):
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name


def test_gpu_worker_group_holds_asr(rayservice):
    groups = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpu = [g for g in groups if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
    assert len(gpu) == 1
    (asr,) = [d for d in embedded(rayservice)["applications"][0]["deployments"] if d["name"] == "ASR"]
    assert asr["ray_actor_options"]["num_gpus"] == 1
    per_pod = int(gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpu[0]["maxReplicas"] * per_pod >= asr["autoscaling_config"]["max_replicas"]


def test_store_url_names_the_redis_service_and_secrets_come_from_a_secret(rayservice):
    redis = {d["kind"]: d for d in load_all(KUBERAY / "redis.yaml")}
    host, port = redis["Service"]["metadata"]["name"], redis["Service"]["spec"]["ports"][0]["port"]
    for name, container in ray_containers(rayservice):
        env = {e["name"]: e for e in container["env"]}
        names = [e["name"] for e in container["env"]]
        assert env["VOICE_STORE_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{host}:{port}/0", name
        assert names.index("REDIS_PASSWORD") < names.index("VOICE_STORE_URL"), "$(VAR) expands only earlier vars"
        for var in env.values():
            if is_secret(var["name"]):
                assert "value" not in var and "secretKeyRef" in var["valueFrom"], var["name"]


def test_redis_deployment_keeps_its_data_on_a_volume_behind_a_password():
    redis = {d["kind"]: d for d in load_all(KUBERAY / "redis.yaml")}
    pod = redis["Deployment"]["spec"]["template"]
    assert redis["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == redis["PersistentVolumeClaim"]["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}
    script = container["args"][0]
    assert "requirepass $REDIS_PASSWORD" in script and "appendonly yes" in script and "dir /data" in script
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_every_way_of_starting_ray_bounds_the_gcs_history(cluster, rayservice, monkeypatch):
    """The GCS's task events and ended actors grow with every request and call for hours unless
    bounded: `voice-agent up` and the tests (loopback_env), cluster.yaml's head and KubeRay's."""
    from serve_app import cluster as local

    monkeypatch.setattr(os, "environ", dict(os.environ))  # loopback_env's other settings stay in this test
    head = "\n".join(cluster["head_start_ray_commands"])
    for key, value in local.RAY_HISTORY.items():
        assert f"{key}={value}" in head[: head.index("ray start --head")], key
        for name, container in ray_containers(rayservice):
            assert {"name": key, "value": value} in container["env"], name
        os.environ.pop(key, None)
    os.environ["RAY_task_events_max_num_task_in_gcs"] = "500"  # an operator's own value wins
    local.loopback_env()
    assert os.environ["RAY_task_events_max_num_task_in_gcs"] == "500"
    assert os.environ["RAY_maximum_gcs_destroyed_actor_cached_count"] == "1000"
