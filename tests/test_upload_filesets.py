"""An images-API upload of a file of several images imports them all, as the CLI does."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import liffile
import numpy as np
import pytest
import tifffile

from coverslip.pixels import Pyramid
from tests.helpers import SAMPLES
from tests.test_images_api import Api

LIF = SAMPLES / "lif" / "testdata_2channel_xz.lif"

pytestmark = pytest.mark.skipif(not LIF.exists(), reason="the shared LIF sample is absent")


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path / "home", **{"imports.thumbnail": False})


def liffile_planes(image: liffile.LifImage) -> Iterator[tuple[tuple[int, int, int], np.ndarray]]:
    """Yield ((t, c, z), plane) of a LIF image as liffile reads it, in Coverslip's axes:
    an XZ scan's rows are its Z, and an XZ stack's Z is its Y."""
    data = image.asarray()
    if image.dims == ("T", "C", "Z", "X"):
        for t in range(data.shape[0]):
            for c in range(data.shape[1]):
                yield (t, c, 0), data[t, c]
    elif image.dims == ("Y", "C", "Z", "X"):
        for z in range(data.shape[0]):
            for c in range(data.shape[1]):
                yield (0, c, z), data[z, c]
    else:
        assert image.dims == ("C", "Z", "X")
        for c in range(data.shape[0]):
            yield (0, c, 0), data[c]


def upload_lif(api: Api, **fields: object) -> tuple[str, Mapping[str, str]]:
    image_id = api.create(disk_format="lif", **fields)
    result = api.put(image_id, LIF.read_bytes())
    assert result.status_code == 204, result.text
    return image_id, result.headers


def test_every_image_of_an_uploaded_lif_is_imported(api: Api) -> None:
    dataset = api.services.catalog.create_dataset("scans", api.user, api.lab)
    image_id, headers = upload_lif(api, name="xz scans", dataset=dataset, lab="north")

    with liffile.LifFile(LIF) as lif:
        references = list(lif.images)
        ids = headers["Coverslip-Fileset-Images"].split(", ")
        assert len(ids) == len(references) == 3
        assert ids[0] == image_id
        fileset = headers["Coverslip-Fileset"]
        names = []
        for other, reference in zip(ids, references, strict=True):
            doc = api.image(other)
            assert doc["status"] == "active"
            assert doc["owner"] == str(api.user)
            assert doc["dataset"] == dataset
            assert doc["disk_format"] == "lif"
            assert doc["lab"] == "north"
            assert doc["fileset"] == fileset
            assert doc["fileset_images"] == ids
            assert doc["size"] == LIF.stat().st_size
            names.append(doc["name"])
            pyramid = Pyramid(api.home.pyramid(int(other)))
            planes = 0
            for (t, c, z), expected in liffile_planes(reference):
                found = pyramid.read(0, t, c, z, slice(None), slice(None))
                np.testing.assert_array_equal(found, expected)
                planes += 1
            assert planes == doc["shape"][0] * doc["shape"][1] * doc["shape"][2]
    # The uploaded image keeps its name; the others are named after it and their series.
    assert names[0] == "xz scans"
    assert all(name.startswith("xz scans [") for name in names[1:])
    assert len(set(names)) == 3
    listed = api.request("GET", "/images", params={"dataset": str(dataset)}).json["images"]
    assert sorted(doc["id"] for doc in listed) == sorted(ids)


def test_each_image_of_the_fileset_downloads_the_file_and_outlives_the_others(api: Api) -> None:
    image_id, headers = upload_lif(api, name="xz scans")
    ids = headers["Coverslip-Fileset-Images"].split(", ")
    folder = api.home.fileset_dir(int(headers["Coverslip-Fileset"]))
    assert sorted(p.name for p in folder.iterdir()) == ["original.lif"]

    for other in ids:
        download = api.request("GET", f"/images/{other}/file")
        assert download.status_code == 200
        assert download.content == LIF.read_bytes()
    assert api.request("DELETE", f"/images/{image_id}").status_code == 204
    assert api.image(ids[1])["fileset_images"] == ids[1:]
    assert api.request("GET", f"/images/{ids[2]}/file").content == LIF.read_bytes()
    for other in ids[1:]:
        assert api.request("DELETE", f"/images/{other}").status_code == 204
    assert not folder.exists()


def test_a_file_of_one_image_is_a_fileset_of_one(api: Api) -> None:
    buffer = np.zeros((6, 5), np.uint8)
    path = api.home.root / "one.npy"
    np.save(path, buffer)
    image_id = api.create(name="one")
    result = api.put(image_id, path.read_bytes())
    assert result.status_code == 204
    assert result.headers["Coverslip-Fileset-Images"] == image_id
    doc = api.image(image_id)
    assert doc["fileset"] == result.headers["Coverslip-Fileset"]
    assert doc["fileset_images"] == [image_id]
    assert api.image(api.create(name="empty"))["fileset"] is None


def two_series_tiff(path: Path, corrupt_second: bool) -> bytes:
    """Write a TIFF of two series (the second zlib-compressed, its data spoilt if asked)."""
    rng = np.random.default_rng(4)
    with tifffile.TiffWriter(path) as writer:
        writer.write(rng.integers(0, 60000, (64, 64), dtype=np.uint16), photometric="minisblack")
        writer.write(
            rng.integers(0, 60000, (80, 90), dtype=np.uint16),
            photometric="minisblack",
            compression="zlib",
        )
    data = bytearray(path.read_bytes())
    if corrupt_second:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.series[1].pages[0]
            start, count = page.dataoffsets[0], page.databytecounts[0]
        data[start + 10 : start + count] = b"\xff" * (count - 10)
    return bytes(data)


def test_a_file_that_fails_half_way_leaves_only_the_killed_image(api: Api, tmp_path: Path) -> None:
    image_id = api.create(name="two", disk_format="tiff")
    # The first series imports; the second cannot be decoded.
    result = api.put(image_id, two_series_tiff(tmp_path / "bad.tif", corrupt_second=True))

    assert result.status_code == 400, result.text
    doc = api.image(image_id)
    assert doc["status"] == "killed"
    assert doc["fileset"] is None
    assert "cannot be decoded" in doc["message"]
    assert str(api.home.root) not in doc["message"]
    images = api.request("GET", "/images").json["images"]
    assert [doc["id"] for doc in images] == [image_id]
    assert api.leftovers(image_id) == []
    tasks = api.request("GET", "/tasks").json["tasks"]
    assert [(t["status"], t["image_id"]) for t in tasks] == [("failure", image_id)]
    assert "cannot be decoded" in tasks[0]["message"]
    assert not [p for p in api.home.originals.iterdir() if p.name.startswith("fileset-")]
    assert not list(api.home.pixels.iterdir())
    # A killed image takes no more bytes; a new one takes the whole file, and makes its second.
    again = api.put(image_id, two_series_tiff(tmp_path / "good.tif", corrupt_second=False))
    assert again.status_code == 409, again.text
    image_id = api.create(name="two", disk_format="tiff")
    whole = api.put(image_id, two_series_tiff(tmp_path / "good.tif", corrupt_second=False))
    assert whole.status_code == 204, whole.text
    ids = whole.headers["Coverslip-Fileset-Images"].split(", ")
    assert ids[0] == image_id and len(ids) == 2
    assert [api.image(i)["status"] for i in ids] == ["active", "active"]
