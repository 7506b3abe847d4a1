"""One instance and a real S3 store (SeaweedFS): `coverslip pixels migrate` moves the files
of the home into it (a run killed halfway goes on when run again, every image ends whole),
and OME-Zarr already in a bucket or on a web server is registered where it is."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from tests.helpers import SAMPLES, decode
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


def stored_keys(store: ObjectServer, prefix: str = "moved/") -> set[str]:
    client: Any = store.client()
    names: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        names.update(item["Key"] for item in page.get("Contents", []))
    return names


def node_on(home: Path, store: ObjectServer, **settings: str) -> Instance:
    return Instance(
        home,
        {
            **store.env,
            "COVERSLIP_PIXELS_S3_ENDPOINT": store.endpoint,
            "COVERSLIP_PIXELS_S3_TIMEOUT": "2",
            "COVERSLIP_WEB_WORKERS": "1",
            "COVERSLIP_WEB_SENDFILE": "none",
            "PYTHONUNBUFFERED": "1",
            **settings,
        },
    )


def test_a_migration_killed_halfway_goes_on_and_every_image_ends_whole(
    tmp_path: Path, store: ObjectServer
) -> None:
    node = node_on(tmp_path / "home", store)
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


# -- OME-Zarr registered where it is -----------------------------------------------------

CMU = SAMPLES / "ome-zarr" / "CMU-1-Small-Region.ome.zarr"


@pytest.fixture
def web_server() -> Iterator[str]:
    """A plain HTTP server on loopback serving the sample OME-Zarr layout."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(CMU))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def registered(node: Instance, url: str) -> int:
    out = node.run("import", url, "--in-place", "--json")
    line = next(line for line in out.splitlines() if line.startswith('{"imported"'))
    return int(json.loads(line)["imported"][0])


def test_ome_zarr_in_a_bucket_or_on_a_web_server_is_served_where_it_is(
    tmp_path: Path, store: ObjectServer, web_server: str
) -> None:
    client: Any = store.client()
    series = CMU / "0"
    for path in sorted(p for p in series.rglob("*") if p.is_file()):
        key = f"public/cmu/0/{path.relative_to(series).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    before = stored_keys(store, "public/")
    node = node_on(tmp_path / "home", store, COVERSLIP_PIXELS_STORE=f"s3://{BUCKET}/inplace")
    node.run("user", "ensure-admin")

    bucket_url = f"s3://{BUCKET}/public/cmu/0"
    copied = node.run("import", bucket_url, code=1)
    assert "registered in place (--in-place)" in " ".join(copied.split())
    in_bucket = registered(node, bucket_url)
    on_web = registered(node, f"{web_server}/0/")
    again = node.run("import", bucket_url, "--in-place", code=1)
    assert f"image {in_bucket}" in again or "imported before" in again, again
    # Nothing was copied: not into the home, not into the store, and the source is untouched.
    assert not list((node.home / "pixels").glob("*"))
    assert not stored_keys(store, "inplace/pixels/")
    assert stored_keys(store, "public/") == before
    for image_id in (in_bucket, on_web):
        shown = json.loads(node.run("images", "show", str(image_id)))
        assert shown["status"] == "active"
        assert shown["size"] == {"t": 1, "c": 3, "z": 1, "y": 2967, "x": 2220}
        assert shown["physical_size"]["x"] == pytest.approx(0.499)
        assert shown["levels"] >= 2

    checked = node.run("check", str(in_bucket), str(on_web))
    assert checked.count(": ok") == 2, checked

    source = np.asarray(zarr.open_array(str(series / "0"), mode="r")[0, :, 0])
    token = json.loads(node.run("token", "create", "admin", "--name", "t", "--json"))["token"]
    node.run("web", "start")
    try:
        for image_id in (in_bucket, on_web):
            status, _h, body = get(
                node.web_port,
                f"/webgateway/pixel_values/{image_id}/0/0/?x=2156&y=2907&w=64&h=60",
                headers={"X-Auth-Token": token},
            )
            assert status == 200, body[:300]
            channels = json.loads(body)["channels"]
            for c in range(3):
                np.testing.assert_array_equal(
                    np.array(channels[c]["values"]), source[c, 2907:2967, 2156:2220]
                )
            status, _h, body = get(
                node.web_port,
                f"/webgateway/render_thumbnail/{image_id}/",
                headers={"X-Auth-Token": token},
            )
            assert status == 200 and body[:2] == b"\xff\xd8"
    finally:
        node.run("web", "stop")
