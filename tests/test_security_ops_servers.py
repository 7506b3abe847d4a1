"""Slow clients against the real servers: a request body that stops coming must not stall
other requests, neither straight to Granian nor behind nginx."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.test_deploy_servers import (
    SERVERS,
    Instance,
    get,
    nginx_in_front,
    processes_mentioning,
    start_both,
    stop_both,
)

pytestmark = pytest.mark.slow

BODY_TIMEOUT = 4  # web.body_timeout: how long nginx waits for a quiet client
# NOTE: generous for a loaded 2-core machine; before the fix such requests waited > 3 s,
# and as long as the slow client kept quiet.
FAST = 1.0


@contextlib.contextmanager
def quiet_client(
    port: int,
    request: str = "POST /login",
    headers: str = "Content-Type: application/x-www-form-urlencoded\r\n",
) -> Iterator[socket.socket]:
    """Send the headers of a request and a few body bytes, then go quiet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(
            f"{request} HTTP/1.1\r\nHost: localhost\r\n{headers}"
            "Content-Length: 4000\r\n\r\nusername=a".encode()
        )
        yield sock
    finally:
        sock.close()


def new_uploads(instance: Instance, port: int, routes: tuple[str, ...]) -> list[tuple[str, str]]:
    """Sign in as the administrator and create an image per route ("file" or "stage");
    return the request line and headers of an upload to each."""
    password = instance.run("user", "ensure-admin").split("password: ", 1)[1].split()[0]
    credentials = json.dumps({"username": "admin", "password": password})
    json_type = {"Content-Type": "application/json"}
    status, headers, body = get(port, "/api/v2/session", "POST", credentials, json_type)
    assert status == 200, body
    signed = {
        "Cookie": headers["set-cookie"].split(";", 1)[0],
        "X-CSRFToken": json.loads(body)["csrf_token"],
    }
    lines = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
    lines += "Content-Type: application/octet-stream\r\n"
    made = json.dumps({"name": "quiet", "disk_format": "npy", "container_format": "bare"})
    uploads = []
    for route in routes:
        status, _, body = get(port, "/api/v2/images", "POST", made, {**signed, **json_type})
        assert status == 201, body
        uploads.append((f"PUT /api/v2/images/{json.loads(body)['id']}/{route}", lines))
    return uploads


def latencies(port: int, count: int = 30) -> list[float]:
    """Make ``count`` unrelated requests, each on a new connection; return their durations."""
    took = []
    for _ in range(count):
        start = time.monotonic()
        status, _, _ = get(port, "/api/v2/session")
        took.append(time.monotonic() - start)
        assert status == 200
    return took


