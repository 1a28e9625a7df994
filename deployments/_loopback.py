"""Keep Serve replicas' inter-deployment gRPC server on 127.0.0.1 when Ray itself is.

Ray Serve 2.60 binds that server to `[::]:0` unconditionally (replica.py). On a
single-node Ray whose node IP is loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), nothing
outside the machine needs it, so we bind it to 127.0.0.1. On a real cluster (a routable
node IP) Serve's behaviour is left as it is.
"""

from __future__ import annotations

import os
import sys


def keep_replica_grpc_on_loopback() -> None:
    replica = sys.modules.get("ray.serve._private.replica")  # loaded only in Serve processes
    if replica is None or os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return
    original = replica.add_port_to_grpc_server
    if getattr(original, "_voice_loopback", False):
        return

    def add_port(server, address):
        if address.startswith("[::]:"):
            import ray

            if ray.util.get_node_ip_address() == "127.0.0.1":
                address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    add_port._voice_loopback = True
    replica.add_port_to_grpc_server = add_port
