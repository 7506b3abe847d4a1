"""The demo set: deterministic per seed, readable, with the metadata the importer needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from coverslip import demo

OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def read_tiff(path: Path) -> tuple[np.ndarray, str, ET.Element]:
    """Return the pixels, axes and OME <Pixels> element of a single-image OME-TIFF."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        assert tif.ome_metadata is not None
        pixels = ET.fromstring(tif.ome_metadata).find(f"{OME}Image/{OME}Pixels")
        assert pixels is not None
        return series.asarray(), series.axes, pixels


def channels(pixels: ET.Element) -> list[tuple[str | None, int]]:
    """Return (name, colour as RRGGBB int) for each channel of an OME <Pixels> element."""
    out = []
    for channel in pixels.findall(f"{OME}Channel"):
        rgba = int(channel.get("Color", "-1")) & 0xFFFFFFFF
        out.append((channel.get("Name"), rgba >> 8))
    return out


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> list[demo.DemoFile]:
    return demo.write_demo_files(tmp_path_factory.mktemp("demo"), seed=0)


def test_ome_color_is_signed_rgba() -> None:
    assert demo.ome_color("0000FF") == 0x0000FFFF
    assert demo.ome_color("00FF00") == 0x00FF00FF
    assert demo.ome_color("FF0000") == 0xFF0000FF - (1 << 32)
    assert demo.ome_color("FFFFFF") == -1


def test_demo_set_lists_every_file_in_order(demo_set: list[demo.DemoFile]) -> None:
    assert [f.name for f in demo_set] == [
        "Cells z-stack",
        "Time series",
        "Photo",
        "Mosaic",
        "Gradient 16-bit",
    ]
    assert [f.axes for f in demo_set] == [None, None, None, None, "YX"]
    assert all(f.path.is_file() for f in demo_set)


def test_cells_stack(demo_set: list[demo.DemoFile]) -> None:
    data, axes, pixels = read_tiff(demo_set[0].path)
    assert (axes, data.shape, data.dtype) == ("ZCYX", (20, 3, 1024, 1024), np.uint16)
    assert data.max() <= 4095 and data.min() > 0  # 12-bit camera with a dark offset
    assert channels(pixels) == [("DAPI", 0x0000FF), ("GFP", 0x00FF00), ("mCherry", 0xFF0000)]
    assert float(pixels.get("PhysicalSizeX", 0)) == pytest.approx(0.1625)
    assert float(pixels.get("PhysicalSizeY", 0)) == pytest.approx(0.1625)
    assert float(pixels.get("PhysicalSizeZ", 0)) == pytest.approx(0.5)
    with tifffile.TiffFile(demo_set[0].path) as tif:
        page = tif.pages.first
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression != tifffile.COMPRESSION.NONE
    # Nuclei are in focus inside the stack: the DAPI plane with the most contrast is
    # neither the top nor the bottom one, and defocus blurs the ends.
    contrast = data[:, 0, ::8, ::8].astype(np.float64).std(axis=(1, 2))
    best = int(np.argmax(contrast))
    assert 0 < best < 19
    assert contrast[best] > 1.5 * max(contrast[0], contrast[-1])


def test_cells_deterministic_per_seed(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> np.ndarray:
        demo.write_cells(tmp_path / name, seed=seed, size=256, planes=4)
        return read_tiff(tmp_path / name)[0]

    first, again, other = write("a.ome.tif", 3), write("b.ome.tif", 3), write("c.ome.tif", 4)
    assert first.shape == (4, 3, 256, 256)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_time_series(demo_set: list[demo.DemoFile], tmp_path: Path) -> None:
    data, axes, pixels = read_tiff(demo_set[1].path)
    assert (axes, data.shape, data.dtype) == ("TCZYX", (8, 2, 3, 256, 256), np.uint16)
    assert [name for name, _ in channels(pixels)] == ["H2B-GFP", "LAMP1-mCherry"]
    assert float(pixels.get("PhysicalSizeX", 0)) == pytest.approx(0.325)
    assert float(pixels.get("PhysicalSizeZ", 0)) == pytest.approx(1.0)
    assert not np.array_equal(data[0], data[-1])  # things move
    np.testing.assert_array_equal(data, demo.time_series(seed=0))
    assert not np.array_equal(data, demo.time_series(seed=1))


def test_photo(demo_set: list[demo.DemoFile], tmp_path: Path) -> None:
    with Image.open(demo_set[2].path) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (800, 600))
        pixels = np.asarray(image)
    demo.write_photo(tmp_path / "again.jpg", seed=0)
    demo.write_photo(tmp_path / "other.jpg", seed=1)
    with Image.open(tmp_path / "again.jpg") as again, Image.open(tmp_path / "other.jpg") as other:
        np.testing.assert_array_equal(pixels, np.asarray(again))
        assert np.abs(pixels.astype(int) - np.asarray(other)).mean() > 2
    assert pixels[:50].mean(axis=(0, 1))[2] > pixels[:50].mean(axis=(0, 1))[0]  # blue sky


def test_mosaic(demo_set: list[demo.DemoFile]) -> None:
    with tifffile.TiffFile(demo_set[3].path) as tif:
        page = tif.pages.first
        assert (page.shape, page.dtype) == ((8192, 8192), np.uint16)
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression != tifffile.COMPRESSION.NONE
        assert tif.series[0].axes == "YX"
    assert demo_set[3].path.stat().st_size < 8192 * 8192 * 2


def test_mosaic_small_deterministic_and_seamless(tmp_path: Path) -> None:
    demo.write_mosaic(tmp_path / "a.ome.tif", size=1024, seed=5)
    demo.write_mosaic(tmp_path / "b.ome.tif", size=1024, seed=5)
    demo.write_mosaic(tmp_path / "c.ome.tif", size=1024, seed=6)
    first, axes, pixels = read_tiff(tmp_path / "a.ome.tif")
    assert (axes, first.shape, first.dtype) == ("YX", (1024, 1024), np.uint16)
    assert channels(pixels) == [("DAPI", 0x0000FF)]
    np.testing.assert_array_equal(first, read_tiff(tmp_path / "b.ome.tif")[0])
    assert not np.array_equal(first, read_tiff(tmp_path / "c.ome.tif")[0])
    # Glass at the corner, tissue with bright nuclei in the middle.
    assert first[:64, :64].mean() < 140
    assert np.percentile(first[384:640, 384:640], 99) > 600
    # A tile drawn on its own equals the same pixels inside the file (no seams by design).
    tissue = demo._Tissue.random(5, 1024)
    np.testing.assert_array_equal(tissue.tile(512, 256), first[512:768, 256:512])


def test_gradient(demo_set: list[demo.DemoFile]) -> None:
    ramp = np.load(demo_set[4].path)
    assert (ramp.shape, ramp.dtype) == ((512, 512), np.uint16)
    assert ramp[:, 0].max() == 0 and ramp[:, -1].min() == 65535
    assert np.all(np.diff(ramp.astype(int), axis=1) > 0)
