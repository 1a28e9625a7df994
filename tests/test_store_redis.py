"""`voice-agent up`'s Redis (serve_app/store_redis.py), with Debian's real redis-server."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from serve_app import store_redis
from serve_app.store_redis import RedisUnavailable
from tests.redis_server import redis_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_loopback_url_with_nothing_there_gets_a_server_that_down_stops(tmp_path):
    port = _free_port()
    url = f"redis://:s3cret-pw@localhost:{port}/2"
    started = store_redis.ensure(url, tmp_path / "redis")
    try:
        assert started and f"127.0.0.1:{port}" in started
        client = redis.Redis.from_url(url)
        client.set("voice:probe", "1")
        assert client.get("voice:probe") == b"1"
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:  # the URL's password is required
            conn.sendall(b"PING\r\n")
            assert conn.recv(64).startswith(b"-NOAUTH")
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0  # the password file is private
        assert "s3cret" not in " ".join(_cmdline(tmp_path / "redis" / "redis.pid"))
        assert store_redis.ensure(url, tmp_path / "redis") is None  # up again: it answers, nothing started
    finally:
        assert store_redis.stop(tmp_path / "redis")
    assert not store_redis.answers(url) and not store_redis.stop(tmp_path / "redis")
    again = store_redis.ensure(url, tmp_path / "redis")  # restarted on its append-only log: the data is kept
    try:
        assert again and redis.Redis.from_url(url).get("voice:probe") == b"1"
    finally:
        store_redis.stop(tmp_path / "redis")


def _cmdline(pid_file) -> list[str]:
    import psutil

    return psutil.Process(int(pid_file.read_text())).cmdline()


def test_a_server_already_answering_is_used_as_it_is(tmp_path):
    with redis_server(tmp_path) as url:
        assert store_redis.ensure(url, tmp_path / "redis") is None
        assert not (tmp_path / "redis").exists() and not store_redis.stop(tmp_path / "redis")


def test_a_remote_server_that_does_not_answer_fails_fast_naming_it(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailable, match=r"VOICE_STORE_URL names redis at 192\.0\.2\.1:6390"):
        store_redis.ensure("redis://192.0.2.1:6390/0", tmp_path / "redis")  # TEST-NET-1: nothing there
    assert time.monotonic() - t0 < 5 and not (tmp_path / "redis").exists()


def test_a_loopback_port_held_by_another_program_or_ray_is_refused(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(RedisUnavailable, match="not Redis"):
            store_redis.ensure(f"redis://127.0.0.1:{port}/0", tmp_path / "redis")
    with pytest.raises(RedisUnavailable, match="VOICE_RAY_PORT"):
        store_redis.ensure("redis://127.0.0.1:6379/0", tmp_path / "redis", ray_port=6379)


def test_up_stops_before_ray_when_the_remote_store_does_not_answer(monkeypatch, tmp_path, capsys):
    from serve_app.cli import main

    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("VOICE_STORE_URL", "redis://192.0.2.1:6390/0")
    monkeypatch.setenv("VOICE_RAY_PORT", str(_free_port()))  # were Ray started by mistake, not on a shared port
    assert main(["up"]) == 1
    err = capsys.readouterr().err
    assert "192.0.2.1:6390, which does not answer" in err and "starting Ray" not in err
