"""The platform on a multi-node Ray on this machine: Ray's own `ray.cluster_utils.Cluster`,
every node's services on 127.0.0.1, call state in a real redis-server on loopback.

The head runs Serve: every deployment asks for a little of `voice_head`, which only the head
carries, and one HTTP proxy (several on one address would fight over the port). Session
nodes carry `voice_session`, which session actors ask for (VOICE_SESSION_ACTOR_RESOURCES):
calls' actors live there and nowhere else.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.latency import _free_port, wait_ready

SESSION_NODE = {"num_cpus": 1, "resources": {"voice_session": 100}}


@dataclass
class Platform:
    cluster: object  # ray.cluster_utils.Cluster
    address: str  # the GCS, for another driver's ray.init
    ws: str
    store_url: str
    env: dict[str, str]  # what another driver (a CLI in a subprocess) needs
    session_nodes: dict[str, object] = field(default_factory=dict)  # node id -> ray._private.node.Node

    def add_session_node(self):
        node = self.cluster.add_node(node_ip_address="127.0.0.1", **SESSION_NODE)
        self.cluster.wait_for_nodes()
        self.session_nodes[node.node_id] = node
        return node

    def remove(self, node_id: str) -> None:
        self.cluster.remove_node(self.session_nodes.pop(node_id))

    def actor_node(self, session_id: str, timeout_s: float = 30) -> str:
        """The node id of the live actor the call's state names (it changes when one is restored)."""
        import ray

        from common.config import load_settings
        from deployments.session.store import open_store

        store = open_store(load_settings())
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                state = store.load(session_id)
                info = ray._private.state.actors(actor_id=state.actor_id) if state and state.actor_id else None
                if info and info["State"] == "ALIVE":
                    return info["Address"]["NodeID"]
                assert time.monotonic() < deadline, f"call {session_id}: no live session actor after {timeout_s} s"
                time.sleep(0.1)
        finally:
            store.close()


def _pin_to_head(config: dict) -> dict:
    config["proxy_location"] = "HeadOnly"
    for app in config["applications"]:
        for deployment in app["deployments"]:
            options = deployment.setdefault("ray_actor_options", {})
            options.setdefault("resources", {})["voice_head"] = 0.01
    return config


def _forget_address(address: str) -> None:
    """Cluster wrote its head's address where a bare `ray.init()` on this machine looks
    (/tmp/ray/ray_current_cluster): take it back once the cluster is gone."""
    from ray._private import utils

    if utils.read_ray_address() == address:
        os.unlink(utils.get_ray_address_file(None))


@contextmanager
def multi_node_platform(session_nodes: int = 2) -> Iterator[Platform]:
    """Head + `session_nodes` session nodes, the platform deployed and ready; all torn down after."""
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serve_app import cluster as serve_cluster
    from serve_app import local_ray
    from tests.redis_server import redis_server

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="two-nodes-") as tmp, redis_server(tmp) as store_url:
        os.environ.update(
            VOICE_STORE_URL=store_url,
            VOICE_STORE_PATH=str(Path(tmp) / "sessions.db"),
            VOICE_SUPPORT_DB_PATH=str(Path(tmp) / "support.db"),
            VOICE_SESSION_ACTOR_RESOURCES='{"voice_session": 0.01}',
            VOICE_IDLE_CHECKIN_S="60",
            VOICE_CALLS_PER_MINUTE_PER_ADDRESS="1000",
        )
        local_ray.cli_env()  # too late for Ray's import-time switches: the driver sets them first
        local_ray.ensure_auth_token()
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "resources": {"voice_head": 100},
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
            },
        )
        try:
            env = dict(os.environ)
            platform = Platform(cluster, cluster.address, f"ws://127.0.0.1:{port}/ws/call", store_url, env)
            for _ in range(session_nodes):
                platform.add_session_node()
            ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
            config = serve_cluster.load_config(http_port=port, env=serve_cluster.settings_env())
            serve_cluster.deploy(_pin_to_head(config))
            wait_ready(f"http://127.0.0.1:{port}")
            yield platform
        finally:
            try:
                if ray.is_initialized():
                    serve.shutdown()
            finally:
                ray.shutdown()
                address = cluster.address
                cluster.shutdown()
                _forget_address(address)