def answer_of(sock: socket.socket) -> bytes:
    """Return what the server sent the quiet client before closing (or within a minute)."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("behind", ["granian", "nginx"])
def test_a_quiet_request_body_does_not_stall_other_requests(behind: str, tmp_path: Path) -> None:
    instance = Instance(
        tmp_path / "home",
        {
            "COVERSLIP_WEB_APPLICATION_SERVER": "granian",
            "COVERSLIP_WEB_THREADS": "1",  # the default: one thread per worker
            "COVERSLIP_WEB_BODY_TIMEOUT": str(BODY_TIMEOUT),
        },
    )
    start_both(instance)
    try:
        with contextlib.ExitStack() as stack:
            port = instance.web_port
            if behind == "nginx":
                port = stack.enter_context(nginx_in_front(instance, tmp_path / "nginx"))
            latencies(port, 3)  # warm every worker up
            # Straight to Granian, a quiet form; behind nginx, a quiet form (which nginx
            # buffers) and a quiet upload and staging (which nginx streams through).
            quiet = [stack.enter_context(quiet_client(port))]
            uploads = []
            if behind == "nginx":
                uploads = new_uploads(instance, port, ("file", "stage"))
                quiet += [stack.enter_context(quiet_client(port, *upload)) for upload in uploads]
            time.sleep(0.5)  # let them reach a worker
            took = latencies(port)
            slow = [round(t, 2) for t in took if t > FAST]
            assert slow == [], f"{len(slow)} of {len(took)} requests waited: {slow}"
            if behind == "nginx":
                # nginx drops quiet clients after web.body_timeout instead of waiting.
                for sock in quiet:
                    start = time.monotonic()
                    answer = answer_of(sock)
                    assert time.monotonic() - start < 30, answer
                    assert answer == b"" or answer.split(b" ", 2)[1] == b"408", answer
                # Both uploads reached the application while their clients were quiet: nginx
                # streamed them instead of waiting for bodies that never came.
                for request, _ in uploads:
                    path = request.split()[1]
                    deadline = time.monotonic() + 30
                    while path not in instance.log("web-access.log"):
                        assert time.monotonic() < deadline, instance.log("web-access.log")
                        time.sleep(0.2)
    finally:
        stop_both(instance)
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.parametrize("server", ["granian", "gunicorn-gthread"])
def test_readyz_details_stay_on_this_host_behind_nginx(server: str, tmp_path: Path) -> None:
    """Behind nginx on this host every request comes from loopback; only direct calls are
    this host's, whichever address the server hands the application."""
    redis_port = free_port()  # nothing listens there: the session store is down
    instance = Instance(
        tmp_path / "home",
        {
            **SERVERS[server],
            "COVERSLIP_SESSIONS_BACKEND": "redis",
            "COVERSLIP_SESSIONS_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        },
    )
    instance.run("web", "start")
    try:
        with nginx_in_front(instance, tmp_path / "nginx") as port:
            status, _, body = get(port, "/readyz")
            relayed = json.loads(body)
            assert status == 503 and relayed["down"] == ["sessions"], body
            assert "details" not in relayed and str(redis_port).encode() not in body
            status, _, body = get(instance.web_port, "/readyz")
            direct = json.loads(body)
            assert status == 503 and str(redis_port) in direct["details"]["sessions"], body
    finally:
        instance.run("web", "stop")
    assert processes_mentioning(str(tmp_path)) == []


def sign_in_from(source: str, port: int, username: str, password: str) -> int:
    """POST /api/v2/session from the loopback address ``source``; return the status."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        body = json.dumps({"username": username, "password": password})
        connection.request(
            "POST", "/api/v2/session", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.parametrize("server", ["granian", "gunicorn-gthread", "uwsgi"])
def test_sign_in_throttle_counts_each_client_behind_nginx(server: str, tmp_path: Path) -> None:
    """Behind nginx every request comes from the proxy; the throttle must count the client
    nginx names in X-Forwarded-For, not the proxy, or one client's failures slow everyone."""
    instance = Instance(
        tmp_path / "home",
        {
            **SERVERS[server],
            "COVERSLIP_LOGIN_MAX_FAILURES_ADDRESS": "3",
            "COVERSLIP_LOGIN_MAX_FAILURES_USER": "100",
        },
    )
    password = instance.run("user", "ensure-admin").split("password: ", 1)[1].split()[0]
    instance.run("web", "start")
    try:
        with nginx_in_front(instance, tmp_path / "nginx") as port:
            for n in range(3):
                assert sign_in_from("127.0.0.2", port, f"guess{n}", "wrong") == 401
            assert sign_in_from("127.0.0.2", port, "admin", password) == 429
            assert sign_in_from("127.0.0.3", port, "admin", password) == 200
    finally:
        instance.run("web", "stop")
    assert processes_mentioning(str(tmp_path)) == []


def test_nginx_never_passes_on_a_chunked_upload_cut_before_its_last_chunk(tmp_path: Path) -> None:
    """Granian cannot tell a cut chunked body from a whole one; behind nginx it never sees one:
    nginx reads chunked uploads whole and drops the cut ones."""
    instance = Instance(tmp_path / "home", {"COVERSLIP_WEB_APPLICATION_SERVER": "granian"})
    start_both(instance)
    try:
        with nginx_in_front(instance, tmp_path / "nginx") as port:
            (cut, lines), (whole, _) = new_uploads(instance, port, ("file", "file"))
            data = npy_bytes()
            for request, terminate in ((cut, False), (whole, True)):
                with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                    sock.sendall(
                        f"{request} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                        f"{lines}Transfer-Encoding: chunked\r\n\r\n".encode()
                    )
                    for at in range(0, len(data), 65536):
                        block = data[at : at + 65536]
                        sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                    if terminate:
                        sock.sendall(b"0\r\n\r\n")
                    else:
                        sock.shutdown(socket.SHUT_WR)
                    answer_of(sock)
            headers = {"Cookie": lines.split("Cookie: ", 1)[1].split("\r\n", 1)[0]}
            status_of: dict[str, str] = {}
            deadline = time.monotonic() + 30  # the worker imports the whole one
            while status_of.get(whole) != "active" and time.monotonic() < deadline:
                for request in (cut, whole):
                    image_id = request.split("/")[4]
                    _, _, body = get(port, f"/api/v2/images/{image_id}", headers=headers)
                    status_of[request] = json.loads(body)["status"]
                time.sleep(0.1)
            assert status_of == {cut: "queued", whole: "active"}
            assert cut.split()[1] not in instance.log("web-access.log")
    finally:
        stop_both(instance)


def npy_bytes() -> bytes:
    """A small valid NPY image of 300 × 200 uint16, as an upload body."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.arange(60000, dtype=np.uint16).reshape(300, 200))
    return buffer.getvalue()


def request_counts(port: int) -> dict[tuple[str | None, str | None], float]:
    """Read /metrics and return coverslip_requests_total by (route, status)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), body[:200]
    return {
        (sample.labels.get("route"), sample.labels.get("status")): sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "coverslip_requests"
        for sample in family.samples
        if sample.name == "coverslip_requests_total"
    }


