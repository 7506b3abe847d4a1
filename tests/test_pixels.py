"""The pyramid store: exact level 0, every level the 2×2 mean of the one above, OME-Zarr 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coverslip.pixels import Pyramid, PyramidWriter, level_shapes
from tests.helpers import mean2x2


def write(path: Path, data: np.ndarray, tile: int, band: int) -> Pyramid:
    writer = PyramidWriter(path, data.shape, data.dtype.name, tile=tile, name="t")
    for t in range(data.shape[0]):
        for c in range(data.shape[1]):
            for z in range(data.shape[2]):
                for y0 in range(0, data.shape[3], band):
                    writer.write_band(
                        t, c, z, data[t, c, z, y0 : y0 + band], y0 + band >= data.shape[3]
                    )
    writer.finish()
    return Pyramid(path)


def test_level_shapes() -> None:
    assert level_shapes(8192, 8192, 256) == [(8192 >> i, 8192 >> i) for i in range(6)]
    assert level_shapes(100, 50, 256) == [(100, 50)]
    assert level_shapes(1001, 257, 256) == [(1001, 257), (501, 129), (251, 65)]


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
)
def test_levels_are_exact_means(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind != "f" else None
    shape = (1, 2, 2, 75, 53)
    if info is not None:
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    else:
        data = rng.normal(0, 1000, shape).astype(dtype)
    pyramid = write(tmp_path / "p.ome.zarr", data, tile=16, band=7)
    assert pyramid.shape == shape
    assert len(pyramid.levels) == len(level_shapes(75, 53, 16))
    for c in range(2):
        for z in range(2):
            expected = data[0, c, z]
            for level in range(len(pyramid.levels)):
                got = pyramid.read(level, 0, c, z, slice(None), slice(None))
                assert got.dtype == np.dtype(dtype)
                if level == 0:
                    np.testing.assert_array_equal(got, expected)
                else:
                    expected = mean2x2(expected)
                    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_region_and_many_planes(tmp_path: Path) -> None:
    data = np.arange(3 * 300 * 200, dtype=np.uint16).reshape(1, 3, 1, 300, 200)
    pyramid = write(tmp_path / "p.ome.zarr", data, tile=64, band=64)
    got = pyramid.read_planes(0, [(0, 2, 0), (0, 0, 0)], slice(10, 90), slice(150, 200))
    np.testing.assert_array_equal(got, data[0, [2, 0], 0, 10:90, 150:200])
    assert pyramid.level_for(1.0) == 0
    assert pyramid.level_for(0.5) == 1
    assert pyramid.level_for(0.3) == 1
    assert pyramid.level_for(0.01) == len(pyramid.levels) - 1


def test_ome_zarr_05_metadata_validates(tmp_path: Path) -> None:
    from ome_zarr_models.v05.image import Image as OmeImage

    data = np.zeros((1, 1, 1, 600, 300), dtype=np.uint8)
    write(tmp_path / "p.ome.zarr", data, tile=256, band=256)
    document = json.loads((tmp_path / "p.ome.zarr" / "zarr.json").read_text())
    assert document["attributes"]["ome"]["version"] == "0.5"
    import zarr

    group = zarr.open_group(tmp_path / "p.ome.zarr", mode="r")
    OmeImage.from_zarr(group)


def test_opens_with_ome_zarr_py(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = np.random.default_rng(0).integers(0, 255, (1, 2, 1, 600, 300), dtype=np.uint8)
    write(tmp_path / "p.ome.zarr", data, tile=256, band=256)
    nodes = list(Reader(parse_url(str(tmp_path / "p.ome.zarr")))())
    image = nodes[0]
    assert len(image.data) == 3
    np.testing.assert_array_equal(np.asarray(image.data[0]), data)


def test_planes_written_band_by_band_in_turn(tmp_path: Path) -> None:
    """Bands of the channels of a photo arrive in turn (red, green, blue, red…): each plane's
    levels are still its own exact means."""
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (1, 3, 1, 70, 45), dtype=np.uint8)
    writer = PyramidWriter(tmp_path / "p.ome.zarr", data.shape, "uint8", tile=16, name="t")
    for y0 in range(0, 70, 16):
        for c in range(3):
            writer.write_band(0, c, 0, data[0, c, 0, y0 : y0 + 16], y0 + 16 >= 70)
    writer.finish()
    pyramid = Pyramid(tmp_path / "p.ome.zarr")
    for c in range(3):
        expected = data[0, c, 0]
        for level in range(len(pyramid.levels)):
            if level:
                expected = mean2x2(expected)
            got = pyramid.read(level, 0, c, 0, slice(None), slice(None))
            np.testing.assert_array_equal(got, expected)
