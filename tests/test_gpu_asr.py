"""GPU Whisper (issue 13, point 7): the device setting becomes Ray's num_gpus for ASR, float16 on
CUDA and int8 on CPU, and asking for a GPU that is not there fails at start-up, naming the setting.

In-process, no Ray started: this machine has no GPU, so the CUDA paths are checked up to the
point where a GPU would be needed, and the real "no GPU" failures are exercised for real."""

from __future__ import annotations

import pytest
import yaml

from common.config import ConfigError, load_settings
from deployments.asr.engine import compute_type_for, pick_device, replica_device
from serve_app import cluster, gpu


def _asr(config: dict) -> dict:
    [asr] = [d for d in config["applications"][0]["deployments"] if d["name"] == "ASR"]
    return asr


def _gpu_count() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in gpu.DEVICE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "requested, gpus, expected",
    [
        ("cuda", 1, ("cuda", "float16")),
        ("cpu", 1, ("cpu", "int8")),
        ("auto", 0, ("cpu", "int8")),
        ("auto", 2, ("cuda", "float16")),
    ],
)
def test_float16_on_cuda_int8_on_cpu(requested, gpus, expected):
    assert pick_device(requested, cuda_devices=gpus) == expected
    assert compute_type_for(expected[0]) == expected[1]


def test_cuda_without_a_gpu_fails_naming_the_setting_and_what_was_found():
    with pytest.raises(RuntimeError, match=r"VOICE_WHISPER_DEVICE=cuda but no CUDA device .*0 GPUs.*unset it"):
        pick_device("cuda", cuda_devices=0)


@pytest.mark.skipif(_gpu_count() > 0, reason="a GPU is visible here")
def test_the_engine_asked_for_cuda_here_fails_at_start_up():
    from deployments.asr.engine import WhisperEngine

    with pytest.raises(RuntimeError, match="VOICE_WHISPER_DEVICE=cuda but no CUDA device is visible"):
        WhisperEngine(device="cuda")  # before any model load: ctranslate2 itself reports 0 GPUs


def test_auto_in_a_replica_follows_the_gpus_ray_gave_it():
    assert replica_device("auto", 0) == "cpu"  # Ray 2.60 leaves the node's GPUs visible: not ours to take
    assert replica_device("auto", 1) == "cuda"  # serve_config.yaml's num_gpus override alone turns CUDA on
    assert replica_device("cpu", 1) == "cpu" and replica_device("cuda", 0) == "cuda"


def test_the_device_setting_and_its_alias(clean_env):
    assert load_settings().whisper_device == "auto"
    clean_env.setenv("VOICE_ASR_DEVICE", "cuda")
    assert load_settings().whisper_device == "cuda"
    clean_env.setenv("VOICE_WHISPER_DEVICE", "cpu")
    assert load_settings().whisper_device == "cpu"  # the documented name wins, as in gpu.device_setting
    assert gpu.device_setting({"VOICE_ASR_DEVICE": "cuda", "VOICE_WHISPER_DEVICE": "cpu"}) == (
        "VOICE_WHISPER_DEVICE",
        "cpu",
    )
    clean_env.setenv("VOICE_WHISPER_DEVICE", "gpu")
    with pytest.raises(ConfigError, match="VOICE_WHISPER_DEVICE"):
        load_settings()


def test_cpu_stays_the_default_deployment():
    config = cluster.load_config(env={"VOICE_MAX_TURNS": "7"})
    assert "num_gpus" not in _asr(config)["ray_actor_options"]
    assert gpu.gpus_needed(config) == []
    gpu.check_gpus(config, {"CPU": 4.0})  # nothing asked, nothing checked


@pytest.mark.parametrize("var", gpu.DEVICE_VARS)
def test_cuda_asks_ray_for_one_gpu_per_asr_replica(var):
    config = cluster.load_config(env={var: "cuda"})
    assert _asr(config)["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 1}
    others = [d for d in config["applications"][0]["deployments"] if d["name"] != "ASR"]
    assert all("num_gpus" not in d.get("ray_actor_options", {}) for d in others)
    assert gpu.gpus_needed(config) == [("ASR", 1.0, f"{var}=cuda")]


def _yaml_with_asr_gpus(tmp_path, num_gpus: float):
    config = yaml.safe_load(cluster.CONFIG_PATH.read_text())
    _asr(config)["ray_actor_options"]["num_gpus"] = num_gpus
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_serve_config_override_of_num_gpus_wins(tmp_path):
    path = _yaml_with_asr_gpus(tmp_path, 0.5)
    config = cluster.load_config(path, env={"VOICE_WHISPER_DEVICE": "cuda"})
    assert _asr(config)["ray_actor_options"]["num_gpus"] == 0.5
    config = cluster.load_config(path, env={})
    assert gpu.gpus_needed(config) == [("ASR", 0.5, "ray_actor_options.num_gpus in serve_config.yaml")]
    zero = cluster.load_config(_yaml_with_asr_gpus(tmp_path, 0), env={"VOICE_WHISPER_DEVICE": "cuda"})
    assert _asr(zero)["ray_actor_options"]["num_gpus"] == 0 and gpu.gpus_needed(zero) == []


def test_the_pre_deploy_check_against_the_cluster_resources():
    config = cluster.load_config(env={"VOICE_WHISPER_DEVICE": "cuda"})
    with pytest.raises(gpu.GPUUnavailable, match=r"VOICE_WHISPER_DEVICE=cuda.*reports no GPU resource.*GPU node"):
        gpu.check_gpus(config, {"CPU": 4.0, "memory": 8e9})
    gpu.check_gpus(config, {"CPU": 4.0, "GPU": 1.0})
    _asr(config)["autoscaling_config"]["min_replicas"] = 2  # two replicas at start: two GPUs
    with pytest.raises(gpu.GPUUnavailable, match="asks Ray for 2 GPU.*reports GPU: 1"):
        gpu.check_gpus(config, {"CPU": 4.0, "GPU": 1.0})


def test_deploy_refuses_a_gpu_config_on_a_cluster_without_one(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})  # what Ray reports on this machine
    config = cluster.load_config(env={"VOICE_ASR_DEVICE": "cuda"})
    with pytest.raises(RuntimeError, match="VOICE_ASR_DEVICE=cuda"):  # `voice-agent up` prints it: deploy failed
        cluster.deploy(config)  # refused before Serve starts, instead of a replica PENDING for ever


def test_the_app_builder_asks_for_a_gpu_without_a_serve_config(clean_env):
    from serve_app.app import asr_deployment

    assert "num_gpus" not in asr_deployment(load_settings()).ray_actor_options
    clean_env.setenv("VOICE_WHISPER_DEVICE", "cuda")
    assert asr_deployment(load_settings()).ray_actor_options == {"num_cpus": 0.5, "num_gpus": 1}
