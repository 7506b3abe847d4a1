"""The images API through a real application server: python-glanceclient's CLI, a 300 MB
chunked upload with flat server memory, and a client that hangs up mid-upload."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from coverslip.deploy import servers
from coverslip.home import Home

GLANCE = shutil.which("glance", path=str(Path(sys.executable).parent))
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    home: Home
    port: int
    token: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        all_headers = {"X-Auth-Token": self.token, **(headers or {})}
        connection.request(
            method,
            path,
            body=body,
            headers=all_headers,
            encode_chunked=not isinstance(body, bytes | str | None),
        )
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, data

    def create(self, **fields: object) -> str:
        status, data = self.request(
            "POST", "/api/v2/images", json.dumps(fields), {"Content-Type": "application/json"}
        )
        assert status == 201, data
        return str(json.loads(data)["id"])

    def image(self, image_id: str) -> dict[str, object]:
        status, data = self.request("GET", f"/api/v2/images/{image_id}")
        assert status == 200, data
        return dict(json.loads(data))

    def workers(self) -> list[int]:
        """Return the pids of the server's processes (the launcher and its workers)."""
        found = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) in found:
                        found.append(int(entry.name))
        return found

    def rss(self) -> int:
        """Return the summed VmRSS of the server's processes, in bytes."""
        total = 0
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


