"""Fixtures shared by the whole suite."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server of the folder it yields beside its address (web-download tests)."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
