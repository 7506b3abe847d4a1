"""The images API in-process: lifecycle, uploads, downloads with Range, limits, errors."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import jsonschema
import numpy as np
import pytest

from coverslip.home import Home
from coverslip.services import Services
from coverslip.web.app import create_app

PATCH = "application/openstack-images-v2.1-json-patch"
OCTET = "application/octet-stream"


class Api:
    """A test client of one instance, acting as alice, a member of the read-only group lab."""

    def __init__(self, home: Path, **settings: Any) -> None:
        self.home = Home(home)
        # Jobs run inline: each upload's import runs in its request (tests/test_jobs.py runs workers).
        settings.setdefault("jobs.backend", "inline")
        app = create_app(self.home.settings({}, settings), self.home)
        self.services: Services = app.services
        self.client = falcon.testing.TestClient(app)
        self.auth = self.services.auth
        self.lab = self.auth.directory.add_group("lab", "read-only")
        self.user, self.headers = self.add_user("alice", self.lab)

    def add_user(self, name: str, group_id: int | None) -> tuple[int, dict[str, str]]:
        """Create a user (in ``group_id``) and return its id and the headers that sign in as it."""
        user_id = self.auth.directory.add_user(name, None)
        if group_id is not None:
            self.auth.directory.add_member(group_id, user_id)
        _token_id, token = self.auth.tokens.create(user_id)
        return user_id, {"X-Auth-Token": token}

    def request(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.simulate_request(method, "/api/v2" + path, headers=headers, **kwargs)

    def create(self, **fields: Any) -> str:
        fields.setdefault("disk_format", "npy")
        fields.setdefault("container_format", "bare")
        result = self.request("POST", "/images", json=fields)
        assert result.status_code == 201, result.text
        return str(result.json["id"])

    def put(
        self, image_id: str, data: bytes, chunked: bool = False, **headers: str
    ) -> falcon.testing.Result:
        return self.put_stream(
            image_id, io.BytesIO(data), None if chunked else len(data), **headers
        )

    def put_stream(
        self, image_id: str, stream: Any, length: int | None, where: str = "file", **headers: str
    ) -> falcon.testing.Result:
        """PUT ``stream``; with no ``length`` as a chunked body the server terminates."""
        extras: dict[str, Any] = {"wsgi.input": stream}
        all_headers = {"Content-Type": OCTET, **headers}
        if length is None:
            all_headers["Transfer-Encoding"] = "chunked"
            extras.update({"CONTENT_LENGTH": "", "wsgi.input_terminated": True})
        else:
            extras["CONTENT_LENGTH"] = str(length)
        return self.request(
            "PUT", f"/images/{image_id}/{where}", headers=all_headers, extras=extras
        )

    def image(self, image_id: str) -> dict[str, Any]:
        result = self.request("GET", f"/images/{image_id}")
        assert result.status_code == 200, result.text
        return dict(result.json)

    def leftovers(self, image_id: str) -> list[Path]:
        """Return every file kept for an image: staging, original, pyramid."""
        found = [p for p in self.home.staging.iterdir() if p.name.split(".")[0] == image_id]
        for folder in (self.home.original_dir(int(image_id)), self.home.pyramid(int(image_id))):
            if folder.exists():
                found.append(folder)
        return found


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path / "home")


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 4000, size=(300, 200), dtype=np.uint16)


@pytest.fixture
def active(api: Api, pixels: np.ndarray) -> tuple[str, bytes]:
    data = npy_bytes(pixels)
    image_id = api.create(name="cells")
    assert api.put(image_id, data).status_code == 204
    return image_id, data


# -- discovery ---------------------------------------------------------------------------


def test_versions_schemas_and_import_info(api: Api) -> None:
    versions = api.client.simulate_get("/api/versions").json
    assert any(v["id"].startswith("v2") for v in versions["versions"])
    assert api.client.simulate_get("/versions").status_code == 200
    schema = api.request("GET", "/schemas/image").json
    assert schema["properties"]["status"]["readOnly"] is True
    for name in ("images", "metadefs/namespace", "metadefs/resource_type"):
        assert api.request("GET", f"/schemas/{name}").status_code == 200
    methods = api.request("GET", "/info/import").json["import-methods"]["value"]
    assert set(methods) == {"glance-direct", "web-download"}


# -- create, upload, download ------------------------------------------------------------


def test_create_gives_a_queued_image_that_validates(api: Api) -> None:
    result = api.request(
        "POST", "/images", json={"name": "a", "disk_format": "npy", "tags": ["x", "x"], "lab": "5"}
    )
    assert result.status_code == 201
    doc = result.json
    assert result.headers["Location"].endswith(f"/api/v2/images/{doc['id']}")
    assert (doc["status"], doc["tags"], doc["lab"], doc["size"]) == ("queued", ["x"], "5", None)
    jsonschema.validate(doc, api.request("GET", "/schemas/image").json)


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_imports_and_records_checksums(api: Api, pixels: np.ndarray, chunked: bool) -> None:
    data = npy_bytes(pixels)
    image_id = api.create(name="cells")
    result = api.put(image_id, data, chunked=chunked, **{"x-openstack-image-size": str(len(data))})
    assert result.status_code == 204, result.text
    doc = api.image(image_id)
    assert doc["status"] == "active"
    assert doc["checksum"] == hashlib.md5(data).hexdigest()
    assert (doc["os_hash_algo"], doc["os_hash_value"]) == (
        "sha512",
        hashlib.sha512(data).hexdigest(),
    )
    assert doc["size"] == len(data)
    assert doc["shape"] == [1, 1, 1, 300, 200]
    jsonschema.validate(doc, api.request("GET", "/schemas/image").json)
    image = api.services.catalog.get_image(int(image_id))
    plane = api.services.pixels.open(image).read(0, 0, 0, 0, slice(None), slice(None))
    np.testing.assert_array_equal(plane, pixels)
    assert not [p for p in api.home.staging.iterdir() if p.name.startswith(f"{image_id}.")]


def test_download_whole_and_ranges(api: Api, active: tuple[str, bytes]) -> None:
    image_id, data = active
    size = len(data)
    whole = api.request("GET", f"/images/{image_id}/file")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-Type"] == OCTET
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Length"] == str(size)
    assert (
        whole.headers["Content-MD5"]
        == __import__("base64").b64encode(hashlib.md5(data).digest()).decode()
    )
    cases = {
        "bytes=0-9": (0, 9),
        "bytes=-10": (size - 10, size - 1),
        f"bytes={size - 5}-": (size - 5, size - 1),
        f"bytes=10-{size + 100}": (10, size - 1),
    }
    for header, (first, last) in cases.items():
        part = api.request("GET", f"/images/{image_id}/file", headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[first : last + 1]
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        assert (
            api.request("GET", f"/images/{image_id}/file", headers={"Range": header}).status_code
            == 416
        )
    head = api.request("HEAD", f"/images/{image_id}/file")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(size)
    several = api.request("GET", f"/images/{image_id}/file", headers={"Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data


def test_download_of_an_image_without_data_is_204(api: Api) -> None:
    assert api.request("GET", f"/images/{api.create()}/file").status_code == 204


def test_download_is_handed_to_nginx_when_configured(tmp_path: Path, pixels: np.ndarray) -> None:
    api = Api(tmp_path / "home", **{"web.sendfile": "nginx"})
    image_id = api.create()
    assert api.put(image_id, npy_bytes(pixels)).status_code == 204
    result = api.request("GET", f"/images/{image_id}/file")
    # The original is kept once in its fileset's folder, which the image's folder links to.
    fileset = api.image(image_id)["fileset"]
    kept = f"/originals/fileset-{fileset}/original.npy"
    assert result.headers["X-Accel-Redirect"].endswith(kept)
    assert result.content == b""


# -- limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_size_cap_refuses_with_413_and_leaves_nothing(
    tmp_path: Path, pixels: np.ndarray, chunked: bool
) -> None:
    api = Api(tmp_path / "home", **{"images.size_cap": "64K"})
    image_id = api.create()
    result = api.put(image_id, npy_bytes(pixels), chunked=chunked)
    assert result.status_code == 413
    assert api.image(image_id)["status"] == "queued"
    assert api.leftovers(image_id) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_quota_counts_what_the_user_keeps(tmp_path: Path, chunked: bool) -> None:
    small = npy_bytes(np.zeros((100, 100), np.uint8))  # ~10 KB
    api = Api(tmp_path / "home", **{"images.user_quota": str(len(small) * 2 - 1)})
    assert api.put(api.create(), small).status_code == 204
    second = api.create()
    assert api.put(second, small, chunked=chunked).status_code == 413
    assert api.image(second)["status"] == "queued"
    assert api.leftovers(second) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_quota_counts_uploads_still_in_flight(tmp_path: Path, chunked: bool) -> None:
    first = npy_bytes(np.zeros((1000, 1000), np.uint16))  # ~2 MB
    second = npy_bytes(np.ones((600, 1000), np.uint8))  # ~0.6 MB
    api = Api(tmp_path / "home", **{"images.user_quota": str(len(first) + len(second) - 1)})
    a, b = api.create(), api.create()
    during: list[falcon.testing.Result] = []

    def upload_the_second() -> None:
        during.append(api.put(b, second, chunked=chunked))

    # The first upload announces its size and is half-way when the second one runs.
    stream = CutStream(first, len(first) // 2, hook=upload_the_second)
    result = api.put_stream(a, stream, None, **{"x-openstack-image-size": str(len(first))})
    assert during and during[0].status_code == 413, during[0].text
    assert "quota" in during[0].json["description"]
    assert result.status_code == 204, result.text
    assert api.image(b)["status"] == "queued" and api.leftovers(b) == []
    assert api.image(a)["status"] == "active"


def test_announced_size_must_match(api: Api, pixels: np.ndarray) -> None:
    data = npy_bytes(pixels)
    image_id = api.create()
    result = api.put(image_id, data, chunked=True, **{"x-openstack-image-size": str(len(data) + 1)})
    assert result.status_code == 400
    assert api.image(image_id)["status"] == "queued"
    assert api.leftovers(image_id) == []


# -- failures ----------------------------------------------------------------------------


class CutStream:
    """A body that breaks (or runs ``hook``) after ``after`` bytes."""

    def __init__(self, data: bytes, after: int, hook: Any = None) -> None:
        self.data = io.BytesIO(data)
        self.after = after
        self.hook = hook
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        if self.sent >= self.after:
            if self.hook is None:
                raise ConnectionResetError("client went away")
            self.hook()
            self.hook = lambda: None
        block = self.data.read(min(size, 64 * 1024))
        self.sent += len(block)
        return block

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self.read()]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readlines())


@pytest.mark.parametrize("chunked", [False, True])
def test_client_disconnect_leaves_a_queued_image_and_no_bytes(
    api: Api, pixels: np.ndarray, chunked: bool
) -> None:
    data = npy_bytes(pixels)
    image_id = api.create()
    result = api.put_stream(image_id, CutStream(data, 50_000), None if chunked else len(data))
    assert result.status_code == 400
    assert api.image(image_id)["status"] == "queued"
    assert api.leftovers(image_id) == []
    assert api.put(image_id, data).status_code == 204  # and it can be uploaded again


def test_delete_during_upload_gives_410(api: Api, pixels: np.ndarray) -> None:
    data = npy_bytes(pixels)
    image_id = api.create()

    def delete() -> None:
        assert api.request("DELETE", f"/images/{image_id}").status_code == 204

    result = api.put_stream(image_id, CutStream(data, 50_000, delete), len(data))
    assert result.status_code == 410
    assert api.request("GET", f"/images/{image_id}").status_code == 404
    assert api.leftovers(image_id) == []


def test_bad_content_goes_back_to_queued_with_a_message(api: Api) -> None:
    image_id = api.create(disk_format="tiff")
    result = api.put(image_id, b"this is not a tiff at all")
    assert result.status_code == 400
    doc = api.image(image_id)
    assert doc["status"] == "queued" and doc["message"]
    assert str(api.home.root) not in result.text + doc["message"]
    assert api.leftovers(image_id) == []


def test_chunked_body_without_a_way_to_read_it_is_411(api: Api) -> None:
    image_id = api.create()
    result = api.request(
        "PUT",
        f"/images/{image_id}/file",
        headers={"Content-Type": OCTET, "Transfer-Encoding": "chunked"},
        body=b"abc",
        extras={"CONTENT_LENGTH": ""},
    )
    assert result.status_code == 411
    assert api.image(image_id)["status"] == "queued"


# -- wrong status, bad documents, media types ---------------------------------------------


def test_wrong_status_calls_are_409(api: Api, active: tuple[str, bytes]) -> None:
    image_id, data = active
    assert api.put(image_id, data).status_code == 409
    assert api.put_stream(image_id, io.BytesIO(data), len(data), where="stage").status_code == 409
    queued = api.create()
    direct = {"method": {"name": "glance-direct"}}
    assert api.request("POST", f"/images/{queued}/import", json=direct).status_code == 409
    web = {"method": {"name": "web-download", "uri": "http://127.0.0.1:9/x.npy"}}
    assert api.request("POST", f"/images/{image_id}/import", json=web).status_code == 409
    change = [{"op": "replace", "path": "/disk_format", "value": "tiff"}]
    assert (
        api.request(
            "PATCH", f"/images/{image_id}", body=json.dumps(change), headers={"Content-Type": PATCH}
        ).status_code
        == 403
    )


def patch(api: Api, image_id: str, document: Any, media: str = PATCH) -> falcon.testing.Result:
    body = document if isinstance(document, str) else json.dumps(document)
    return api.request("PATCH", f"/images/{image_id}", body=body, headers={"Content-Type": media})


def test_patch_changes_core_fields_tags_and_extra_properties(api: Api) -> None:
    image_id = api.create(name="a", lab="x")
    ops = [
        {"op": "replace", "path": "/name", "value": "b"},
        {"op": "replace", "path": "/tags", "value": ["t1", "t2"]},
        {"op": "add", "path": "/stain", "value": "DAPI"},
        {"op": "replace", "path": "/lab", "value": "y"},
        {"op": "replace", "path": "/min_disk", "value": 3},
        {"op": "replace", "path": "/protected", "value": True},
    ]
    doc = patch(api, image_id, ops).json
    assert (doc["name"], doc["tags"], doc["stain"], doc["lab"], doc["min_disk"]) == (
        "b",
        ["t1", "t2"],
        "DAPI",
        "y",
        3,
    )
    assert api.request("DELETE", f"/images/{image_id}").status_code == 403  # protected
    doc = patch(
        api,
        image_id,
        [
            {"op": "remove", "path": "/stain"},
            {"op": "replace", "path": "/protected", "value": False},
        ],
    ).json
    assert "stain" not in doc
    assert api.request("DELETE", f"/images/{image_id}").status_code == 204


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ("{not json", 400),
        ({"op": "replace"}, 400),
        ([{"op": "move", "path": "/name", "from": "/x"}], 400),
        ([{"op": "replace", "path": "name", "value": "x"}], 400),
        ([{"op": "replace", "path": "/a/b", "value": "x"}], 400),
        ([{"op": "replace", "path": "/name"}], 400),
        ([{"op": "replace", "path": "/name", "value": 5}], 400),
        ([{"op": "replace", "path": "/visibility", "value": "community"}], 400),
        ([{"op": "add", "path": "/lab", "value": 5}], 400),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403),
        ([{"op": "replace", "path": "/checksum", "value": "0"}], 403),
        ([{"op": "replace", "path": "/id", "value": "7"}], 403),
        ([{"op": "add", "path": "/os_glance_x", "value": "1"}], 403),
        ([{"op": "add", "path": "/deleted", "value": "1"}], 403),
        ([{"op": "remove", "path": "/name"}], 403),
        ([{"op": "replace", "path": "/nothing", "value": "1"}], 409),
        ([{"op": "remove", "path": "/nothing"}], 409),
    ],
)
def test_bad_patches(api: Api, document: Any, status: int) -> None:
    image_id = api.create(name="a")
    assert patch(api, image_id, document).status_code == status
    assert api.image(image_id)["name"] == "a"


def test_media_types_are_415(api: Api) -> None:
    image_id = api.create()
    assert patch(api, image_id, [], media="application/json").status_code == 415
    assert (
        api.request(
            "POST", "/images", body="{}", headers={"Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert (
        api.request(
            "PUT",
            f"/images/{image_id}/file",
            body=b"x",
            headers={"Content-Type": "application/json"},
        ).status_code
        == 415
    )


@pytest.mark.parametrize(
    ("document", "status"),
    [
        ("[1, 2", 400),
        ([], 400),
        ({"name": 5}, 400),
        ({"disk_format": "qcow2"}, 400),
        ({"lab": {"nested": 1}}, 400),
        ({"status": "active"}, 403),
        ({"id": "5"}, 403),
        ({"size": 5}, 403),
        ({"os_glance_importing_to_stores": "x"}, 403),
        ({"dataset": 999}, 400),
    ],
)
def test_bad_creates(api: Api, document: Any, status: int) -> None:
    body = document if isinstance(document, str) else json.dumps(document)
    result = api.request("POST", "/images", body=body, headers={"Content-Type": "application/json"})
    assert result.status_code == status, result.text
    assert api.request("GET", "/images").json["images"] == []


# -- list --------------------------------------------------------------------------------


def test_list_filters_sorts_and_pages(api: Api, pixels: np.ndarray) -> None:
    ids = [api.create(name=f"img{i}", tags=["even"] if i % 2 == 0 else []) for i in range(5)]
    assert api.put(ids[0], npy_bytes(pixels)).status_code == 204
    names = [
        doc["name"]
        for doc in api.request("GET", "/images?sort_key=name&sort_dir=asc").json["images"]
    ]
    assert names == [f"img{i}" for i in range(5)]
    newest = api.request("GET", "/images").json["images"]
    assert [doc["id"] for doc in newest] == ids[::-1]
    seen: list[str] = []
    url = "/v2/images?limit=2&sort=name:desc"
    while url:
        page = api.client.simulate_get(
            "/api" + url.split("?")[0], query_string=url.split("?")[1], headers=api.headers
        ).json
        seen += [doc["id"] for doc in page["images"]]
        url = page.get("next", "")
    assert seen == ids[::-1]

    def listed(query: str) -> list[str]:
        return [
            doc["id"] for doc in api.request("GET", "/images", query_string=query).json["images"]
        ]

    assert listed("tag=even&sort_key=id&sort_dir=asc") == [ids[0], ids[2], ids[4]]
    assert listed("status=active") == [ids[0]]
    assert listed("name=img3") == [ids[3]]
    assert listed("size_min=1") == [ids[0]]
    assert listed(f"owner={api.user}&limit=1") == [ids[4]]
    assert len(listed("visibility=shared")) == 5
    assert listed("visibility=public") == []
    for query in (
        "sort_key=colour",
        "sort_dir=up",
        "limit=x",
        "marker=999",
        "visibility=community",
    ):
        assert api.request("GET", "/images", query_string=query).status_code == 400, query


def test_hidden_images_are_left_out_unless_asked(api: Api) -> None:
    hidden = api.create(os_hidden=True)
    shown = api.create()
    assert [d["id"] for d in api.request("GET", "/images").json["images"]] == [shown]
    assert [d["id"] for d in api.request("GET", "/images?os_hidden=true").json["images"]] == [
        hidden
    ]


# -- permissions -------------------------------------------------------------------------


def test_anonymous_other_members_and_strangers(api: Api, active: tuple[str, bytes]) -> None:
    image_id, data = active
    assert api.client.simulate_post("/api/v2/images", json={"name": "x"}).status_code == 401
    bad = api.client.simulate_get("/api/v2/images", headers={"X-Auth-Token": "nonsense"})
    assert bad.status_code == 401
    _bob, member = api.add_user("bob", api.lab)  # reads the lab's images, changes none
    assert api.request("GET", f"/images/{image_id}", headers=member).status_code == 200
    assert api.request("GET", f"/images/{image_id}/file", headers=member).content == data
    assert patch_as(api, image_id, member).status_code == 403
    assert api.request("DELETE", f"/images/{image_id}", headers=member).status_code == 403
    _carol, stranger = api.add_user("carol", None)  # sees nothing of the lab
    assert api.request("GET", f"/images/{image_id}", headers=stranger).status_code == 404
    assert api.request("DELETE", f"/images/{image_id}", headers=stranger).status_code == 404
    assert api.request("GET", "/images", headers=stranger).json["images"] == []
    assert api.request("POST", "/images", json={}, headers=stranger).status_code == 403


def patch_as(api: Api, image_id: str, headers: dict[str, str]) -> falcon.testing.Result:
    body = json.dumps([{"op": "replace", "path": "/name", "value": "z"}])
    return api.request(
        "PATCH", f"/images/{image_id}", body=body, headers={**headers, "Content-Type": PATCH}
    )


def test_visibility_moves_the_image_between_groups(api: Api) -> None:
    image_id = api.create()
    assert api.image(image_id)["visibility"] == "shared"
    publish = [{"op": "replace", "path": "/visibility", "value": "public"}]
    assert patch(api, image_id, publish).status_code == 403  # alice is in no public group
    public = api.auth.ensure_public_group()
    api.auth.directory.add_member(public, api.user)
    assert patch(api, image_id, publish).json["visibility"] == "public"
    assert api.services.catalog.get_image(int(image_id)).group_id == public
    anonymous = api.client.simulate_get(f"/api/v2/images/{image_id}")
    assert anonymous.status_code == 200
    assert [d["id"] for d in api.request("GET", "/images?visibility=public").json["images"]] == [
        image_id
    ]
    private = [{"op": "replace", "path": "/visibility", "value": "private"}]
    assert patch(api, image_id, private).status_code == 403  # lab is read-only: shared
    back = [{"op": "replace", "path": "/visibility", "value": "shared"}]
    assert patch(api, image_id, back).json["visibility"] == "shared"
    assert api.services.catalog.get_image(int(image_id)).group_id == api.lab
    assert api.client.simulate_get(f"/api/v2/images/{image_id}").status_code == 404


# -- staged import and web-download ------------------------------------------------------


def wait_for(
    api: Api, image_id: str, statuses: tuple[str, ...] = ("active", "queued")
) -> dict[str, Any]:
    for _ in range(200):
        doc = api.image(image_id)
        if doc["status"] in statuses:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"image {image_id} stuck in {doc['status']}")


def test_stage_then_glance_direct_import(api: Api, pixels: np.ndarray) -> None:
    data = npy_bytes(pixels)
    image_id = api.create()
    assert api.put_stream(image_id, io.BytesIO(data), None, where="stage").status_code == 204
    assert api.image(image_id)["status"] == "uploading"
    result = api.request(
        "POST", f"/images/{image_id}/import", json={"method": {"name": "glance-direct"}}
    )
    assert result.status_code == 202
    doc = wait_for(api, image_id)
    assert doc["status"] == "active" and doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
    tasks = api.request("GET", f"/images/{image_id}/tasks").json["tasks"]
    assert [(t["status"], t["type"]) for t in tasks] == [("success", "api_image_import")]


def test_web_download_from_an_allowed_host(
    tmp_path: Path, file_server: tuple[str, Path], pixels: np.ndarray
) -> None:
    address, root = file_server
    (root / "cells.npy").write_bytes(npy_bytes(pixels))
    api = Api(tmp_path / "home", **{"images.web_download_allowed_hosts": "127.0.0.1"})
    image_id = api.create()
    body = {"method": {"name": "web-download", "uri": f"http://{address}/cells.npy"}}
    assert api.request("POST", f"/images/{image_id}/import", json=body).status_code == 202
    doc = wait_for(api, image_id)
    assert doc["status"] == "active" and doc["size"] == len(npy_bytes(pixels))
    failing = api.create()
    body = {"method": {"name": "web-download", "uri": f"http://{address}/missing.npy"}}
    assert api.request("POST", f"/images/{failing}/import", json=body).status_code == 202
    assert wait_for(api, failing, ("active", "killed"))["status"] == "killed"
    task = api.request("GET", f"/images/{failing}/tasks").json["tasks"][0]
    assert task["status"] == "failure" and "404" in task["message"]
    assert api.leftovers(failing) == []


@pytest.mark.parametrize(
    ("allowed", "uri"),
    [
        ("", "http://127.0.0.1:9/x.npy"),  # nothing listed
        ("example.org", "http://127.0.0.1:9/x.npy"),  # not listed
        ("localhost", "http://localhost:9/x.npy"),  # listed by name, but a loopback address
        ("10.0.0.0/8", "http://169.254.169.254/latest/meta-data"),  # link-local, not listed
        ("127.0.0.1", "file:///etc/passwd"),  # not http
    ],
)
def test_web_download_refuses_unlisted_and_internal_hosts(
    tmp_path: Path, allowed: str, uri: str
) -> None:
    api = Api(tmp_path / "home", **{"images.web_download_allowed_hosts": allowed})
    image_id = api.create()
    result = api.request(
        "POST", f"/images/{image_id}/import", json={"method": {"name": "web-download", "uri": uri}}
    )
    assert result.status_code in (400, 403)
    assert api.image(image_id)["status"] == "queued"


def test_tiff_and_zipped_ome_zarr_uploads(
    api: Api, active: tuple[str, bytes], pixels: np.ndarray
) -> None:
    import zipfile

    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels)
    tiff = api.create(disk_format="tiff")
    assert api.put(tiff, buffer.getvalue()).status_code == 204
    # The pyramid of an imported image is an OME-Zarr: zip it and upload it again.
    image_id, _ = active
    folder = api.home.pyramid(int(image_id))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, Path("cells.ome.zarr") / path.relative_to(folder))
    zarr = api.create(disk_format="ome-zarr")
    assert api.put(zarr, archive.getvalue()).status_code == 204, api.image(zarr)["message"]
    for new in (tiff, zarr):
        image = api.services.catalog.get_image(int(new))
        plane = api.services.pixels.open(image).read(0, 0, 0, 0, slice(None), slice(None))
        np.testing.assert_array_equal(plane, pixels)
    assert not (api.home.staging / f"{zarr}.zarr").exists()


def test_zip_with_unsafe_paths_is_refused(api: Api) -> None:
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../escape.txt", "x")
    image_id = api.create(disk_format="ome-zarr")
    assert api.put(image_id, archive.getvalue()).status_code == 400
    assert not (api.home.root.parent / "escape.txt").exists()
    assert api.leftovers(image_id) == []


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"images.unzip_max_bytes": "1M"}, "images.unzip_max_bytes"),
        ({"images.unzip_max_files": "3"}, "images.unzip_max_files"),
    ],
)
def test_zip_bomb_is_refused_before_unpacking(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    import zipfile

    api = Api(tmp_path / "home", **settings)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("bomb.zarr/zarr.json", '{"zarr_format": 3, "node_type": "group"}')
        for n in range(3):  # 3 × 8 MB of zeros deflate to a few kB each
            bundle.writestr(f"bomb.zarr/0/c/{n}", bytes(8 * 1024 * 1024))
    assert len(archive.getvalue()) < 200_000
    image_id = api.create(disk_format="ome-zarr")
    answer = api.put(image_id, archive.getvalue())
    assert answer.status_code == 413, answer.text
    assert named in answer.json["description"]
    assert api.image(image_id)["status"] == "killed"
    assert api.leftovers(image_id) == []
    assert not list(api.home.staging.glob(f"{image_id}*"))
