"""The platform on a fresh local Ray (loopback), for a benchmark that drives calls at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from loadtests.latency import _free_port, wait_ready


@contextmanager
def local_platform() -> Iterator[tuple[int, dict]]:
    """Yields the HTTP port and the deployed serve config; Serve and Ray are shut down after."""
    import ray
    from ray import serve

    from serve_app import cluster

    port = _free_port()
    os.environ.setdefault("VOICE_IDLE_CHECKIN_S", "60")
    os.environ.setdefault("VOICE_CALLS_PER_MINUTE_PER_ADDRESS", "1000")  # every call here is from 127.0.0.1
    cluster.local_ray(4)
    try:
        config = cluster.load_config(http_port=port, env=cluster.settings_env())
        cluster.deploy(config)
        wait_ready(f"http://127.0.0.1:{port}")
        yield port, config
    finally:
        serve.shutdown()
        ray.shutdown()
