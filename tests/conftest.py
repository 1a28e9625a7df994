"""Shared fixtures: spoken test audio made with piper, and the real platform on Ray Serve."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"

# Limits the platform tests exercise (capacity) — set before any settings are read.
TEST_ENV = {
    "VOICE_MAX_CALLS_PER_REPLICA": "5",
    "VOICE_WARM_SESSIONS": "2",
    "VOICE_MAX_DROPPED_MESSAGES": "40",
    "VOICE_IDLE_CHECKIN_S": "10",  # short enough to test the wake-up timer, longer than a test's pauses (a redeploy)
    "VOICE_IDLE_MAX_CHECKINS": "1",
    # An operator's greeting (VOICE_GREETING), shorter than the default: nearly every platform test
    # waits for it to play out at real time before speaking (the default's are in-process tests).
    "VOICE_GREETING": "Hello. How can I help?",
    "VOICE_ADMIN_TOKEN": "platform-test-admin-token-7d41",  # a secret: reaches the Gateway through Ray's KV store
    "VOICE_CALLS_PER_MINUTE_PER_ADDRESS": "1000",  # every test calls from 127.0.0.1; per caller_id stays 10
    "VOICE_RESUME_WINDOW_S": "10",  # a dropped call is held this long for a resume (a Gateway restart fits)
    # Tests open calls back to back on a 2-core machine other runs share: a refill's spawn there can
    # take seconds, and the machine's load is not the platform's. tests/test_warm_admission.py sets
    # the production wait and forces shedding itself.
    "VOICE_WARM_WAIT_MS": "10000",
    "VOICE_SHED_LOOP_LAG_MS": "0",
    "VOICE_SHED_TURN_P95_MS": "0",
    # Phone calls (tests/test_twilio.py): the public URL Twilio would sign webhooks for, and the signing secret.
    "VOICE_PUBLIC_URL": "https://voice.test.invalid",
    "VOICE_TWILIO_AUTH_TOKEN": "twilio-test-auth-token-3f9a",
}


@pytest.fixture(scope="session")
def piper():
    from deployments.tts.engine import PiperEngine

    return PiperEngine()


@pytest.fixture(scope="session")
def speak(piper):
    """speak(text, rate=16000) -> PCM s16le of the piper voice saying `text`."""
    cache: dict = {}

    def _speak(text: str, rate: int = 16000) -> bytes:
        if (text, rate) not in cache:
            cache[(text, rate)] = b"".join(piper.synthesize(text, rate, deterministic=True))
        return cache[(text, rate)]

    return _speak


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def noise(seconds: float, amplitude: float = 0.003, rate: int = 16000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, amplitude, int(seconds * rate)) * 32767).astype(np.int16).tobytes()


@pytest.fixture(autouse=True)
def _settings_env_kept():
    """A test that leaves a VOICE_* setting behind fails: the next test's redeploy would carry it
    into every deployment's runtime_env, so all of them restart instead of the one meant."""
    from serve_app.cluster import settings_env

    before = settings_env()
    yield
    after = settings_env()
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        for k in changed:
            if k in before:
                os.environ[k] = before[k]
            else:
                os.environ.pop(k, None)
        pytest.fail(f"this test left settings changed in os.environ: {', '.join(changed)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The whole application from serve_config.yaml on a fresh local Ray (loopback only)."""
    import ray
    from ray import serve

    from serve_app import cluster

    store = tmp_path_factory.mktemp("store") / "sessions.db"
    saved = {k: os.environ.get(k) for k in [*TEST_ENV, "VOICE_STORE_PATH"]}
    os.environ.update(TEST_ENV, VOICE_STORE_PATH=str(store))
    port = _free_port()
    t0 = time.monotonic()
    cluster.local_ray(4)
    try:
        cluster.deploy(cluster.load_config(http_port=port, env=cluster.settings_env()))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "platform never became ready"
            time.sleep(0.5)
        print(f"platform up in {time.monotonic() - t0:.1f}s on port {port}")
        yield {"http": base, "ws": f"ws://127.0.0.1:{port}/ws/call", "store": store, "port": port}
    finally:
        serve.shutdown()
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def redeploy(
    platform: dict,
    deployment: str,
    env: dict[str, str] | None,
    switched,
    timeout_s: float = 120,
    replicas: int | None = None,
    also: dict[str, dict[str, str]] | None = None,
) -> None:
    """Redeploy one deployment of the running platform with extra env (None: as configured),
    until `switched()` has held 5 times in a row (old replicas drain during a rolling update).
    `replicas` pins its replica count (a test reading one replica's state through HTTP); `also`:
    other deployments' extra env in the same deploy (each deploy puts the rest back as configured)."""
    from serve_app import cluster

    config = cluster.load_config(http_port=platform["port"], env=cluster.settings_env())
    for name, extra in ({deployment: env} | (also or {})).items():
        if extra:
            spec = next(d for d in config["applications"][0]["deployments"] if d["name"] == name)
            spec["ray_actor_options"]["runtime_env"] = {"env_vars": extra}
    if replicas is not None:
        spec = next(d for d in config["applications"][0]["deployments"] if d["name"] == deployment)
        spec["autoscaling_config"] = {**spec["autoscaling_config"], "min_replicas": replicas, "max_replicas": replicas}
    cluster.deploy(config)
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 5:
        assert time.monotonic() < deadline, f"{deployment} was not redeployed within {timeout_s:.0f}s"
        try:
            streak = streak + 1 if switched() else 0
        except Exception:
            streak = 0
        time.sleep(0.2)


@pytest.fixture
def output_dir(request) -> Path:
    path = OUTPUT / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port for this test session."""
    from tests.redis_server import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def make_state(request, tmp_path, redis_url):
    """make_state(**ttls) -> the state store's parts on SQLite, then on a real redis-server;
    several share one file or server (as several processes or nodes do)."""
    import redis

    from deployments.state import redis_state, sqlite_state

    states = []
    if request.param == "redis":
        redis.Redis.from_url(redis_url).flushdb()

    def make(**ttls):
        sqlite = request.param == "sqlite"
        state = sqlite_state(tmp_path / "state.db", **ttls) if sqlite else redis_state(redis_url, **ttls)
        states.append(state)
        return state

    make.backend = request.param
    make.where = str(tmp_path / "state.db") if request.param == "sqlite" else redis_url
    yield make
    for state in states:
        state.close()


def pytest_collection_modifyitems(items):
    """The two-node and Prometheus tests first: their clusters (started by processes of their own)
    then never share the machine with the session platform fixture's Ray."""
    items.sort(key=lambda item: item.path.name not in ("test_two_nodes.py", "test_prometheus.py"))