def samples(port: int, family_name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Read /metrics and return the samples of one family by (sample name and labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = get(port, "/metrics")
    assert status == 200, body[:200]
    return {
        (("sample", sample.name), *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == family_name
        for sample in family.samples
    }


def upload_and_wait(instance: Instance, port: int) -> None:
    """Upload the NPY image and wait until the job worker has imported it."""
    ((request, lines),) = new_uploads(instance, port, ("file",))
    method, path = request.split()
    headers = dict(line.split(": ", 1) for line in lines.strip().split("\r\n"))
    status, _, body = get(port, path, method, npy_bytes(), headers)
    assert status == 204, body
    image = path.rsplit("/", 1)[0]
    deadline = time.monotonic() + 30
    while json.loads(get(port, image, headers=headers)[2])["status"] != "active":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_metrics_add_up_across_workers_and_stay_off_the_proxy(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    instance = Instance(tmp_path / "home", {"COVERSLIP_WEB_APPLICATION_SERVER": "granian"})
    instance.run("web", "start")  # two workers (COVERSLIP_WEB_WORKERS)
    instance.run("worker", "start")
    try:
        port = instance.web_port
        upload_and_wait(instance, port)
        # The job ran in the worker process; the web's /metrics adds in its folder. The job's
        # time is recorded just after the image turns active, so it may show a moment later.
        done = (("sample", "coverslip_job_seconds_count"), ("kind", "import_upload"))
        deadline = time.monotonic() + 10
        while (*done, ("outcome", "succeeded")) not in (
            jobs := samples(port, "coverslip_job_seconds")
        ):
            assert time.monotonic() < deadline, jobs
            time.sleep(0.1)
        assert jobs[(*done, ("outcome", "succeeded"))] == 1, jobs
        imported = samples(port, "coverslip_import_bytes")
        assert imported[(("sample", "coverslip_import_bytes_total"),)] == 300 * 200 * 2
        before = request_counts(port)
        with ThreadPoolExecutor(16) as pool:  # enough at once that both workers answer
            answers = list(pool.map(lambda _: get(port, "/healthz")[0], range(400)))
        assert answers == [200] * 400
        for _ in range(5):
            assert get(port, "/webgateway/imgData/999999/")[0] == 404
        folder = instance.home / "run" / "metrics-web"
        writers = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("counter_*.db")}
        assert len(writers) == 2, sorted(folder.iterdir())  # both workers counted some
        after = request_counts(port)
        healthz = ("/healthz", "200")
        assert after[healthz] - before.get(healthz, 0) == 400
        assert after[("/webgateway/imgData/{iid:id}", "404")] == 5
        with nginx_in_front(instance, tmp_path / "nginx") as proxied:
            assert get(proxied, "/metrics")[0] == 404  # not through the proxy
    finally:
        instance.run("web", "stop")
        instance.run("worker", "stop")
    assert processes_mentioning(str(tmp_path)) == []
