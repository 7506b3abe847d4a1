"""Coverslip's own log lines: logfmt or JSON, each with the request id that X-Request-ID gives back."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from falcon import testing

from coverslip import logs
from coverslip.home import Home
from coverslip.web import create_app


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def client_logging_to(tmp_path: Path, stream: io.StringIO, style: str) -> testing.TestClient:
    home = Home(tmp_path / "home")
    app = create_app(home.settings({}, {"web.log_format": style, "web.log_level": "debug"}), home)
    logs.configure(style, "debug", stream)  # the same lines, into the test's stream
    logs.configure_access("-", style, stream)  # and the access log
    return testing.TestClient(app)


def test_json_lines_carry_the_request_id_given_back(tmp_path: Path, stream: io.StringIO) -> None:
    client = client_logging_to(tmp_path, stream, "json")
    answer = client.simulate_get("/webgateway/imgData/424242/", headers={"X-Request-ID": "abc-123"})
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] == "abc-123"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "abc-123"]
    assert mine and mine[-1]["msg"] == "answered" and mine[-1]["status"] == "404"
    assert mine[-1]["path"] == "/webgateway/imgData/424242" and mine[-1]["level"] == "info"
    assert mine[-1]["logger"] == "coverslip.access" and mine[-1]["addr"]


def test_an_unsafe_or_missing_id_gets_a_new_one(tmp_path: Path, stream: io.StringIO) -> None:
    client = client_logging_to(tmp_path, stream, "logfmt")
    fresh = client.simulate_get("/healthz").headers["x-request-id"]
    unsafe = client.simulate_get("/healthz", headers={"X-Request-ID": 'x" injected=1'})
    assert len(fresh) == 32 and unsafe.headers["x-request-id"] not in ('x" injected=1', fresh)
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("time=") and f"request_id={unsafe.headers['x-request-id']}" in line
    assert "injected" not in line and "msg=answered" in line


def test_lines_outside_a_request_have_no_id(stream: io.StringIO) -> None:
    logs.configure("logfmt", "info", stream)
    logging.getLogger("coverslip.test").info("starting with a space")
    assert stream.getvalue().strip().endswith('logger=coverslip.test msg="starting with a space"')