def make_token(home: Home) -> str:
    """Return an API token of alice, a member of the read-only group lab, made with the CLI."""
    env = {**os.environ, "COVERSLIP_HOME": str(home.root)}
    coverslip = str(Path(sys.executable).parent / "coverslip")

    def run(*args: str) -> str:
        done = subprocess.run(
            [coverslip, *args], env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    run("group", "add", "lab", "--permissions", "read-only")
    run("user", "add", "alice", "--no-password", "--group", "lab")
    return run("token", "create", "alice").strip()


def start(home: Home, token: str, **settings: str) -> Server:
    """Start Granian as `coverslip web` would (the deploy launcher's plan), two workers."""
    port = free_port()
    values = {"web.port": str(port), "web.workers": "2", "web.threads": "2", **settings}
    env = {
        **os.environ,
        **{f"COVERSLIP_{k.upper().replace('.', '_')}": v for k, v in values.items()},
    }
    env["COVERSLIP_HOME"] = str(home.root)
    plan = servers.plan(home.settings(env), home, "web")
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    process = subprocess.Popen(
        plan.argv, env={**env, **plan.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server(home, port, token, process)
    for _ in range(200):
        with contextlib.suppress(OSError):
            if server.request("GET", "/readyz")[0] == 200:
                return server
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = Home(tmp_path_factory.mktemp("server") / "home").create()
    running = start(home, make_token(home))
    yield running
    running.process.terminate()
    try:
        running.process.wait(10)
    except subprocess.TimeoutExpired:
        running.process.kill()


def leftovers(home: Home, image_id: str) -> list[Path]:
    found = [p for p in home.staging.iterdir() if p.name.split(".")[0] == image_id]
    return found + [
        p for p in (home.original_dir(int(image_id)), home.pyramid(int(image_id))) if p.exists()
    ]


# -- the real client ---------------------------------------------------------------------


@pytest.mark.skipif(GLANCE is None, reason="python-glanceclient is not installed")
def test_glance_cli_round_trip(server: Server, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    source = tmp_path / "cells.npy"
    np.save(source, rng.integers(0, 60000, size=(2, 200, 300), dtype=np.uint16))
    env = {**os.environ, "HOME": str(tmp_path)}  # the client caches schemas in ~/.glanceclient

    def glance(*args: str) -> str:
        argv = [
            str(GLANCE),
            "--os-image-url",
            f"{server.url}/api",
            "--os-auth-token",
            server.token,
            *args,
        ]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def field(table: str, name: str) -> str:
        match = re.search(rf"^\|\s*{name}\s*\|\s*(.*?)\s*\|$", table, re.MULTILINE)
        assert match, table
        return match.group(1)

    shown = glance(
        "image-create",
        "--name",
        "cells",
        "--disk-format",
        "npy",
        "--container-format",
        "bare",
        "--file",
        str(source),
        "--property",
        "lab=north",
    )
    image_id = field(shown, "id")
    assert field(shown, "status") == "active"
    assert (
        server.image(image_id)["os_hash_value"] == hashlib.sha512(source.read_bytes()).hexdigest()
    )
    assert image_id in glance("image-list")
    assert field(glance("image-show", image_id), "lab") == "north"
    target = tmp_path / "back.npy"
    glance("image-download", image_id, "--file", str(target))
    assert target.read_bytes() == source.read_bytes()
    updated = glance(
        "image-update",
        image_id,
        "--name",
        "renamed",
        "--property",
        "stain=DAPI",
        "--remove-property",
        "lab",
    )
    assert (field(updated, "name"), field(updated, "stain")) == ("renamed", "DAPI")
    assert "| lab" not in updated
    glance("image-delete", image_id)
    gone = subprocess.run(
        [
            str(GLANCE),
            "--os-image-url",
            f"{server.url}/api",
            "--os-auth-token",
            server.token,
            "image-show",
            image_id,
        ],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    assert gone.returncode != 0


# -- memory and disconnects --------------------------------------------------------------


def blocks(total: int, size: int = MB) -> Iterator[bytes]:
    block = np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8).tobytes()
    for _ in range(total // size):
        yield block


def test_300_mb_chunked_upload_keeps_server_memory_flat(server: Server) -> None:
    image_id = server.create(name="big", disk_format="npy")
    server.request("GET", f"/api/v2/images/{image_id}")  # warm every code path first
    before = server.rss()
    total = 300 * MB
    status, data = server.request(
        "PUT",
        f"/api/v2/images/{image_id}/stage",
        blocks(total),
        {"Content-Type": "application/octet-stream"},
    )
    after = server.rss()
    assert status == 204, data
    assert server.image(image_id)["status"] == "uploading"
    assert (server.home.staging / f"{image_id}.staged").stat().st_size == total
    print(f"server RSS {before / MB:.0f} MB before, {after / MB:.0f} MB after")
    assert after - before < 50 * MB, f"server RSS grew by {(after - before) / MB:.1f} MB"
    assert server.request("DELETE", f"/api/v2/images/{image_id}")[0] == 204
    assert leftovers(server.home, image_id) == []


def test_client_hanging_up_mid_upload_leaves_nothing(server: Server) -> None:
    image_id = server.create(name="cut", disk_format="npy")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (
            f"PUT /api/v2/images/{image_id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Auth-Token: {server.token}\r\nContent-Type: application/octet-stream\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        for block in blocks(8 * MB, 256 * 1024):
            sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        for _ in range(100):  # the upload is under way before the client hangs up
            if server.image(image_id)["status"] == "saving":
                break
            time.sleep(0.02)
        assert server.image(image_id)["status"] == "saving"
    for _ in range(200):
        if server.image(image_id)["status"] == "queued" and not leftovers(server.home, image_id):
            break
        time.sleep(0.05)
    assert server.image(image_id)["status"] == "queued"
    assert leftovers(server.home, image_id) == []
    # The same image takes a complete upload afterwards.
    data = io.BytesIO()
    np.save(data, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    status, body = server.request(
        "PUT",
        f"/api/v2/images/{image_id}/file",
        data.getvalue(),
        {"Content-Type": "application/octet-stream"},
    )
    assert status == 204, body
    assert server.image(image_id)["status"] == "active"


@pytest.mark.parametrize("application_server", ["gunicorn", "uwsgi"])
def test_uploads_under_the_other_application_servers(
    application_server: str, tmp_path: Path
) -> None:
    if application_server == "uwsgi" and servers.uwsgi_binary() is None:
        pytest.skip("uWSGI is not installed")
    home = Home(tmp_path / "home").create()
    running = start(home, make_token(home), **{"web.application_server": application_server})
    try:
        data = io.BytesIO()
        np.save(data, np.arange(128 * 96, dtype=np.uint16).reshape(128, 96))
        payload = data.getvalue()
        for chunked in (True, False):
            image_id = running.create(name="cells", disk_format="npy")
            body: bytes | Iterator[bytes] = (
                iter([payload[:1000], payload[1000:]]) if chunked else payload
            )
            status, answer = running.request(
                "PUT",
                f"/api/v2/images/{image_id}/file",
                body,
                {"Content-Type": "application/octet-stream"},
            )
            assert status == 204, answer
            doc = running.image(image_id)
            assert doc["status"] == "active"
            assert doc["os_hash_value"] == hashlib.sha512(payload).hexdigest()
    finally:
        running.process.terminate()
        running.process.wait(15)
