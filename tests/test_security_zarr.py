"""An uploaded or registered OME-Zarr can never read pixels from outside its own folder."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from coverslip.errors import ImportFailed
from coverslip.imports import ImportOptions
from tests.test_images_api import Api, npy_bytes


@pytest.fixture
def victim(tmp_path: Path) -> tuple[Api, str, np.ndarray, dict[str, str]]:
    """Return an instance where alice owns a private image, and the headers of bob, an outsider."""
    api = Api(tmp_path / "home")
    secret = np.random.default_rng(11).integers(0, 60000, size=(64, 48), dtype=np.uint16)
    private = api.auth.directory.add_group("private-lab", "private")
    api.auth.directory.add_member(private, api.user)
    image_id = api.create(name="secret")
    assert api.put(image_id, npy_bytes(secret)).status_code == 204
    api.services.catalog.update_image(int(image_id), group_id=private)
    other = api.auth.directory.add_group("other-lab", "private")
    _bob, bob = api.add_user("bob", other)
    return api, image_id, secret, bob


def zarr_zip(level_path: str, extra: dict[str, bytes] | None = None) -> bytes:
    """Return a zipped OME-Zarr 0.5 group whose only level is ``level_path``."""
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {
            "ome": {
                "version": "0.5",
                "multiscales": [
                    {
                        "axes": [
                            {"name": "t", "type": "time"},
                            {"name": "c", "type": "channel"},
                            {"name": "z", "type": "space"},
                            {"name": "y", "type": "space"},
                            {"name": "x", "type": "space"},
                        ],
                        "datasets": [
                            {
                                "path": level_path,
                                "coordinateTransformations": [
                                    {"type": "scale", "scale": [1, 1, 1, 1, 1]}
                                ],
                            }
                        ],
                    }
                ],
            }
        },
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("attack.ome.zarr/zarr.json", json.dumps(group))
        for name, data in (extra or {}).items():
            bundle.writestr(name, data)
    return archive.getvalue()


def attempt(api: Api, bob: dict[str, str], archive: bytes) -> tuple[int, str]:
    """Upload ``archive`` as bob; return the status of the PUT and the image's message."""
    result = api.request(
        "POST",
        "/images",
        json={"disk_format": "ome-zarr", "container_format": "bare"},
        headers=bob,
    )
    assert result.status_code == 201, result.text
    image_id = str(result.json["id"])
    put = api.request(
        "PUT",
        f"/images/{image_id}/file",
        headers={**bob, "Content-Type": "application/octet-stream"},
        body=archive,
    )
    image = api.request("GET", f"/images/{image_id}", headers=bob).json
    return put.status_code, str(image.get("message") or put.text)


def level0(api: Api, image_id: str) -> Path:
    return api.home.pyramid(int(image_id)) / "0"


@pytest.mark.parametrize("how", ["absolute", "proc-root", "proc-cwd", "dotdot"])
def test_upload_cannot_name_another_images_pyramid(
    victim: tuple[Api, str, np.ndarray, dict[str, str]], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, image_id, _secret, bob = victim
    target = level0(api, image_id).resolve()
    monkeypatch.chdir(api.home.root)
    path = {
        "absolute": str(target),
        "proc-root": f"/proc/self/root{target}",
        "proc-cwd": f"/proc/self/cwd/{target.relative_to(api.home.root.resolve())}",
        "dotdot": "0/../../../../" + str(target.relative_to(api.home.root.resolve().parent)),
    }[how]
    status, message = attempt(api, bob, zarr_zip(path))
    assert status == 400
    assert "leaves the image folder" in message
    # SECURITY: the answer reveals neither the instance home nor a tensorstore spec.
    assert str(api.home.root.resolve()) not in message
    assert str(api.home.root) not in message
    assert "kvstore" not in message and "driver" not in message
    # Bob owns no copy of alice's pixels.
    images = api.request("GET", "/images", headers=bob).json["images"]
    assert all(image["status"] != "active" for image in images)


def test_symlink_in_zip_is_not_followed(
    victim: tuple[Api, str, np.ndarray, dict[str, str]],
) -> None:
    api, image_id, _secret, bob = victim
    target = str(level0(api, image_id).resolve())
    # A zip entry that is a symlink (Unix mode bits) to alice's level 0.
    link = zipfile.ZipInfo("attack.ome.zarr/0")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = io.BytesIO(zarr_zip("0"))
    with zipfile.ZipFile(data, "a") as bundle:
        bundle.writestr(link, target)
    status, message = attempt(api, bob, data.getvalue())
    assert status == 400, message
    assert target not in message
    images = api.request("GET", "/images", headers=bob).json["images"]
    assert all(image["status"] != "active" for image in images)


def test_registered_folder_never_follows_links_out(
    victim: tuple[Api, str, np.ndarray, dict[str, str]], tmp_path: Path
) -> None:
    api, image_id, secret, _bob = victim
    folder = tmp_path / "registered.ome.zarr"
    folder.mkdir()
    archive = zipfile.ZipFile(io.BytesIO(zarr_zip("0")))
    (folder / "zarr.json").write_bytes(archive.read("attack.ome.zarr/zarr.json"))
    (folder / "0").symlink_to(level0(api, image_id).resolve())
    importer = api.services.importer()
    with pytest.raises(ImportFailed, match="links outside its folder") as caught:
        importer.import_path(folder, ImportOptions(in_place=True))
    assert str(api.home.root) not in str(caught.value)
    # A path in the metadata is confined the same way when registering in place.
    (folder / "0").unlink()
    absolute = zipfile.ZipFile(io.BytesIO(zarr_zip(str(level0(api, image_id).resolve()))))
    (folder / "zarr.json").write_bytes(absolute.read("attack.ome.zarr/zarr.json"))
    with pytest.raises(ImportFailed, match="leaves the image folder"):
        importer.import_path(folder, ImportOptions(in_place=True))
    assert len(secret)  # alice's image is untouched
    assert [image.id for image in api.services.catalog.list_images()] == [int(image_id)]
