"""Two Coverslip nodes behind one nginx, sharing PostgreSQL, Redis and an S3 object store.

Everything is real and started here: SeaweedFS (from PyPI) as the object store, PostgreSQL
and Redis from Debian, two instance homes whose `coverslip web` and `coverslip thumbs` run as
separate processes on ports of their own, and nginx with the site `coverslip config nginx
--node … --thumbs-node …` writes. Nothing is shared between the nodes but those servers.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from tests.helpers import decode
from tests.servers import ObjectServer, object_server
from tests.test_deploy_config import NGINX, free_port, nginx_main
from tests.test_deploy_servers import Instance, get, wait_for_port
from tests.test_security_ops import fresh_database

pytestmark = pytest.mark.slow

BUCKET = "coverslip-pixels"
RNG = np.random.default_rng(16)


@dataclass
class Cluster:
    a: Instance
    b: Instance
    store: ObjectServer
    proxy: int  # nginx's port
    token: str  # the administrator's API token
    password: str  # the administrator's
    redis_url: str  # sessions, the render cache and change notices

    @property
    def auth(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def imported(self, node: Instance, path: Path) -> int:
        output = node.run("import", str(path), "--json", "--allow-duplicate")
        line = next(line for line in output.splitlines() if line.startswith('{"imported"'))
        return int(json.loads(line)["imported"][0])


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    shared_redis = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(shared_redis).flushdb()
    with object_server(root) as store:
        store.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        shared = {
            **store.env,
            "COVERSLIP_DB_URL": fresh_database(postgres_url),
            "COVERSLIP_SESSIONS_BACKEND": "redis",
            "COVERSLIP_SESSIONS_REDIS_URL": shared_redis,
            "COVERSLIP_CACHE_BACKEND": "redis",
            "COVERSLIP_PIXELS_STORE": f"s3://{BUCKET}/instance",
            "COVERSLIP_PIXELS_S3_ENDPOINT": store.endpoint,
            "COVERSLIP_PIXELS_S3_TIMEOUT": "2",
            "COVERSLIP_JOBS_BACKEND": "inline",
            "COVERSLIP_WEB_WORKERS": "1",
            "COVERSLIP_WEB_SENDFILE": "none",
        }
        a = Instance(root / "a", shared)
        b = Instance(root / "b", shared)
        made = a.run("user", "ensure-admin")
        password = made.split("password: ", 1)[1].split()[0]
        token = json.loads(a.run("token", "create", "admin", "--name", "tests", "--json"))["token"]
        nginx = None
        try:
            for node in (a, b):
                node.run("web", "start")
                node.run("thumbs", "start")
            proxy = free_port()
            site = a.run(
                "config", "nginx", "--http", str(proxy), "--servername", "localhost",
                "--node", f"127.0.0.1:{a.web_port}", "--node", f"127.0.0.1:{b.web_port}",
                "--thumbs-node", f"127.0.0.1:{a.thumbs_port}",
                "--thumbs-node", f"127.0.0.1:{b.thumbs_port}",
            )  # fmt: skip
            assert site.count("    server 127.0.0.1:") == 4, site
            (root / "nginx").mkdir()
            conf = nginx_main(root / "nginx", site)
            nginx = subprocess.Popen(
                [NGINX, "-c", str(conf), "-p", str(root / "nginx"), "-g", "daemon off;"]
            )
            wait_for_port(proxy)
            yield Cluster(a, b, store, proxy, token, password, shared_redis)
        finally:
            if nginx is not None:
                nginx.send_signal(signal.SIGQUIT)
                nginx.wait(timeout=15)
            for node in (a, b):
                node.run("web", "stop")
                node.run("thumbs", "stop")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 300 × 520 uint8 plane: two pyramid levels, ragged edge tiles."""
    data = RNG.integers(0, 256, (300, 520), dtype=np.uint8)
    path = tmp_path_factory.mktemp("plane") / "plane.npy"
    np.save(path, data)
    return path, data


def grey_region(
    node: Instance, image_id: int, x: int, y: int, w: int, h: int, **kw: Any
) -> np.ndarray:
    """Return the region rendered greyscale over the full uint8 range: the stored values."""
    status, _headers, body = get(
        node.web_port,
        f"/webgateway/render_image_region/{image_id}/0/0/"
        f"?region={x},{y},{w},{h}&c=1|0:255$FFFFFF&m=g&format=png",
        **kw,
    )
    assert status == 200, body[:300]
    return decode(body)[:, :, 0]


