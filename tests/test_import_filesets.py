"""Filesets: several images from one file, originals kept once, the file's own levels copied."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coverslip import formats
from coverslip.cli import main
from coverslip.errors import Duplicate, ImportFailed
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.pixels import Pyramid
from coverslip.services import Services
from tests.helpers import ArrayReader, mean2x2


@pytest.fixture
def services(tmp_path: Path) -> Services:
    home = Home(tmp_path / "home")
    return Services.build(home.settings({}, {"imports.thumbnail": False}), home)


def scenes_czi(path: Path, scenes: list[np.ndarray]) -> Path:
    """Write a CZI with one uint16 scene per array, side by side, with pylibCZIrw."""
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        left = 0
        for index, data in enumerate(scenes):
            writer.write(data[..., np.newaxis], location=(left, 0), scene=index)
            left += data.shape[1] + 50
    return path


def test_scenes_are_images_of_one_fileset(services: Services, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = [
        rng.integers(0, 60000, size=(40 + 10 * i, 30 + 5 * i), dtype=np.uint16) for i in range(3)
    ]
    path = scenes_czi(tmp_path / "plate-scan.czi", data)
    importer = services.importer()
    ids = importer.import_fileset(path, ImportOptions())
    assert len(ids) == 3
    catalog = services.catalog
    for image_id, expected in zip(ids, data, strict=True):
        image = catalog.get_image(image_id)
        assert image.status == "active"
        assert image.name.startswith("plate-scan")
        assert (image.size_y, image.size_x, image.pixel_type) == (*expected.shape, "uint16")
        plane = Pyramid(services.home.pyramid(image_id)).read(0, 0, 0, 0, slice(None), slice(None))
        np.testing.assert_array_equal(plane, expected)
    assert len({catalog.get_image(i).name for i in ids}) == 3
    # The original is kept once; every image finds it where downloads look.
    fileset_id = catalog.fileset_of(ids[0])
    assert fileset_id is not None and all(catalog.fileset_of(i) == fileset_id for i in ids)
    kept = services.home.fileset_dir(fileset_id)
    assert sorted(os.listdir(kept)) == ["plate-scan.czi"]
    recorded = catalog.get_fileset(fileset_id)
    assert (recorded.files, recorded.size) == (["plate-scan.czi"], path.stat().st_size)
    for image_id in ids:
        image = catalog.get_image(image_id)
        original = services.home.original_dir(image_id) / image.original_name
        assert original.read_bytes() == path.read_bytes()
    # The same file again is a duplicate; deleting all but the last image keeps the original.
    with pytest.raises(Duplicate):
        importer.import_fileset(path, ImportOptions())
    for image_id in ids[:-1]:
        services.delete_image(image_id)
        assert kept.is_dir()
    services.delete_image(ids[-1])
    assert not kept.exists()
    assert not any(services.home.originals.iterdir())


def test_a_failing_image_leaves_nothing_of_the_fileset(services: Services, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = [rng.integers(0, 4000, size=(300, 300), dtype=np.uint16) for _ in range(2)]
    whole = scenes_czi(tmp_path / "whole.czi", data).read_bytes()
    cut = tmp_path / "cut.czi"
    cut.write_bytes(whole[: len(whole) * 3 // 4])
    with pytest.raises(ImportFailed):
        services.importer().import_fileset(cut, ImportOptions())
    assert services.catalog.list_images() == []
    assert not any(services.home.pixels.iterdir())
    assert not any(services.home.originals.iterdir())


class LevelsReader(ArrayReader):
    """An array reader that also stores resolution levels of its own, unlike 2×2 means."""

    def __init__(self, data: np.ndarray, levels: list[np.ndarray]) -> None:
        super().__init__(data, name="levels")
        self.stored = levels
        self.meta.levels = [(lv.shape[-2], lv.shape[-1]) for lv in levels]

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.stored[level - 1][t, c, z, y0:y1]


def test_the_files_own_levels_are_copied_as_they_are(services: Services) -> None:
    rng = np.random.default_rng(8)
    full = rng.integers(0, 255, size=(1, 2, 1, 900, 700), dtype=np.uint8)
    # A level that no 2×2 mean would give: different random pixels, a third of the size.
    own = rng.integers(0, 255, size=(1, 2, 1, 300, 234), dtype=np.uint8)
    reader = LevelsReader(full, [own])
    assert isinstance(reader, formats.Pyramidal)
    catalog = services.catalog
    owner, group = catalog.ensure_local_admin()
    image_id = catalog.create_image("levels", owner, group)
    services.importer().build(image_id, reader, ImportOptions())
    pyramid = Pyramid(services.home.pyramid(image_id))
    assert [(lv.height, lv.width) for lv in pyramid.levels] == [(900, 700), (300, 234), (150, 117)]
    for c in range(2):
        np.testing.assert_array_equal(
            pyramid.read(0, 0, c, 0, slice(None), slice(None)), full[0, c, 0]
        )
        np.testing.assert_array_equal(
            pyramid.read(1, 0, c, 0, slice(None), slice(None)), own[0, c, 0]
        )
        np.testing.assert_array_equal(
            pyramid.read(2, 0, c, 0, slice(None), slice(None)), mean2x2(own[0, c, 0])
        )
    assert catalog.get_image(image_id).levels == 3


def test_cli_import_names_every_image_and_formats_lists_readers(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = scenes_czi(tmp_path / "two.czi", [rng.integers(0, 9, (20, 20), dtype=np.uint16)] * 2)
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    result = runner.invoke(main, [*home, "import", "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["imported"]) == 2
    result = runner.invoke(main, [*home, "formats", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["format"]: row for row in json.loads(result.stdout)}
    assert set(listed) == set(formats.FORMATS)
    assert all(row["version"] != "not installed" for row in listed.values())


def test_a_file_nothing_reads_gets_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.xyz"
    path.write_bytes(b"\x00\x01 not an image at all " * 20)
    result = CliRunner().invoke(main, ["--home", str(tmp_path / "home"), "import", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "notes.xyz" in lines[0] and "not a format Coverslip reads" in lines[0]
    assert "CZI" in lines[0] and "ND2" in lines[0]


def test_vendor_file_uploads_through_the_images_api(tmp_path: Path) -> None:
    from tests.test_images_api import Api

    api = Api(tmp_path / "home")
    data = np.random.default_rng(9).integers(0, 60000, size=(50, 70), dtype=np.uint16)
    path = scenes_czi(tmp_path / "upload.czi", [data])
    for disk_format in (None, "czi"):
        fields = {"container_format": "bare"} | (
            {"disk_format": disk_format} if disk_format else {}
        )
        result = api.request("POST", "/images", json=fields)
        assert result.status_code == 201, result.text
        image_id = str(result.json["id"])
        assert api.put(image_id, path.read_bytes()).status_code == 204, api.image(image_id)
        image = api.image(image_id)
        assert (image["status"], image["disk_format"]) == ("active", "czi")
        record = api.services.catalog.get_image(int(image_id))
        plane = api.services.pixels.open(record).read(0, 0, 0, 0, slice(None), slice(None))
        np.testing.assert_array_equal(plane, data)
        download = api.request("GET", f"/images/{image_id}/file")
        assert download.status_code == 200 and download.content == path.read_bytes()
