"""The real servers the tests start answer, and leave nothing behind when stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from tests.servers import (
    ServerURL,
    free_port,
    port_open,
    postgres_server,
    redis_server,
    wait_for_port,
)


def assert_gone(url: ServerURL) -> None:
    assert not port_open("127.0.0.1", url.port)
    with pytest.raises(ProcessLookupError):
        os.killpg(url.pid, 0)  # the server and every process it started
    assert not url.directory.exists()


def test_wait_for_port_gives_up_on_a_closed_port() -> None:
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", free_port(), timeout=0.1)


@pytest.mark.postgres
def test_postgres_url_serves_a_database(postgres_url: ServerURL) -> None:
    assert postgres_url == f"postgresql+psycopg://coverslip@127.0.0.1:{postgres_url.port}/coverslip"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id serial PRIMARY KEY, name text)"))
            conn.execute(sa.text("INSERT INTO probe (name) VALUES ('α'), ('β')"))
        with engine.begin() as conn:
            names = conn.execute(sa.text("SELECT name FROM probe ORDER BY id")).scalars()
            assert list(names) == ["α", "β"]
            assert conn.execute(sa.text("SHOW server_encoding")).scalar() == "UTF8"
            assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
            conn.execute(sa.text("DROP TABLE probe"))
    finally:
        engine.dispose()


def test_redis_url_serves_redis(redis_url: ServerURL) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_url.port}/0"
    client = redis.Redis.from_url(redis_url)
    try:
        client.set("probe", "v", ex=60)
        assert client.get("probe") == b"v"
        assert 0 < client.ttl("probe") <= 60
        client.set("short", "v", px=50)
        time.sleep(0.1)
        assert client.get("short") is None
        client.delete("probe")
    finally:
        client.close()


@pytest.mark.postgres
def test_postgres_server_stops_and_cleans_up(tmp_path: Path) -> None:
    with postgres_server(tmp_path) as url:
        engine = sa.create_engine(url)
        with engine.connect() as conn:  # a backend process, which must go too
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
            assert port_open("127.0.0.1", url.port)
    engine.dispose()
    assert_gone(url)


def test_redis_server_stops_and_cleans_up(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    assert_gone(url)
