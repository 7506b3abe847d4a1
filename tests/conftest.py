"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import ServerURL, postgres_server, redis_server

# Real servers: one of each per session (per xdist worker), started on first use.


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    """The SQLAlchemy URL of a real PostgreSQL with an empty database ``coverslip``."""
    with postgres_server(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    """The URL of a real Redis, database 0."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
