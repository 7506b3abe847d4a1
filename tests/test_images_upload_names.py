"""What an upload keeps of the client's file, as the CLI does: its name, a refusal of bytes
the uploader already has, and the datasets an upload can be filed in."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.test_images_api import Api, npy_bytes


@pytest.fixture
def api(tmp_path) -> Api:  # type: ignore[no-untyped-def]
    return Api(tmp_path / "home")


DATA = npy_bytes(np.arange(12000, dtype=np.uint16).reshape(100, 120))


def download_name(api: Api, image_id: str) -> str:
    answer = api.request("GET", f"/images/{image_id}/file")
    assert answer.status_code == 200, answer.text
    assert answer.content == DATA
    return answer.headers["content-disposition"]


@pytest.mark.parametrize(
    ("disposition", "kept"),
    [
        ('attachment; filename="cells day 1.npy"', "cells day 1.npy"),
        ("attachment; filename*=UTF-8''Zell%C3%A4hnlich.npy", "Zellähnlich.npy"),
        ('attachment; filename="../../../etc/cells.npy"', "cells.npy"),
        ('attachment; filename="C:\\\\data\\\\cells.npy"', "cells.npy"),
        ('attachment; filename="cells.png"', "original.npy"),  # not what the bytes are
        ('attachment; filename=".hidden.npy"', "original.npy"),
        (None, "original.npy"),
    ],
)
def test_the_uploaded_file_keeps_its_name_when_it_fits(
    api: Api, disposition: str | None, kept: str
) -> None:
    image_id = api.create(name="cells")
    headers = {"Content-Disposition": disposition} if disposition else {}
    assert api.put_stream(image_id, io.BytesIO(DATA), len(DATA), **headers).status_code == 204
    assert api.image(image_id)["status"] == "active"
    record = api.services.catalog.get_image(int(image_id))
    assert record.original_name == kept
    folder = api.home.original_dir(int(image_id))
    assert [path.name for path in folder.iterdir()] == [kept]
    sent = download_name(api, image_id)
    assert f'"{kept}"' in sent if kept.isascii() else "filename*=" in sent


def test_refused_duplicates_name_only_images_the_uploader_sees(api: Api) -> None:
    first = api.create(name="first")
    assert api.put(first, DATA).status_code == 204
    again = api.create(name="again")
    refused = api.client.simulate_put(
        f"/api/v2/images/{again}/file",
        params={"duplicates": "refuse"},
        body=DATA,
        headers={**api.headers, "Content-Type": "application/octet-stream"},
    )
    assert refused.status_code == 409, refused.text
    assert f"already imported as image {first}" in refused.json["description"]
    assert api.image(again)["status"] == "killed"
    assert api.leftovers(again) == []
    # Someone of another group who cannot see the first image is not told of it.
    other_group = api.auth.directory.add_group("other", "private")
    _bob, bob = api.add_user("bob", other_group)
    made = api.request(
        "POST",
        "/images",
        json={"name": "bob's", "disk_format": "npy", "container_format": "bare"},
        headers=bob,
    )
    assert made.status_code == 201
    mine = str(made.json["id"])
    kept = api.client.simulate_put(
        f"/api/v2/images/{mine}/file",
        params={"duplicates": "refuse"},
        body=DATA,
        headers={**bob, "Content-Type": "application/octet-stream"},
    )
    assert kept.status_code == 204, kept.text
    assert api.request("GET", f"/images/{mine}", headers=bob).json["status"] == "active"
    # By default the images API keeps duplicates, as Glance does.
    plain = api.create(name="plain")
    assert api.put(plain, DATA).status_code == 204
    assert api.image(plain)["status"] == "active"
    bad = api.client.simulate_put(
        f"/api/v2/images/{plain}/file",
        params={"duplicates": "maybe"},
        body=DATA,
        headers={**api.headers, "Content-Type": "application/octet-stream"},
    )
    assert bad.status_code == 400 and "duplicates" in bad.json["description"]


def test_datasets_to_file_uploads_in(api: Api) -> None:
    assert api.request("GET", "/datasets").json == {"datasets": []}
    made = api.request("POST", "/datasets", json={"name": "  Day 1  ", "description": "first"})
    assert made.status_code == 201, made.text
    assert (made.json["name"], made.json["description"], made.json["can_add"]) == (
        "Day 1",
        "first",
        True,
    )
    assert made.json["group_id"] == api.lab
    dataset = made.json["id"]
    again = api.request("POST", "/datasets", json={"name": "Day 1"})
    assert again.status_code == 409 and "exists already" in again.json["description"]
    for body, named in (
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ([], "body"),
        ({"name": "x", "description": 5}, "description"),
    ):
        refused = api.request("POST", "/datasets", json=body)
        assert refused.status_code == 400 and named in refused.json["description"], body
    image_id = api.create(name="filed", dataset=dataset)
    assert api.put(image_id, DATA).status_code == 204
    (listed,) = api.request("GET", "/datasets").json["datasets"]
    assert (listed["id"], listed["image_count"]) == (dataset, 1)
    # Another member of the read-only group sees it, but may not add to it; strangers see nothing.
    _carol, carol = api.add_user("carol", api.lab)
    (seen,) = api.request("GET", "/datasets", headers=carol).json["datasets"]
    assert (seen["id"], seen["can_add"]) == (dataset, False)
    _dave, dave = api.add_user("dave", api.auth.directory.add_group("elsewhere", "private"))
    assert api.request("GET", "/datasets", headers=dave).json["datasets"] == []
    anonymous = api.client.simulate_post("/api/v2/datasets", json={"name": "x"})
    assert anonymous.status_code == 401