def test_an_image_imported_on_one_node_is_served_whole_by_the_other(
    cluster: Cluster, plane: tuple[Path, np.ndarray]
) -> None:
    path, data = plane
    image_id = cluster.imported(cluster.a, path)
    # Neither home holds its pixels or its original: they are in the store.
    for node in (cluster.a, cluster.b):
        assert not list((node.home / "pixels").glob("*")), node.home
        assert not list((node.home / "originals").glob("**/*.npy"))
    keys = cluster.store.client().list_objects_v2(Bucket=BUCKET, Prefix="instance/")  # type: ignore[attr-defined]
    names = {item["Key"] for item in keys["Contents"]}
    assert f"instance/pixels/{image_id}.ome.zarr/zarr.json" in names
    assert any(name.startswith("instance/originals/") for name in names)

    auth = {"headers": cluster.auth}
    np.testing.assert_array_equal(grey_region(cluster.b, image_id, 0, 0, 520, 300, **auth), data)
    np.testing.assert_array_equal(
        grey_region(cluster.b, image_id, 250, 200, 270, 100, **auth), data[200:300, 250:520]
    )
    status, _h, body = get(
        cluster.b.web_port, f"/webgateway/pixel_values/{image_id}/0/0/?x=511&y=290&w=9&h=10", **auth
    )
    assert status == 200, body
    values = json.loads(body)
    assert np.array_equal(np.array(values["channels"][0]["values"]), data[290:300, 511:520])

    original = path.read_bytes()
    status, headers, body = get(cluster.b.web_port, f"/api/v2/images/{image_id}/file", **auth)
    assert status == 200
    assert hashlib.sha512(body).hexdigest() == hashlib.sha512(original).hexdigest()
    status, headers, body = get(
        cluster.b.web_port,
        f"/api/v2/images/{image_id}/file",
        headers={**cluster.auth, "Range": "bytes=100-4195"},
    )
    assert status == 206
    assert headers["content-range"] == f"bytes 100-4195/{len(original)}"
    assert body == original[100:4196]

    # `coverslip check` on the other node reads every chunk and re-hashes the original there.
    assert cluster.b.run("check", str(image_id)).strip() == f"image {image_id}: ok"
    client: Any = cluster.store.client()
    prefix = f"instance/pixels/{image_id}.ome.zarr"
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/1/c/0/0/0/0/1")
    original_key = next(name for name in names if name.startswith("instance/originals/"))
    client.delete_object(Bucket=BUCKET, Key=original_key)
    out = cluster.b.run("check", str(image_id), code=1)
    assert "chunk 0,1 of plane t=0 c=0 z=0 at level 1 is missing" in out
    assert "is missing from the object store" in out


def test_an_upload_through_nginx_reaches_both_nodes(
    cluster: Cluster, plane: tuple[Path, np.ndarray]
) -> None:
    _path, data = plane
    flipped = np.ascontiguousarray(data[::-1])
    npy = _npy(flipped)
    status, _h, body = get(
        cluster.proxy,
        "/api/v2/images",
        "POST",
        json.dumps({"name": "uploaded", "disk_format": "npy"}),
        {**cluster.auth, "Content-Type": "application/json"},
    )
    assert status == 201, body
    image_id = json.loads(body)["id"]
    status, _h, body = get(
        cluster.proxy,
        f"/api/v2/images/{image_id}/file",
        "PUT",
        npy,
        {**cluster.auth, "Content-Type": "application/octet-stream"},
    )
    assert status == 204, body
    for node in (cluster.a, cluster.b):
        got = grey_region(node, int(image_id), 0, 0, 520, 300, headers=cluster.auth)
        np.testing.assert_array_equal(got, flipped)
        status, _h, body = get(
            node.web_port, f"/api/v2/images/{image_id}/file", headers=cluster.auth
        )
        assert status == 200 and body == npy


