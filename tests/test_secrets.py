"""Secrets reach replicas through Ray's KV store, never the runtime_env that `serve config`,
`serve status` and the dashboard show (issue 11, finding 9). On the running platform:
tests/test_security.py::test_the_admin_token_reaches_the_gateway_but_no_serve_output.

The Ray test starts a small local Ray (or uses the platform's, in a full run): run it under
the platform lock."""

import hashlib
import json

import pytest

from common import secret_store
from serve_app import cluster

FAKE_KEY = "sk-fake-DO-NOT-LEAK-31f0c9e2"
FAKE_TOKEN = "admin-fake-DO-NOT-LEAK-77aa"


def test_load_config_keeps_secrets_out_of_the_runtime_env():
    env = {
        "VOICE_OPENAI_API_KEY": FAKE_KEY,
        "OPENAI_API_KEY": FAKE_KEY,
        "VOICE_DEEPGRAM_API_KEY": FAKE_KEY,
        "DEEPGRAM_API_KEY": FAKE_KEY,
        "VOICE_ADMIN_TOKEN": FAKE_TOKEN,
        "VOICE_MAX_TURNS": "7",
    }
    config = cluster.load_config(http_port=8123, env=env)
    text = json.dumps(config)
    assert FAKE_KEY not in text and FAKE_TOKEN not in text
    env_vars = config["applications"][0]["runtime_env"]["env_vars"]
    assert env_vars["VOICE_MAX_TURNS"] == "7" and env_vars["VOICE_HTTP_PORT"] == "8123"  # plain settings still travel


def test_deploy_refuses_a_config_that_carries_a_secret():
    config = cluster.load_config(env={"VOICE_MAX_TURNS": "7"})
    config["applications"][0]["runtime_env"]["env_vars"]["VOICE_OPENAI_API_KEY"] = FAKE_KEY
    with pytest.raises(ValueError, match="VOICE_OPENAI_API_KEY"):
        cluster.deploy(config)  # refused before anything reaches Ray


def test_secret_names():
    assert all(secret_store.is_secret(n) for n in secret_store.KNOWN)
    assert secret_store.is_secret("VOICE_SOMETHING_PASSWORD") and not secret_store.is_secret("VOICE_HTTP_PORT")


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    if ray.is_initialized():  # the platform's Ray, in a full run
        yield ray
        return
    cluster.local_ray(1, "secrets-test")
    try:
        yield ray
    finally:
        ray.shutdown()


def _sha(secret) -> str | None:
    return hashlib.sha256(secret.get_secret_value().encode()).hexdigest() if secret is not None else None


def test_secrets_reach_a_ray_worker_through_the_kv_store(ray_runtime, monkeypatch):
    from common.config import load_settings

    ray = ray_runtime
    saved = secret_store.fetch(secret_store.KNOWN)
    for name in secret_store.KNOWN:
        monkeypatch.delenv(name, raising=False)
    try:
        env = {"VOICE_OPENAI_API_KEY": FAKE_KEY, "VOICE_ADMIN_TOKEN": FAKE_TOKEN, "VOICE_MAX_TURNS": "7"}
        published = cluster.publish_secrets(env)
        assert published == ["VOICE_ADMIN_TOKEN", "VOICE_OPENAI_API_KEY"]

        @ray.remote(num_cpus=0)
        def replica_settings():
            """What a replica's settings load sees: its environment has no secret."""
            import os

            from common.config import load_settings

            # A worker of the platform's Ray (full run) inherited the test env's admin token:
            # take every secret out of this worker's environment, as a replica's would be.
            held = {n: os.environ.pop(n) for n in secret_store.KNOWN if n in os.environ}
            try:
                s = load_settings()
                in_env = os.environ.get("VOICE_OPENAI_API_KEY")
            finally:
                os.environ.update(held)
            return _sha(s.openai_api_key), _sha(s.admin_token), s.deepgram_api_key, in_env

        assert ray.get(replica_settings.remote()) == (_sha_str(FAKE_KEY), _sha_str(FAKE_TOKEN), None, None)
        assert load_settings().openai_api_key.get_secret_value() == FAKE_KEY  # any Ray process, the driver too
        monkeypatch.setenv("OPENAI_API_KEY", "from-the-environment")
        assert load_settings().openai_api_key.get_secret_value() == "from-the-environment"  # the environment wins
        cluster.publish_secrets({})  # a key taken out of the deployer's environment does not linger
        assert ray.get(replica_settings.remote())[:2] == (None, None)
    finally:
        secret_store.publish(saved)


def _sha_str(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
