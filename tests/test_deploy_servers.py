"""The real thing: `coverslip web|thumbs start` under Granian, Gunicorn (gthread, gevent) and
uWSGI, behind nginx (and Apache) started with the generated configuration.

Each test starts everything in its own instance home on free ports and ends by checking that
no process it started is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coverslip.deploy import process, servers
from coverslip.deploy.configs import static_folder
from coverslip.deploy.wsgi_input import mark_input_terminated
from coverslip.home import Home
from tests.test_deploy_config import NGINX, free_port, nginx_main

pytestmark = pytest.mark.slow

# `coverslip` with the deployment commands attached, whether or not cli.py attaches them.
BOOT = (
    "from coverslip.cli import main; from coverslip.deploy.cli import register; "
    "register(main); main()"
)
REPO = Path(__file__).resolve().parents[1]

SERVERS = {
    "granian": {"COVERSLIP_WEB_APPLICATION_SERVER": "granian"},
    "gunicorn-gthread": {
        "COVERSLIP_WEB_APPLICATION_SERVER": "gunicorn",
        "COVERSLIP_WEB_WORKER_CLASS": "gthread",
    },
    "gunicorn-gevent": {
        "COVERSLIP_WEB_APPLICATION_SERVER": "gunicorn",
        "COVERSLIP_WEB_WORKER_CLASS": "gevent",
    },
    "uwsgi": {"COVERSLIP_WEB_APPLICATION_SERVER": "uwsgi", "COVERSLIP_WEB_TIMEOUT": "120"},
}


class Instance:
    """One instance home with its environment, and the `coverslip` command run in it."""

    def __init__(self, home: Path, extra: dict[str, str]) -> None:
        self.home = home
        self.web_port = free_port()
        self.thumbs_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "COVERSLIP_HOME": str(home),
            "COVERSLIP_WEB_ENV": "production",
            "COVERSLIP_WEB_PORT": str(self.web_port),
            "COVERSLIP_THUMBS_PORT": str(self.thumbs_port),
            "COVERSLIP_WEB_WORKERS": "2",
            "COVERSLIP_THUMBS_WORKERS": "1",
            "COVERSLIP_WEB_THREADS": "2",
            "COVERSLIP_WEB_GRACEFUL_TIMEOUT": "5",
            "COVERSLIP_WEB_SENDFILE": "nginx",
            **extra,
        }

    def run(self, *args: str, code: int = 0) -> str:
        result = subprocess.run(
            [sys.executable, "-c", BOOT, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == code, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    def log(self, name: str) -> str:
        path = self.home / "log" / name
        return path.read_text() if path.exists() else ""


def get(
    port: int,
    path: str,
    method: str = "GET",
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Make one request to 127.0.0.1:``port``; return status, headers (lower-case) and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        chunked = "chunked" in (headers or {}).get("Transfer-Encoding", "")
        connection.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)  # type: ignore[arg-type]
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_for_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def processes_mentioning(text: str) -> list[str]:
    """Return "pid cmdline" of every live process whose command line or environment has ``text``."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").glob("[0-9]*"):
        if int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or needle in environ):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name} {command}")
    return found


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Return an instance home with a public and a private image, and the public one's id.

    The admin's password and the private image's id are kept in ``fixture.json`` in the home.
    """
    folder = tmp_path_factory.mktemp("template")
    home = folder / "home"
    plane = (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8)
    np.save(folder / "plane.npy", plane)
    np.save(folder / "private.npy", plane[::-1].copy())
    maker = Instance(home, {})
    made = maker.run("user", "ensure-admin")
    password = made.split("password: ", 1)[1].split()[0]

    def imported(*args: str) -> int:
        output = maker.run("import", *args, "--json")
        line = next(line for line in output.splitlines() if line.startswith('{"imported"'))
        return int(json.loads(line)["imported"][0])

    public = imported(str(folder / "plane.npy"), "--group", "Public")
    private = imported(str(folder / "private.npy"))
    (home / "fixture.json").write_text(json.dumps({"password": password, "private": private}))
    return home, public


@contextlib.contextmanager
def nginx_in_front(instance: Instance, folder: Path) -> Iterator[int]:
    """Run nginx with `coverslip config nginx` on a free port; yield the port."""
    port = free_port()
    site = instance.run("config", "nginx", "--http", str(port), "--servername", "localhost")
    folder.mkdir()
    conf = nginx_main(folder, site)
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder), "-g", "daemon off;"])
    try:
        wait_for_port(port)
        yield port
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=15)


def start_both(instance: Instance) -> None:
    """Start the web application, the thumbnail service and a job worker."""
    out = instance.run("web", "start")
    assert f"on http://127.0.0.1:{instance.web_port}/" in out
    instance.run("thumbs", "start")
    instance.run("worker", "start")
    assert instance.run("web", "status").strip().startswith("RUNNING (PID ")
    assert instance.run("thumbs", "status").strip().startswith("RUNNING (PID ")
    assert instance.run("worker", "status").strip().startswith("worker: RUNNING (PID ")


def stop_both(instance: Instance) -> None:
    instance.run("web", "stop")
    instance.run("thumbs", "stop")
    instance.run("worker", "stop")
    assert instance.run("web", "status", code=1).strip() == "NOT STARTED"
    assert instance.run("thumbs", "status", code=1).strip() == "NOT STARTED"
    assert instance.run("worker", "status", code=1).strip() == "worker: NOT STARTED"


def check_thumbnail(instance: Instance, port: int, image_id: int) -> None:
    """Fetch a thumbnail through the proxy and check that the thumbnail service served it."""
    path = f"/webgateway/render_thumbnail/{image_id}"
    status, headers, body = get(port, path)
    assert status == 200, body[:300]
    assert headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, _, _ = get(port, f"/webgateway/get_thumbnails?id={image_id}")
    assert status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        served = instance.log("thumbs-access.log")
        if path in served and "get_thumbnails" in served:
            break
        time.sleep(0.1)
    assert path in instance.log("thumbs-access.log")
    assert "get_thumbnails" in instance.log("thumbs-access.log")
    assert path not in instance.log("web-access.log")


def check_session_upload_and_download(instance: Instance, port: int, accel: bool = True) -> None:
    """Sign in through nginx, see a private thumbnail on thumbs, upload chunked, download
    through X-Accel-Redirect, sign out and be refused on thumbs at once."""
    fixture = json.loads((instance.home / "fixture.json").read_text())
    thumb = f"/webgateway/render_thumbnail/{fixture['private']}"
    assert get(port, thumb)[0] == 404
    status, headers, body = get(
        port,
        "/api/v2/session",
        "POST",
        json.dumps({"username": "admin", "password": fixture["password"]}),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    cookie = headers["set-cookie"].split(";", 1)[0]
    signed = {"Cookie": cookie, "X-CSRFToken": json.loads(body)["csrf_token"]}
    assert get(port, thumb, headers=signed)[0] == 200  # the thumbnail service shares the session
    status, _, body = get(
        port,
        "/api/v2/images",
        "POST",
        json.dumps({"name": "upload", "disk_format": "npy", "container_format": "bare"}),
        {**signed, "Content-Type": "application/json"},
    )
    assert status == 201, body
    image_id = json.loads(body)["id"]
    payload = io.BytesIO()
    np.save(payload, np.arange(300 * 200, dtype=np.uint16).reshape(300, 200))
    data = payload.getvalue()
    chunks = iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
    status, _, body = get(
        port,
        f"/api/v2/images/{image_id}/file",
        "PUT",
        chunks,
        {**signed, "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
    )
    assert status == 204, body
    deadline = time.monotonic() + 30
    while (
        json.loads(get(port, f"/api/v2/images/{image_id}", headers=signed)[2])["status"] != "active"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status, headers, body = get(port, f"/api/v2/images/{image_id}/file", headers=signed)
    assert status == 200 and body == data
    if accel:
        # The worker only named the file; nginx sent the bytes.
        _, direct, direct_body = get(
            instance.web_port, f"/api/v2/images/{image_id}/file", headers=signed
        )
        assert direct.get("x-accel-redirect", "").startswith("/_coverslip_files/")
        assert direct_body == b""
    assert get(port, "/api/v2/session", "DELETE", headers=signed)[0] == 204
    assert get(port, thumb, headers={"Cookie": cookie})[0] == 404  # refused at once on thumbs


@pytest.mark.parametrize("server", SERVERS)
def test_web_and_thumbs_behind_nginx(
    server: str, template: tuple[Path, int], tmp_path: Path
) -> None:
    source, image_id = template
    shutil.copytree(source, tmp_path / "home")
    instance = Instance(tmp_path / "home", SERVERS[server])
    start_both(instance)
    try:
        # A second start is refused while the first runs.
        assert "already running" in instance.run("web", "start", code=3)
        with nginx_in_front(instance, tmp_path / "nginx") as port:
            status, _, body = get(port, "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            status, _, body = get(port, "/readyz")
            assert status == 200, body
            # Static files come from nginx, byte for byte.
            status, _, body = get(port, "/static/css/app.css")
            assert status == 200 and body == (static_folder() / "css" / "app.css").read_bytes()
            assert "/static/css/app.css" not in instance.log("web-access.log")

            check_thumbnail(instance, port, image_id)
            check_session_upload_and_download(instance, port)

            # The web app stops: nginx answers with its maintenance page; thumbnails go on.
            instance.run("web", "stop")
            status, headers, body = get(port, "/")
            assert status == 503 and b"Back soon" in body
            assert headers["content-type"].startswith("text/html")
            status, _, _ = get(port, f"/webgateway/render_thumbnail/{image_id}")
            assert status == 200
    finally:
        stop_both(instance)
    if server.startswith("gunicorn"):
        log = instance.log("web-error.log")
        for hook in ("starting in", "ready (master pid", "worker forked (pid", "stopped"):
            assert hook in log, log
        assert f"worker_class={SERVERS[server]['COVERSLIP_WEB_WORKER_CLASS']}" in log
    assert processes_mentioning(str(tmp_path)) == []


# -- chunked request bodies under each server, read the way the images API reads them ---


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the length and sha256 of the request body, read with web/body.py."""
    from coverslip.web.body import body_chunks

    digest = hashlib.sha256()
    size = 0
    for chunk in body_chunks(environ):
        digest.update(chunk)
        size += len(chunk)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{size} {digest.hexdigest()}".encode()]


