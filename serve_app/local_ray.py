"""The local Ray of `voice-agent up` and `down`: its binary, its token, its processes."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from serve_app import cluster


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def cli_env() -> None:
    """`ray start` enables token auth (~/.ray/auth_token); our driver must use it too."""
    cluster.loopback_env()
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_auth_token() -> Path | None:
    """Create Ray's token (~/.ray/auth_token, 0600) on a machine whose user never ran Ray:
    with token auth on, `ray start` refuses to start without one. Returns the path created."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file() and path.read_text().strip():
        return None
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # 256 bits, as `ray get-auth-token --generate` makes
    return path


def _args(p) -> list[str]:
    import psutil

    try:
        return p.cmdline()
    except (psutil.Error, OSError):
        return []


def session_dir(port: int) -> Path | None:
    """The session folder of the Ray cluster whose GCS listens on `port` (its logs, and the
    Prometheus service-discovery file its dashboard writes), found by its GCS's --log_dir."""
    import psutil

    for p in psutil.process_iter():
        a = _args(p)
        if a and a[0].endswith("gcs_server") and f"--gcs_server_port={port}" in a:
            log_dir = next((x.split("=", 1)[1] for x in a if x.startswith("--log_dir=")), "")
            return Path(log_dir).parent if log_dir else None
    return None


def cluster_processes(port: int) -> list:
    """The processes of the Ray cluster whose GCS listens on `port` (and their children, the
    workers): found by that cluster's session folder, so other Ray clusters on this machine live on."""
    import psutil

    session = session_dir(port)
    if session is None:
        return []
    marks = (str(session), f"--address=127.0.0.1:{port}", f"--gcs-address=127.0.0.1:{port}")
    found = {
        p.pid: p for p in psutil.process_iter() if p.pid != os.getpid() and any(m in x for x in _args(p) for m in marks)
    }
    for p in list(found.values()):
        try:
            found.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            pass
    return list(found.values())
