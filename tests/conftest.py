"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import ServerURL, postgres_server, redis_server

# Servers the tests start run jobs inline (at once, in the process that submits them) unless
# a test asks for a real worker: tests/test_jobs*.py start workers on each kind of queue.
os.environ.setdefault("COVERSLIP_JOBS_BACKEND", "inline")

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