def _npy(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def thumbnail(node: Instance, image_id: int, auth: dict[str, str]) -> np.ndarray:
    status, _h, body = get(
        node.thumbs_port, f"/webgateway/render_thumbnail/{image_id}/96/", headers=auth
    )
    assert status == 200, body[:200]
    return decode(body).astype(int)


def test_settings_saved_on_one_node_show_on_the_others_next_thumbnail(
    cluster: Cluster, plane: tuple[Path, np.ndarray]
) -> None:
    path, _data = plane
    image_id = cluster.imported(cluster.a, path)
    before = {
        node.home.name: thumbnail(node, image_id, cluster.auth) for node in (cluster.a, cluster.b)
    }
    for picture in before.values():  # greyscale: every channel alike
        assert np.array_equal(picture[..., 0], picture[..., 1])
    # The thumbnail both nodes served is one entry in the shared Redis tier.
    shared = redis.Redis.from_url(cluster.redis_url)
    assert list(shared.scan_iter(match=f"coverslip:render:{image_id}:*"))
    status, _h, body = get(
        cluster.a.web_port,
        f"/webgateway/saveImgRDef/{image_id}/?c=1|0:255$FF0000&m=c",
        "POST",
        headers=cluster.auth,
    )
    assert status == 200, body
    for node in (cluster.b, cluster.a):
        after = thumbnail(node, image_id, cluster.auth)
        assert after[..., 0].max() > 100, node.home.name  # red now
        assert after[..., 1].max() < 16 and after[..., 2].max() < 16, node.home.name


def test_a_session_revoked_on_one_node_is_refused_by_the_other_at_once(cluster: Cluster) -> None:
    status, headers, body = get(
        cluster.a.web_port,
        "/api/v2/session",
        "POST",
        json.dumps({"username": "admin", "password": cluster.password}),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    cookie = headers["set-cookie"].split(";", 1)[0]
    csrf = json.loads(body)["csrf_token"]
    status, _h, body = get(cluster.b.web_port, "/api/v2/session", headers={"Cookie": cookie})
    assert json.loads(body)["authenticated"] is True
    status, _h, _b = get(
        cluster.a.web_port,
        "/api/v2/session",
        "DELETE",
        headers={"Cookie": cookie, "X-CSRFToken": csrf},
    )
    assert status == 204
    status, _h, body = get(cluster.b.web_port, "/api/v2/session", headers={"Cookie": cookie})
    assert json.loads(body)["authenticated"] is False


def test_the_written_pyramid_opens_with_zarr_python_straight_from_the_store(
    cluster: Cluster, plane: tuple[Path, np.ndarray]
) -> None:
    import zarr

    path, data = plane
    image_id = cluster.imported(cluster.b, path)
    group = zarr.open_group(
        f"s3://{BUCKET}/instance/pixels/{image_id}.ome.zarr",
        mode="r",
        storage_options={
            "endpoint_url": cluster.store.endpoint,
            "key": cluster.store.env["AWS_ACCESS_KEY_ID"],
            "secret": cluster.store.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    assert group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "0"
    np.testing.assert_array_equal(np.asarray(group["0"][0, 0, 0]), data)


def test_a_store_that_stops_answering_gets_503_and_service_comes_back(
    cluster: Cluster, plane: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, data = plane
    image_id = cluster.imported(cluster.a, path)
    cluster.store.stop(kill=True)  # the store crashes
    try:
        status, _h, body = get(
            cluster.b.web_port,
            f"/webgateway/render_image_region/{image_id}/0/0/?region=7,9,33,21&format=png",
            headers={**cluster.auth, "Accept": "application/json"},
        )
        assert status == 503, body[:300]
        assert "object store" in json.loads(body)["description"]
        status, _h, body = get(cluster.b.web_port, "/readyz")
        assert status == 503 and "objects" in json.loads(body)["down"]
        other = tmp_path / "other.npy"
        np.save(other, data[:50, :60])
        out = cluster.a.run("import", str(other), "--json", "--allow-duplicate", code=1)
        assert "object store" in out
    finally:
        cluster.store.start()
    status, _h, body = get(cluster.b.web_port, "/readyz")
    assert status == 200, body
    np.testing.assert_array_equal(
        grey_region(cluster.b, image_id, 7, 9, 33, 21, headers=cluster.auth), data[9:30, 7:40]
    )
    listed = json.loads(get(cluster.b.web_port, "/api/v2/images", headers=cluster.auth)[2])
    assert "other.npy" not in [
        image["name"] for image in listed["images"] if image["status"] == "active"
    ]
