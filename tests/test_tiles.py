"""Rows of tiles decoded two at a time equal what tifffile reads of the whole page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from coverslip.formats.tiles import tile_rows, tiled_page

BANDS = [(0, 1), (0, 256), (100, 300), (250, 700), (699, 700)]


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((700, 1000), {"compression": "zlib"}),
        ((700, 1000, 3), {"compression": "jpeg", "photometric": "rgb"}),
        ((700, 1000, 3), {"compression": "jpeg", "photometric": "ycbcr"}),
        ((700, 1000), {}),
    ],
)
def test_rows_equal_tifffiles_page(
    tmp_path: Path, shape: tuple[int, ...], options: dict[str, str]
) -> None:
    rng = np.random.default_rng(3)
    dtype = np.uint8 if len(shape) == 3 else np.uint16
    data = rng.integers(0, 200, shape).astype(dtype)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, data, tile=(256, 256), **options)  # type: ignore[arg-type]
    with tifffile.TiffFile(path) as tif:
        whole = tif.pages[0].asarray()  # type: ignore[union-attr]
        page = tiled_page(tif.series[0])
        assert page is not None
        for y0, y1 in BANDS:
            rows = tile_rows(page, y0, y1)
            assert rows.shape == whole[y0:y1].shape
            np.testing.assert_array_equal(rows, whole[y0:y1])


def test_strips_and_stacks_are_left_to_zarr(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "strips.tif", np.zeros((300, 300), np.uint8))
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 300, 300), np.uint8), tile=(256, 256))
    for name in ("strips.tif", "stack.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tiled_page(tif.series[0]) is None


def test_packed_bits_are_left_to_zarr(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "bits.tif", np.ones((300, 300), bool), tile=(256, 256))
    with tifffile.TiffFile(tmp_path / "bits.tif") as tif:
        assert tif.pages[0].bitspersample == 1  # type: ignore[union-attr]
        assert tiled_page(tif.series[0]) is None