def echo_granian() -> Any:
    return mark_input_terminated(echo)


def echo_gunicorn() -> Any:
    return echo


echo_uwsgi = mark_input_terminated(echo)

ECHO_TARGETS = {
    "granian": "tests.test_deploy_servers:echo_granian",
    "gunicorn": "tests.test_deploy_servers:echo_gunicorn()",
    "uwsgi": "tests.test_deploy_servers:echo_uwsgi",
}


@pytest.mark.parametrize("server", ["granian", "gunicorn", "uwsgi"])
def test_chunked_bodies_reach_the_application_whole(server: str, tmp_path: Path) -> None:
    home = Home(tmp_path / "home").create()
    instance = Instance(home.root, {"COVERSLIP_WEB_APPLICATION_SERVER": server})
    settings = home.settings(environ=instance.env)
    plan = servers.plan(settings, home, "web")
    target = servers.TARGETS[server, "web"]
    plan.argv = [ECHO_TARGETS[server] if arg == target else arg for arg in plan.argv]
    plan.env.update(instance.env)
    process.spawn(plan, home, wait=30)
    try:
        payload = os.urandom(1_500_000)
        pieces = (payload[i : i + 65536] for i in range(0, len(payload), 65536))
        status, _, body = get(
            instance.web_port, "/upload", "PUT", pieces, {"Transfer-Encoding": "chunked"}
        )
        assert status == 200
        assert body.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"
        status, _, body = get(instance.web_port, "/upload", "PUT", payload[:1000])
        assert body.decode().startswith("1000 ")
    finally:
        process.stop(home, "web", graceful=5)
    assert processes_mentioning(str(tmp_path)) == []


