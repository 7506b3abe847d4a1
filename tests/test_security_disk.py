"""A full disk: the import command and the images API fail one file cleanly and go on.

The instance home is a small tmpfs, so the disk really fills up (the tests run as root; they
skip where mounting is not permitted).
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from coverslip.cli import main
from coverslip.errors import is_no_space
from coverslip.pixels import Pyramid, PyramidWriter
from tests.test_images_api import Api, npy_bytes

DISK_BYTES = 8 * 1024 * 1024
MESSAGE = "no space left on the instance's disk"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """Mount an 8 MiB tmpfs as the instance home; unmount it afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the full-disk tests mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs as the home (needs root): {done.stderr.strip()}")
    try:
        yield home
    finally:
        # NOTE: lazy, since a catalog connection of the app may still hold its file open.
        subprocess.run(["umount", "-l", str(home)], check=False)


def noisy(shape: tuple[int, int], seed: int, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape, dtype=np.uint8)


def catalog_rows(home: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "catalog.sqlite") as conn:
        return list(conn.execute(query))


def test_import_command_names_the_file_the_disk_cannot_hold_and_goes_on(
    small_disk: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small.tif"
    big = tmp_path / "big.tif"
    last = tmp_path / "last.tif"
    first_pixels, last_pixels = noisy((64, 64), 1), noisy((48, 80), 2)
    tifffile.imwrite(small, first_pixels)
    # Four bits of noise a pixel: zlib keeps the file small enough to be kept as the original,
    # but its 9 MB of pixels, which lz4 cannot shrink, do not fit beside it on the disk.
    tifffile.imwrite(big, noisy((3000, 3000), 3, high=16), compression="zlib")
    tifffile.imwrite(last, last_pixels)
    assert big.stat().st_size < DISK_BYTES < 3000 * 3000

    result = CliRunner().invoke(
        main, ["--home", str(small_disk), "import", str(small), str(big), str(last)]
    )

    output = result.output
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    failures = [line for line in output.splitlines() if line.startswith("failed:")]
    assert failures == [f"failed: {big}: {MESSAGE}"]
    assert "imported 2 image(s)" in output
    images = catalog_rows(small_disk, "select id, name, status from images order by id")
    assert [(name, status) for _id, name, status in images] == [
        ("small", "active"),
        ("last", "active"),
    ]
    assert len(catalog_rows(small_disk, "select id from filesets")) == 2
    kept = {int(row[0]) for row in images}
    pyramids = {int(p.name.split(".")[0]) for p in (small_disk / "pixels").iterdir()}
    assert pyramids == kept
    originals = sorted(p.name for p in (small_disk / "originals").iterdir())
    filesets = catalog_rows(small_disk, "select id from filesets order by id")
    assert originals == sorted([*map(str, kept), *(f"fileset-{row[0]}" for row in filesets)])
    assert not list((small_disk / "staging").iterdir())
    for (image_id, _name, _status), expected in zip(
        images, (first_pixels, last_pixels), strict=True
    ):
        pyramid = Pyramid(small_disk / "pixels" / f"{image_id}.ome.zarr")
        plane = pyramid.read(0, 0, 0, 0, slice(None), slice(None))
        np.testing.assert_array_equal(plane, expected)


@pytest.fixture
def api(small_disk: Path) -> Iterator[Api]:
    client = Api(small_disk, **{"imports.thumbnail": False})
    yield client
    client.services.catalog.engine.dispose()


def assert_retryable(api: Api, image_id: str) -> None:
    """The image is queued again with nothing of the failed upload left on the disk."""
    image = api.image(image_id)
    assert image["status"] == "queued"
    assert image["message"] == MESSAGE
    assert api.leftovers(image_id) == []
    assert not list(api.home.pixels.iterdir())
    assert not [p for p in api.home.originals.iterdir() if p.name.startswith("fileset-")]


def assert_insufficient_storage(result: object) -> None:
    assert result.status_code == 507, result.text  # type: ignore[attr-defined]
    assert result.json == {  # type: ignore[attr-defined]
        "title": "Insufficient Storage",
        "description": MESSAGE,
    }


def test_upload_larger_than_the_disk_answers_507_and_can_be_retried(api: Api) -> None:
    image_id = api.create(name="huge")
    huge = npy_bytes(noisy((3000, 3000), 4))
    assert len(huge) > DISK_BYTES

    assert_insufficient_storage(api.put(image_id, huge))
    assert_retryable(api, image_id)

    small = noisy((40, 30), 5)
    assert api.put(image_id, npy_bytes(small)).status_code == 204
    assert api.image(image_id)["status"] == "active"
    plane = Pyramid(api.home.pyramid(int(image_id))).read(0, 0, 0, 0, slice(None), slice(None))
    np.testing.assert_array_equal(plane, small)


def test_upload_whose_pixels_do_not_fit_answers_507(api: Api) -> None:
    image_id = api.create(name="wide")
    data = npy_bytes(noisy((2200, 2000), 6))
    # The bytes fit on the disk; the pyramid, as large again, does not fit beside them.
    assert len(data) < DISK_BYTES < 2 * len(data)

    assert_insufficient_storage(api.put(image_id, data, chunked=True))
    # The bytes were stored; their import failed for good: the image is killed, nothing left.
    image = api.image(image_id)
    assert (image["status"], image["message"]) == ("killed", MESSAGE)
    assert api.leftovers(image_id) == []
    assert not list(api.home.pixels.iterdir())
    assert not list(api.home.staging.iterdir())


def test_stage_larger_than_the_disk_answers_507(api: Api) -> None:
    image_id = api.create(name="staged")
    result = api.put_stream(
        image_id,
        io.BytesIO(npy_bytes(noisy((3000, 3000), 7))),
        None,
        where="stage",
    )
    assert_insufficient_storage(result)
    image = api.image(image_id)
    assert image["status"] == "queued"
    assert api.leftovers(image_id) == []


def test_a_pyramid_that_fills_the_disk_is_gone_once_aborted(small_disk: Path) -> None:
    # A failed write of many chunks must not leave writes running that recreate its files.
    target = small_disk / "pixels" / "1.ome.zarr"
    writer = PyramidWriter(target, (1, 1, 1, 4096, 4096), "uint8", tile=32, codec="none")
    band = noisy((32, 4096), 4)
    with pytest.raises(ValueError, match="No space left") as failure:  # tensorstore's error
        for y0 in range(0, 4096, 32):
            writer.write_band(0, 0, 0, band, final=y0 + 32 == 4096)
        writer.finish()
    writer.abort()
    assert is_no_space(failure.value)
    time.sleep(0.3)
    assert not target.exists()
