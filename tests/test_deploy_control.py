"""Process control without a real application server: validation exit codes, warnings, pid
files, the WSGI wrappers the launchers add, and the readiness endpoint."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import falcon
import falcon.testing
import pytest
from click.testing import CliRunner

from coverslip import config
from coverslip.cli import main
from coverslip.deploy import checks, process, servers
from coverslip.deploy.checks import Exit
from coverslip.deploy.cli import register
from coverslip.deploy.forwarded import trust_forwarded
from coverslip.deploy.wsgi_input import ChunkedInput, mark_input_terminated
from coverslip.home import Home
from coverslip.web import ops
from coverslip.web.middleware import PROXY_ADDR

register(main)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


def run(home: Home, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["--home", str(home.root), *args], env=env)


# -- validation before start ------------------------------------------------------------


def test_status_of_a_home_that_never_started(home: Home) -> None:
    result = run(home, "web", "status")
    assert (result.exit_code, result.output.strip()) == (1, "NOT STARTED")
    result = run(home, "thumbs", "stop")
    assert result.exit_code == 0 and "NOT STARTED" in result.output


def test_start_refuses_when_the_pid_file_names_a_live_process(home: Home) -> None:
    process.pid_file(home, "web").parent.mkdir(parents=True)
    process.pid_file(home, "web").write_text(f"{os.getpid()}\n")
    result = run(home, "web", "start")
    assert result.exit_code == Exit.ALREADY_RUNNING
    assert f"already running (PID {os.getpid()})" in result.output
    status = run(home, "web", "status")
    assert (status.exit_code, status.output.strip()) == (0, f"RUNNING (PID {os.getpid()})")


def test_a_stale_pid_file_is_removed(home: Home) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    process.pid_file(home, "thumbs").parent.mkdir(parents=True)
    process.pid_file(home, "thumbs").write_text(f"{dead.pid}\n")
    assert run(home, "thumbs", "status").exit_code == 1
    assert not process.pid_file(home, "thumbs").exists()


def test_start_refuses_a_busy_port(home: Home) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(home, "thumbs", "start", "--port", str(port))
    assert result.exit_code == Exit.PORT_BUSY, result.output
    assert f"127.0.0.1:{port} is in use" in result.output


def test_start_refuses_an_unwritable_run_folder(home: Home) -> None:
    home.root.mkdir(parents=True)
    home.run.write_text("a file where the run folder should be")
    result = run(home, "web", "start")
    assert result.exit_code == Exit.NOT_WRITABLE, result.output
    assert "not a writable folder" in result.output


def test_start_refuses_an_unwritable_log_file_folder(home: Home, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    result = run(
        home, "web", "start", env={"COVERSLIP_WEB_ACCESS_LOG": str(tmp_path / "blocker" / "a.log")}
    )
    assert result.exit_code == Exit.NOT_WRITABLE, result.output


def test_start_refuses_an_unknown_worker_class(home: Home) -> None:
    result = run(home, "web", "start", env={"COVERSLIP_WEB_WORKER_CLASS": "eventlet"})
    assert result.exit_code == Exit.WORKER_CLASS, result.output
    assert "web.worker_class" in result.output and "eventlet" in result.output


def test_start_refuses_fewer_than_one_worker(home: Home) -> None:
    result = run(home, "web", "start", "--workers", "0")
    assert result.exit_code == Exit.WORKERS, result.output
    assert "web.workers" in result.output
    result = run(home, "thumbs", "start", env={"COVERSLIP_THUMBS_WORKERS": "-2"})
    assert result.exit_code == Exit.WORKERS, result.output


def test_exit_codes_are_distinct() -> None:
    assert len({int(code) for code in Exit}) == len(Exit)


# -- warnings ---------------------------------------------------------------------------


def plan_of(home: Home, **values: object) -> tuple[config.Settings, servers.Plan]:
    flags = {name.replace("__", "."): value for name, value in values.items()}
    settings = config.load(None, environ={}, flags=flags)
    return settings, servers.plan(settings, home, "web")


def test_warnings_for_the_known_pitfalls(home: Home) -> None:
    cores = os.cpu_count() or 1
    settings, plan = plan_of(
        home,
        web__workers=2 * cores + 2,
        web__application_server="gunicorn",
        web__worker_class="sync",
        web__host="0.0.0.0",
        web__timeout=10,
        images__size_cap="10G",
    )
    found = checks.warnings(settings, plan, container=False)
    text = "\n".join(found)
    assert len(found) == 4, text
    assert "2 × cores + 1" in text
    assert "sync workers" in text
    assert "outside a container" in text
    assert "web.timeout is 10 s" in text
    assert len(checks.warnings(settings, plan, container=True)) == 3


def test_no_warnings_for_the_defaults(home: Home) -> None:
    settings, plan = plan_of(home, web__workers=1)
    assert checks.warnings(settings, plan, container=False) == []


def test_an_upload_cap_the_timeout_can_carry_is_not_a_pitfall(home: Home) -> None:
    settings, plan = plan_of(
        home,
        web__workers=1,
        web__application_server="uwsgi",
        images__size_cap="100M",
        web__timeout=60,
    )
    assert checks.upload_timeout_warning(settings, plan) is None


# -- pid files and stopping -------------------------------------------------------------


def detached(code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    return child


def test_stop_terminates_and_removes_the_pid_file(home: Home) -> None:
    home.run.mkdir(parents=True)
    child = detached("import time; time.sleep(60)")
    process.pid_file(home, "web").write_text(f"{child.pid}\n")
    started = time.monotonic()
    assert process.stop(home, "web", graceful=5) == child.pid
    # NOTE: stop reaps its own children, so Popen cannot see the signal; TERM is quick.
    assert time.monotonic() - started < 3
    assert not process.alive(child.pid)
    assert not process.pid_file(home, "web").exists()


def test_stop_kills_what_ignores_term_and_its_whole_group(home: Home) -> None:
    home.run.mkdir(parents=True)
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    assert len(process.group_members(child.pid)) == 2
    process.pid_file(home, "thumbs").write_text(f"{child.pid}\n")
    assert process.stop(home, "thumbs", graceful=0, margin=0.5) == child.pid
    assert not process.alive(child.pid)
    assert process.group_members(child.pid) == []


# -- WSGI wrappers ----------------------------------------------------------------------


def test_chunked_input_reads_to_the_end() -> None:
    parts = iter([b"ab\ncd", b"ef\n", b"gh", b""])
    stream = ChunkedInput(lambda: next(parts))
    assert stream.readline() == b"ab\n"
    assert stream.read(3) == b"cde"
    assert list(stream) == [b"f\n", b"gh"]
    assert stream.read() == b""


def body_reader(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    terminated = environ.get("wsgi.input_terminated", False)
    body = environ["wsgi.input"].read() if terminated else b""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{terminated} {len(body)}".encode()]


def call(app: Any, environ: dict[str, Any]) -> bytes:
    return b"".join(app(environ, lambda status, headers: None))


def test_mark_input_terminated_only_for_chunked_bodies() -> None:
    app = mark_input_terminated(body_reader)
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"x" * 70)}
    assert call(app, chunked) == b"True 70"
    counted = {"CONTENT_LENGTH": "3", "wsgi.input": io.BytesIO(b"abc")}
    assert call(app, counted) == b"False 0"


def scheme_and_client(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [f"{environ['wsgi.url_scheme']} {environ['REMOTE_ADDR']}".encode()]


def test_forwarded_headers_are_trusted_only_from_listed_proxies() -> None:
    app = trust_forwarded(scheme_and_client, ["127.0.0.1"])
    headers = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 5.6.7.8"}
    proxied = {"wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", **headers}
    assert call(app, proxied) == b"https 5.6.7.8"
    direct = {"wsgi.url_scheme": "http", "REMOTE_ADDR": "9.9.9.9", **headers}
    assert call(app, direct) == b"http 9.9.9.9"


def test_the_launcher_keeps_the_address_of_the_proxy_it_trusted() -> None:
    """The app believes X-Forwarded-Host by the proxy's address, not the client's."""
    app = trust_forwarded(lambda environ, start: [environ.get(PROXY_ADDR, "-").encode()], ["::1"])
    headers = {"HTTP_X_FORWARDED_FOR": "5.6.7.8"}
    assert call(app, {"REMOTE_ADDR": "::1", **headers}) == b"::1"
    assert call(app, {"REMOTE_ADDR": "9.9.9.9", **headers}) == b"-"


# -- readiness --------------------------------------------------------------------------


class Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def ping(self) -> None:
        if self.error:
            raise self.error


def ready_client(
    catalog: Store, sessions: Store | None, objects: Store | None = None
) -> falcon.testing.TestClient:
    services = SimpleNamespace(
        catalog=catalog,
        sessions=sessions,
        pixels=SimpleNamespace(objects=objects),
        settings={"db.connect_timeout": 5.0},
    )
    app = falcon.App()
    ops.add_routes(app, services, "thumbs")  # type: ignore[arg-type]
    return falcon.testing.TestClient(app)


def test_readyz_names_what_is_down() -> None:
    assert ready_client(Store(), Store()).simulate_get("/readyz").json == {"status": "ready"}
    down = ready_client(Store(), Store(ConnectionError("redis refused\nmore"))).simulate_get(
        "/readyz"
    )
    assert down.status_code == 503
    # Only which part is down, by name.
    assert down.json["down"] == ["sessions"]
    both = ready_client(Store(OSError("disk")), None).simulate_get("/readyz")
    assert both.status_code == 503 and list(both.json["down"]) == ["catalog"]
    assert ready_client(Store(), None).simulate_get("/healthz").json == {"status": "ok"}
    # The object store is probed only when pixels live in one.
    assert ready_client(Store(), None, Store()).simulate_get("/readyz").status_code == 200
    gone = ready_client(Store(), None, Store(OSError("store"))).simulate_get("/readyz")
    assert gone.status_code == 503 and gone.json["down"] == ["objects"]


# -- the container entrypoint -----------------------------------------------------------


def test_entrypoint_checks_the_environment(home: Home) -> None:
    from coverslip.deploy import entrypoint

    found = entrypoint.problems(home, "web", wait=0)
    assert len(found) == 1 and "web.host is 127.0.0.1" in found[0]
    assert "COVERSLIP_WEB_HOST=0.0.0.0" in found[0]
    home.config_file.parent.mkdir(parents=True, exist_ok=True)
    config.write_file(home.config_file, {"thumbs.host": "0.0.0.0", "thumbs.port": "not a port"})
    assert "thumbs.port" in entrypoint.problems(home, "thumbs", wait=0)[0]
    config.write_file(home.config_file, {"thumbs.host": "0.0.0.0"})
    assert entrypoint.problems(home, "thumbs", wait=0) == []
