"""The platform's local Ray listens on loopback only, though this process imported Ray first."""

from __future__ import annotations

import ipaddress
import os

import psutil


def _listening_off_loopback(root: psutil.Process) -> list[str]:
    """`name address:port` for each TCP socket a process under `root` listens on off loopback."""
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            sockets = proc.net_connections(kind="tcp")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for s in sockets:
            ip = ipaddress.ip_address(s.laddr.ip)
            ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is loopback too
            if s.status == psutil.CONN_LISTEN and not ip.is_loopback:
                found.append(f"{name} {s.laddr.ip}:{s.laddr.port}")
    return found


def test_every_ray_process_of_the_platform_listens_on_loopback_only(platform):
    import ray

    assert "ray._private.ray_constants" in __import__("sys").modules  # Ray was imported before it started
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    me = psutil.Process(os.getpid())
    assert len(me.children(recursive=True)) > 10  # GCS, raylet, agents, replicas, session actors
    assert _listening_off_loopback(me) == []
