"""The real servers the tests start answer, and are gone when stopped."""

from __future__ import annotations

import socket

import redis
import sqlalchemy as sa

from tests.servers import postgres_server, redis_server


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_round_trip() -> None:
    with postgres_server() as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (42)"))
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 42
        engine.dispose()
        port = sa.engine.make_url(url).port
        assert port is not None and _port_open(port)
    assert not _port_open(port)


def test_redis_round_trip() -> None:
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        client.set("k", "v", ex=60)
        assert client.get("k") == b"v"
        assert 0 < client.ttl("k") <= 60
        port = client.connection_pool.connection_kwargs["port"]
        client.close()
    assert not _port_open(port)
