"""`coverslip pixels migrate`: an instance's files move into a real S3 store (SeaweedFS), a
run killed halfway goes on when run again, and every image ends readable and whole."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import decode
from tests.servers import ObjectServer, object_server
from tests.test_deploy_config import free_port
from tests.test_deploy_servers import BOOT, Instance, get

pytestmark = pytest.mark.slow

BUCKET = "coverslip-migrate"
TARGET = f"s3://{BUCKET}/moved"
RNG = np.random.default_rng(1616)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectServer]:
    with object_server(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        yield server


def stored_keys(store: ObjectServer) -> set[str]:
    client: Any = store.client()
    names: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="moved/"):
        names.update(item["Key"] for item in page.get("Contents", []))
    return names


def test_a_migration_killed_halfway_goes_on_and_every_image_ends_whole(
    tmp_path: Path, store: ObjectServer
) -> None:
    node = Instance(
        tmp_path / "home",
        {
            **store.env,
            "COVERSLIP_PIXELS_S3_ENDPOINT": store.endpoint,
            "COVERSLIP_PIXELS_S3_TIMEOUT": "2",
            "COVERSLIP_WEB_WORKERS": "1",
            "COVERSLIP_WEB_SENDFILE": "none",
            "PYTHONUNBUFFERED": "1",
        },
    )
    node.run("user", "ensure-admin")
    # Random planes do not compress: each pyramid is a few MB in a hundred-odd objects.
    planes = {}
    for number in range(3):
        data = RNG.integers(0, 256, (1900, 2100), dtype=np.uint8)
        path = tmp_path / f"plane{number}.npy"
        np.save(path, data)
        out = node.run("import", str(path), "--json")
        line = next(line for line in out.splitlines() if line.startswith('{"imported"'))
        planes[int(json.loads(line)["imported"][0])] = (path, data)
    local = node.home / "pixels"
    assert len(list(local.glob("*.ome.zarr"))) == 3

    # A store that does not answer: one clear line, and nothing changes.
    unreachable = {**node.env, "COVERSLIP_PIXELS_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    refused = subprocess.run(
        [sys.executable, "-c", BOOT, "pixels", "migrate", "--to", TARGET],
        env=unreachable,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "the object store" in said and "does not answer" in said, said
    assert "Traceback" not in said
    assert node.run("config", "get", "pixels.store").strip() == "file"

    # Killed once the first image is stored.
    run = subprocess.Popen(
        [sys.executable, "-c", BOOT, "pixels", "migrate", "--to", TARGET],
        env=node.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    lines = []
    while not (lines and lines[-1].startswith("image ")):
        lines.append(run.stdout.readline())
        assert lines[-1], lines
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert "pixels.store = " in lines[0]
    left = len(list(local.glob("*.ome.zarr")))
    assert 1 <= left <= 2, "the run was not cut short: make the pyramids bigger"
    assert list((node.home / "originals").glob("fileset-*"))

    # Run again: it goes on where it stopped.
    out = node.run("pixels", "migrate", "--to", TARGET)
    assert f"moved {left} pyramid" in out and "and 3 filesets of originals" in out, out
    assert not list(local.glob("*")) and not list((node.home / "originals").glob("fileset-*"))
    names = stored_keys(store)
    for image_id in planes:
        assert f"moved/pixels/{image_id}.ome.zarr/zarr.json" in names
    assert sum(name.startswith("moved/originals/fileset-") for name in names) == 3
    # A third run finds nothing left to move.
    assert "moved 0 pyramids and 0 filesets" in node.run("pixels", "migrate", "--to", TARGET)
    # Another store is refused while this one holds the files.
    other = node.run("pixels", "migrate", "--to", "s3://elsewhere/x", code=1)
    assert f"pixels.store is {TARGET}" in other

    # Every chunk reads and every original re-hashes to the sha512 recorded at import.
    checked = node.run("check")
    assert checked.count(": ok") == 3, checked

    # Served from the store: the pixels of each source array, the bytes of each file (through
    # a presigned redirect to the store).
    node.env["COVERSLIP_DOWNLOADS_FROM_STORE"] = "redirect"
    token = json.loads(node.run("token", "create", "admin", "--name", "t", "--json"))["token"]
    auth = {"X-Auth-Token": token}
    node.run("web", "start")
    try:
        for image_id, (path, data) in planes.items():
            status, _h, body = get(
                node.web_port,
                f"/webgateway/render_image_region/{image_id}/0/0/"
                f"?region=1800,1700,300,200&c=1|0:255$FFFFFF&m=g&format=png",
                headers=auth,
            )
            assert status == 200, body[:300]
            np.testing.assert_array_equal(decode(body)[:, :, 0], data[1700:1900, 1800:2100])
            status, headers, _body = get(
                node.web_port, f"/api/v2/images/{image_id}/file", headers=auth
            )
            assert status == 307 and headers["location"].startswith(store.endpoint), headers
            with urllib.request.urlopen(headers["location"], timeout=30) as answer:
                assert "plane" in answer.headers["Content-Disposition"]
                fetched = answer.read()
            assert (
                hashlib.sha512(fetched).hexdigest() == hashlib.sha512(path.read_bytes()).hexdigest()
            )
    finally:
        node.run("web", "stop")