# -- Apache HTTPD in front --------------------------------------------------------------

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = (
    "mpm_event",
    "authz_core",
    "alias",
    "mime",
    "env",
    "headers",
    "proxy",
    "proxy_http",
)


@pytest.fixture(scope="module")
def apache_installed() -> str:
    """Install Debian's apache2 when it is missing (root only), and return the binary."""
    if not Path(APACHE).exists() and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "apache2"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=True,
            capture_output=True,
        )
    assert Path(APACHE).exists(), "apache2 is needed: apt-get install apache2"
    return APACHE


@contextlib.contextmanager
def apache_in_front(instance: Instance, folder: Path, binary: str) -> Iterator[int]:
    """Run Apache with `coverslip config apache` on a free port; yield the port."""
    port = free_port()
    site = instance.run("config", "apache", "--http", str(port), "--servername", "localhost")
    folder.mkdir()
    modules = "\n".join(
        f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so"
        for name in APACHE_MODULES
    )
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    conf = folder / "httpd.conf"
    conf.write_text(
        f"""{modules}
ServerRoot {folder}
ServerName localhost
{user}Listen 127.0.0.1:{port}
PidFile {folder}/httpd.pid
ErrorLog {folder}/error.log
TypesConfig /etc/mime.types
{site}"""
    )
    checked = subprocess.run([binary, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    apache = subprocess.Popen([binary, "-f", str(conf), "-DFOREGROUND"])
    try:
        wait_for_port(port)
        yield port
    finally:
        apache.send_signal(signal.SIGWINCH)  # graceful stop
        apache.wait(timeout=30)


def test_apache_in_front(apache_installed: str, template: tuple[Path, int], tmp_path: Path) -> None:
    source, image_id = template
    shutil.copytree(source, tmp_path / "home")
    instance = Instance(
        tmp_path / "home",
        {"COVERSLIP_WEB_APPLICATION_SERVER": "granian", "COVERSLIP_WEB_SENDFILE": "none"},
    )
    start_both(instance)
    try:
        with apache_in_front(instance, tmp_path / "apache", apache_installed) as port:
            status, _, body = get(port, "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            status, _, body = get(port, "/static/css/app.css")
            assert status == 200 and body == (static_folder() / "css" / "app.css").read_bytes()
            assert "/static/css/app.css" not in instance.log("web-access.log")
            check_thumbnail(instance, port, image_id)
            check_session_upload_and_download(instance, port, accel=False)
            instance.run("web", "stop")
            status, _, body = get(port, "/")
            assert status == 503 and b"Back soon" in body
    finally:
        stop_both(instance)
    assert processes_mentioning(str(tmp_path)) == []


def test_uploads_in_flight_survive_gunicorn_recycling_its_workers(
    template: tuple[Path, int], tmp_path: Path
) -> None:
    """Gunicorn replaces each worker after 10 requests while uploads arrive: none is stuck."""
    source, _ = template
    shutil.copytree(source, tmp_path / "home")
    recycling = {"COVERSLIP_WEB_MAX_REQUESTS": "10", "COVERSLIP_WEB_MAX_REQUESTS_JITTER": "0"}
    instance = Instance(tmp_path / "home", {**SERVERS["gunicorn-gthread"], **recycling})
    start_both(instance)
    try:
        port = instance.web_port
        password = json.loads((instance.home / "fixture.json").read_text())["password"]
        status, headers, body = get(
            port,
            "/api/v2/session",
            "POST",
            json.dumps({"username": "admin", "password": password}),
            {"Content-Type": "application/json"},
        )
        assert status == 200, body
        signed = {
            "Cookie": headers["set-cookie"].split(";", 1)[0],
            "X-CSRFToken": json.loads(body)["csrf_token"],
        }
        planes = [np.full((120, 90), n, dtype=np.uint16) for n in range(12)]
        image_ids: list[str] = []

        def upload(plane: np.ndarray) -> None:
            status, _, body = get(
                port,
                "/api/v2/images",
                "POST",
                json.dumps({"name": "recycled", "disk_format": "npy", "container_format": "bare"}),
                {**signed, "Content-Type": "application/json"},
            )
            assert status == 201, body
            image_id = json.loads(body)["id"]
            image_ids.append(image_id)
            payload = io.BytesIO()
            np.save(payload, plane)
            status, _, body = get(
                port,
                f"/api/v2/images/{image_id}/file",
                "PUT",
                payload.getvalue(),
                {**signed, "Content-Type": "application/octet-stream"},
            )
            assert status == 204, body
            for _ in range(3):  # more requests, so that workers recycle between uploads
                assert get(port, "/healthz")[0] == 200

        threads = [threading.Thread(target=upload, args=(plane,)) for plane in planes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(image_ids) == len(planes)
        deadline = time.monotonic() + 60
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {
                image_id: json.loads(get(port, f"/api/v2/images/{image_id}", headers=signed)[2])[
                    "status"
                ]
                for image_id in image_ids
            }
            if set(statuses.values()) == {"active"}:
                break
            time.sleep(0.2)
        assert set(statuses.values()) == {"active"}, statuses
        assert "Autorestarting worker" in instance.log("web-error.log")
    finally:
        stop_both(instance)
    assert processes_mentioning(str(tmp_path)) == []
