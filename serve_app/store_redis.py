"""`voice-agent up`'s Redis: the store VOICE_STORE_URL names must answer before replicas start.

On one machine (the URL names 127.0.0.1 or localhost) `up` starts Debian's redis-server there
when nothing answers, its files (config, append-only log, pid) under data/redis, and `down`
stops the one it started. A remote server is the operator's: when it does not answer, `up`
stops at once naming it, rather than deploying replicas that fail at their first checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.connection import parse_url

from common.config import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "data" / "redis"
LOOPBACK = ("127.0.0.1", "localhost")


class RedisUnavailable(RuntimeError):
    """The configured Redis cannot be used, and why, in one line naming the setting."""


def _where(url: str) -> tuple[str, int, str | None]:
    parts = parse_url(url)
    return parts.get("host", "localhost"), int(parts.get("port", 6379)), parts.get("password")


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Does a Redis answer at `url`? A wrong password is not "no": it raises, naming it."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:
        host, port, _ = _where(url)
        raise RedisUnavailable(f"redis at {host}:{port} refused VOICE_STORE_URL's credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1" if host == "localhost" else host, port)) == 0


def ensure(url: str, data_dir: Path = DATA_DIR, ray_port: int | None = None, timeout_s: float = 10.0) -> str | None:
    """Make the Redis at `url` answer: a line saying what was started, None if one already
    answered. RedisUnavailable when it cannot: remote and silent, or its port taken by another
    program (Ray's GCS, `ray_port`, among them), or no redis-server installed."""
    host, port, password = _where(url)
    if answers(url):
        return None
    if host not in LOOPBACK:
        raise RedisUnavailable(
            f"VOICE_STORE_URL names redis at {host}:{port}, which does not answer: start it there "
            "(or leave VOICE_STORE_URL unset for the SQLite store on one machine)"
        )
    if port == ray_port:
        raise RedisUnavailable(f"VOICE_STORE_URL's port {port} is Ray's (VOICE_RAY_PORT): give Redis another")
    if _port_taken(host, port):
        raise RedisUnavailable(f"127.0.0.1:{port} (VOICE_STORE_URL) is taken by a program that is not Redis")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not installed: run scripts/setup.sh (it installs Debian's)")
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "redis.conf"
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        f'dir "{data_dir}"',
        "daemonize yes",
        f'pidfile "{data_dir / "redis.pid"}"',
        f'logfile "{data_dir / "redis.log"}"',
        "appendonly yes",  # lockouts and audit may live here too: kept across a restart
        'save ""',
    ]
    if password:
        lines.append(f'requirepass "{password}"')  # in a 0600 file, not on a command line `ps` shows
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    started = subprocess.run([binary, str(conf)], capture_output=True, text=True)
    deadline = time.monotonic() + timeout_s
    while not answers(url, timeout_s=0.5):
        if started.returncode != 0 or time.monotonic() > deadline:
            detail = (started.stderr or started.stdout).strip() or f"see {data_dir / 'redis.log'}"
            raise RedisUnavailable(f"redis-server did not start on 127.0.0.1:{port} ({detail})")
        time.sleep(0.1)
    return f"started redis-server on 127.0.0.1:{port} (files in {data_dir})"


def stop(data_dir: Path = DATA_DIR, timeout_s: float = 10.0) -> bool:
    """Stop the redis-server `ensure` started (its pid file); False when none runs."""
    import psutil

    pid_file = data_dir / "redis.pid"
    try:
        proc = psutil.Process(int(pid_file.read_text().strip()))
        if "redis-server" not in proc.name():
            return False  # a stale pid file whose pid was reused
        proc.terminate()  # SIGTERM: redis flushes its append-only log and exits
        try:
            proc.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
    except (OSError, ValueError, psutil.Error):
        return False
    finally:
        pid_file.unlink(missing_ok=True)
    return True
