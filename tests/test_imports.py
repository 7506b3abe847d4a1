"""The import pipeline, format by format: pixels back out exactly, levels are 2×2 means,
failures leave nothing behind, duplicates are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from coverslip.errors import Duplicate, ImportFailed, UnsupportedFormat
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.services import Services
from tests.helpers import pyramid_levels


@pytest.fixture
def services(tmp_path: Path) -> Services:
    home = Home(tmp_path / "home")
    return Services.build(home.settings({}, {"pixels.tile_size": "256"}), home)


def run_import(services: Services, path: Path, **kwargs: object) -> int:
    return services.importer().import_path(path, ImportOptions(**kwargs))  # type: ignore[arg-type]


def assert_pyramid(services: Services, image_id: int, source: np.ndarray) -> None:
    """Every plane of every level equals the independently computed pyramid of ``source`` (TCZYX)."""
    image = services.catalog.get_image(image_id)
    assert image.status == "active"
    assert (image.size_t, image.size_c, image.size_z, image.size_y, image.size_x) == source.shape
    assert image.pixel_type == source.dtype.name
    pyramid = services.pixels.open(image)
    assert image.levels == len(pyramid.levels)
    for t in range(source.shape[0]):
        for c in range(source.shape[1]):
            for z in range(source.shape[2]):
                expected = (
                    pyramid_levels(source[t, c, z], image.levels) if image.levels <= 3 else None
                )
                for level in range(image.levels):
                    got = pyramid.read(level, t, c, z, slice(None), slice(None))
                    if expected is not None:
                        np.testing.assert_allclose(got, expected[level], rtol=1e-6)
    for c, channel in enumerate(image.channels):
        assert channel.min == pytest.approx(float(source[:, c].min()))
        assert channel.max == pytest.approx(float(source[:, c].max()))


def test_tiff_stack(services: Services, tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (5, 300, 270), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    image_id = run_import(services, tmp_path / "stack.tif")
    assert_pyramid(services, image_id, data[None, None])
    image = services.catalog.get_image(image_id)
    assert image.name == "stack"
    assert image.original_size == (tmp_path / "stack.tif").stat().st_size


def test_ome_tiff_5d_metadata(services: Services, tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 255, (2, 3, 2, 64, 80), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "cells.ome.tif",
        data,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.25,
            "PhysicalSizeZ": 1.5,
            "Channel": {"Name": ["DAPI", "GFP", "Cy5"]},
        },
    )
    image_id = run_import(services, tmp_path / "cells.ome.tif")
    assert_pyramid(services, image_id, data)
    image = services.catalog.get_image(image_id)
    assert image.format == "ome-tiff"
    assert [ch.name for ch in image.channels] == ["DAPI", "GFP", "Cy5"]
    assert (image.physical_size_x, image.physical_size_z) == (0.25, 1.5)


def test_png_rgb_and_grey(services: Services, tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png")
    image_id = run_import(services, tmp_path / "rgb.png")
    assert_pyramid(services, image_id, np.moveaxis(rgb, 2, 0)[None, :, None])
    image = services.catalog.get_image(image_id)
    assert [(ch.name, ch.color) for ch in image.channels] == [
        ("Red", "FF0000"),
        ("Green", "00FF00"),
        ("Blue", "0000FF"),
    ]
    grey = np.random.default_rng(3).integers(0, 65535, (40, 30), dtype=np.uint16)
    PILImage.fromarray(grey).save(tmp_path / "grey.png")
    grey_id = run_import(services, tmp_path / "grey.png")
    assert_pyramid(services, grey_id, grey[None, None, None])


def test_npy_with_axes_and_levels(services: Services, tmp_path: Path) -> None:
    data = np.random.default_rng(4).normal(0, 50, (3, 600, 520)).astype(np.float32)
    np.save(tmp_path / "zyx.npy", data)
    image_id = run_import(services, tmp_path / "zyx.npy", axes="ZYX")
    assert services.catalog.get_image(image_id).levels == 3
    assert_pyramid(services, image_id, data[None, None])


def test_ome_zarr_copy_and_in_place(services: Services, tmp_path: Path) -> None:
    data = np.random.default_rng(5).integers(0, 1000, (1, 2, 1, 300, 200), dtype=np.uint16)
    np.save(tmp_path / "src.npy", data)
    first = run_import(services, tmp_path / "src.npy", axes="TCZYX")
    zarr_path = services.home.pyramid(first)
    copied = run_import(services, zarr_path, allow_duplicate=True)
    assert_pyramid(services, copied, data)
    registered = run_import(services, zarr_path, in_place=True, allow_duplicate=True)
    image = services.catalog.get_image(registered)
    assert image.pyramid_path == str(zarr_path.resolve())
    assert not services.home.pyramid(registered).exists()
    np.testing.assert_array_equal(
        services.pixels.open(image).read(0, 0, 1, 0, slice(None), slice(None)), data[0, 1, 0]
    )


def test_original_is_kept_byte_for_byte_with_checksums(services: Services, tmp_path: Path) -> None:
    import hashlib

    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    tifffile.imwrite(tmp_path / "a.tif", data)
    raw = (tmp_path / "a.tif").read_bytes()
    image_id = run_import(services, tmp_path / "a.tif")
    image = services.catalog.get_image(image_id)
    assert (services.home.original_dir(image_id) / "a.tif").read_bytes() == raw
    assert image.sha512 == hashlib.sha512(raw).hexdigest()
    assert image.md5 == hashlib.md5(raw).hexdigest()


def test_duplicate_is_refused_with_the_existing_id(services: Services, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8), np.uint8))
    first = run_import(services, tmp_path / "a.tif")
    with pytest.raises(Duplicate) as caught:
        run_import(services, tmp_path / "a.tif")
    assert caught.value.existing_id == first
    assert str(first) in str(caught.value)
    assert len(services.catalog.list_images()) == 1
    assert run_import(services, tmp_path / "a.tif", allow_duplicate=True) != first


def _nothing_left(services: Services) -> None:
    assert services.catalog.list_images() == []
    assert list(services.home.pixels.iterdir()) == []
    assert list(services.home.originals.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "make", "error"),
    [
        ("garbage.tif", lambda p: p.write_bytes(b"II*\x00" + b"\xff" * 100), ImportFailed),
        ("notes.txt", lambda p: p.write_text("hello"), UnsupportedFormat),
        ("empty.png", lambda p: p.write_bytes(b""), UnsupportedFormat),
        ("bad.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage"), ImportFailed),
    ],
)
def test_bad_files_leave_nothing_behind(
    services: Services, tmp_path: Path, name: str, make: object, error: type
) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    with pytest.raises(error) as caught:
        run_import(services, path)
    assert str(caught.value)
    _nothing_left(services)


@pytest.mark.parametrize("suffix", ["tif", "png", "npy"])
def test_truncated_files_leave_nothing_behind(
    services: Services, tmp_path: Path, suffix: str
) -> None:
    data = np.random.default_rng(6).integers(0, 255, (400, 300), dtype=np.uint8)
    path = tmp_path / f"whole.{suffix}"
    if suffix == "tif":
        tifffile.imwrite(path, data, compression="zlib", rowsperstrip=16)
    elif suffix == "png":
        PILImage.fromarray(data).save(path)
    else:
        np.save(path, data)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImportFailed):
        run_import(services, path)
    _nothing_left(services)


def test_missing_file(services: Services, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="no such file"):
        run_import(services, tmp_path / "nope.tif")


def test_placeholder_ome_names_give_way_to_the_file_name(
    services: Services, tmp_path: Path
) -> None:
    tifffile.imwrite(
        tmp_path / "mitosis.ome.tif",
        np.zeros((2, 16, 16), np.uint8),
        ome=True,
        metadata={"axes": "ZYX"},
    )
    image = services.catalog.get_image(run_import(services, tmp_path / "mitosis.ome.tif"))
    assert image.name == "mitosis"


def test_rgb_photos_keep_their_colours(services: Services, tmp_path: Path) -> None:
    rgb = np.random.default_rng(8).integers(20, 240, (30, 40, 3), dtype=np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "photo.png")
    image = services.catalog.get_image(run_import(services, tmp_path / "photo.png"))
    assert [(ch.window_start, ch.window_end) for ch in image.channels] == [(0.0, 255.0)] * 3
    assert image.channels[0].min >= 20 and image.channels[0].max < 240


def test_jpeg_tiff_keeps_red_green_blue(services: Services, tmp_path: Path) -> None:
    # A JPEG-compressed RGB TIFF says YCbCr; its pixels decode to red, green and blue.
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30
    tifffile.imwrite(
        tmp_path / "slide.tif", rgb, photometric="rgb", compression="jpeg", tile=(32, 32)
    )
    assert tifffile.TiffFile(tmp_path / "slide.tif").pages[0].photometric == 6  # YCbCr
    image = services.catalog.get_image(run_import(services, tmp_path / "slide.tif"))
    assert [ch.color for ch in image.channels] == ["FF0000", "00FF00", "0000FF"]
    assert [(ch.window_start, ch.window_end) for ch in image.channels] == [(0.0, 255.0)] * 3
    maxima = [ch.max for ch in image.channels]
    assert abs(maxima[0] - 200) <= 3 and abs(maxima[1] - 100) <= 3 and abs(maxima[2] - 30) <= 3
