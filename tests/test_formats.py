"""Format readers: every file is made here with an independent writer (tifffile, Pillow,
imagecodecs, numpy, zarr-python) and its pixels must come back exactly, band by band."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image as PILImage

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import Reader, detect, open_reader
from coverslip.formats.tiff import ome_color

BAND = 100  # rows per band: small, so that every image here spans several bands
RNG = np.random.default_rng(7)


def random_array(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Return values that use the whole range of ``dtype`` (negative ones too)."""
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return (RNG.standard_normal(shape) * 1e3).astype(dtype)
    info = np.iinfo(kind)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def read_all(reader: Reader, band: int = BAND) -> np.ndarray:
    """Return the whole TCZYX image, assembled from bands the way the importer reads it."""
    meta = reader.meta
    out = np.zeros(meta.shape, dtype=meta.pixel_type)
    for t in range(meta.size_t):
        for c in range(meta.size_c):
            for z in range(meta.size_z):
                for y0 in range(0, meta.size_y, band):
                    y1 = min(meta.size_y, y0 + band)
                    rows = reader.read_band(t, c, z, y0, y1)
                    assert rows.shape == (y1 - y0, meta.size_x)
                    assert rows.dtype == np.dtype(meta.pixel_type)
                    out[t, c, z, y0:y1] = rows
    return out


def load(path: Path, axes: str | None = None) -> tuple[Any, np.ndarray]:
    """Return (meta, TCZYX pixels) of ``path`` read through open_reader."""
    reader = open_reader(path, axes)
    try:
        return reader.meta, read_all(reader)
    finally:
        reader.close()


def assert_fails_cleanly(path: Path, axes: str | None = None) -> str:
    """Opening and reading ``path`` raises ImportFailed (or UnsupportedFormat), nothing else."""
    with pytest.raises(ImportFailed) as info:
        load(path, axes)
    assert "\n" not in str(info.value)
    return str(info.value)


def write_tiff(path: Path, data: np.ndarray, **options: Any) -> None:
    """Write ``data`` with tifffile, as greyscale planes unless told otherwise."""
    options.setdefault("photometric", "minisblack")
    tifffile.imwrite(path, data, **options)


def assert_truncations_fail(path: Path, source: np.ndarray, axes: str | None = None) -> None:
    """Copies of ``path`` cut short fail cleanly; one missing only its last byte either fails
    cleanly or, when every pixel is still there (a trailing IFD or PNG checksum), reads exactly."""
    data = path.read_bytes()
    for fraction in (0.1, 0.5, 0.9):
        cut = path.with_name(f"cut{int(fraction * 100)}_{path.name}")
        cut.write_bytes(data[: int(len(data) * fraction)])
        assert_fails_cleanly(cut, axes)
    last = path.with_name(f"cutlast_{path.name}")
    last.write_bytes(data[:-1])
    try:
        _meta, got = load(last, axes)
    except ImportFailed:
        return
    np.testing.assert_array_equal(got, source)


# TIFF ---------------------------------------------------------------------------------------

TIFF_TYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


@pytest.mark.parametrize("dtype", TIFF_TYPES)
@pytest.mark.parametrize(
    "layout",
    [
        {},
        {"compression": "zlib", "rowsperstrip": 64},
        {"compression": "zlib", "tile": (64, 128)},
    ],
    ids=["plain", "strips-zlib", "tiles-zlib"],
)
def test_tiff_pixel_types(tmp_path: Path, dtype: str, layout: dict[str, Any]) -> None:
    data = random_array((3, 250, 190), dtype)
    write_tiff(tmp_path / "stack.tif", data, **layout)
    meta, got = load(tmp_path / "stack.tif")
    assert (meta.format, meta.name, meta.pixel_type) == ("tiff", "stack", dtype)
    assert meta.shape == (1, 1, 3, 250, 190)
    np.testing.assert_array_equal(got[0, 0], data)


@pytest.mark.parametrize(
    "options",
    [
        {"compression": "zlib", "predictor": True},
        {"compression": "lzw", "rowsperstrip": 50},
        {"compression": "lzw", "tile": (128, 128), "predictor": True},
        {"compression": "zstd", "tile": (64, 64)},
        {"compression": "packbits"},
        {"compression": "zstd", "bigtiff": True, "tile": (64, 64)},
    ],
    ids=["deflate-predictor", "lzw-strips", "lzw-tiles", "zstd-tiles", "packbits", "bigtiff-zstd"],
)
def test_tiff_compressions(tmp_path: Path, options: dict[str, Any]) -> None:
    if options.get("compression") == "zstd" and not imagecodecs.ZSTD.available:
        pytest.skip("imagecodecs lacks zstd")
    data = random_array((2, 301, 257), "uint16")
    write_tiff(tmp_path / "c.tif", data, **options)
    _meta, got = load(tmp_path / "c.tif")
    np.testing.assert_array_equal(got[0, 0], data)


def test_bigtiff_uncompressed(tmp_path: Path) -> None:
    data = random_array((4, 200, 150), "float32")
    write_tiff(tmp_path / "big.tif", data, bigtiff=True)
    assert (tmp_path / "big.tif").read_bytes()[:4] == b"II+\x00"
    meta, got = load(tmp_path / "big.tif")
    assert meta.shape == (1, 1, 4, 200, 150)
    np.testing.assert_array_equal(got[0, 0], data)


def test_big_endian_tiff(tmp_path: Path) -> None:
    data = random_array((230, 120), "int16")
    write_tiff(tmp_path / "be.tif", data, byteorder=">")
    write_tiff(tmp_path / "be_zlib.tif", data, byteorder=">", compression="zlib")
    for name in ("be.tif", "be_zlib.tif"):
        meta, got = load(tmp_path / name)
        assert meta.pixel_type == "int16"
        np.testing.assert_array_equal(got[0, 0, 0], data)


@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_rgb_tiff_samples_become_channels(
    tmp_path: Path, planar: str, compression: str | None
) -> None:
    data = random_array((210, 170, 3), "uint8")
    source = data if planar == "contig" else np.moveaxis(data, 2, 0)
    tifffile.imwrite(
        tmp_path / "rgb.tif",
        source,
        photometric="rgb",
        planarconfig=planar,
        compression=compression,
    )
    meta, got = load(tmp_path / "rgb.tif")
    assert meta.shape == (1, 3, 1, 210, 170)
    assert [(ch.name, ch.color) for ch in meta.channels] == [
        ("Red", "FF0000"),
        ("Green", "00FF00"),
        ("Blue", "0000FF"),
    ]
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(data, 2, 0))


def test_rgba_tiff_drops_alpha(tmp_path: Path) -> None:
    data = random_array((120, 90, 4), "uint8")
    write_tiff(tmp_path / "rgba.tif", data, photometric="rgb", extrasamples=["unassalpha"])
    meta, got = load(tmp_path / "rgba.tif")
    assert meta.size_c == 3
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(data[..., :3], 2, 0))


def test_unknown_axes_fold_into_z_then_t(tmp_path: Path) -> None:
    data = random_array((2, 3, 80, 60), "uint16")
    write_tiff(tmp_path / "qq.tif", data)  # tifffile reads this back as QQYX
    meta, got = load(tmp_path / "qq.tif")
    assert meta.shape == (1, 1, 6, 80, 60)
    np.testing.assert_array_equal(got[0, 0], data.reshape(6, 80, 60))

    write_tiff(tmp_path / "zq.tif", data, metadata={"axes": "ZQYX"})
    with tifffile.TiffFile(tmp_path / "zq.tif") as tif:
        assert tif.series[0].axes == "ZQYX"
    meta, got = load(tmp_path / "zq.tif")
    assert meta.shape == (3, 1, 2, 80, 60)
    np.testing.assert_array_equal(got[:, 0], np.moveaxis(data, 1, 0))


def test_imagej_hyperstack(tmp_path: Path) -> None:
    data = random_array((2, 3, 2, 70, 50), "uint16")  # TZCYX, ImageJ's order
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "unit": "um", "spacing": 1.5},
    )
    meta, got = load(tmp_path / "ij.tif")
    assert (meta.format, meta.shape) == ("tiff", (2, 2, 3, 70, 50))
    np.testing.assert_array_equal(got, np.moveaxis(data, 2, 1))
    assert meta.physical_size_x == pytest.approx(0.25)
    assert meta.physical_size_y == pytest.approx(0.25)
    assert meta.physical_size_z == pytest.approx(1.5)


def test_print_resolution_is_not_a_pixel_size(tmp_path: Path) -> None:
    write_tiff(tmp_path / "dpi.tif", np.zeros((20, 20), "uint8"), resolution=(72, 72))
    write_tiff(
        tmp_path / "cm.tif",
        np.zeros((20, 20), "uint8"),
        resolution=(20000, 20000),
        resolutionunit="CENTIMETER",
    )
    assert load(tmp_path / "dpi.tif")[0].physical_size_x is None
    assert load(tmp_path / "cm.tif")[0].physical_size_x == pytest.approx(0.5)


OME_COLORS = [-16776961, 16711935, -1]  # RGBA ints: FF0000FF, 00FF00FF, FFFFFFFF
OME_META = {
    "axes": "TCZYX",
    "Name": "cells",
    "PhysicalSizeX": 250.0,
    "PhysicalSizeXUnit": "nm",
    "PhysicalSizeY": 0.3,
    "PhysicalSizeYUnit": "µm",
    "PhysicalSizeZ": 0.002,
    "PhysicalSizeZUnit": "mm",
    "Channel": {
        "Name": ["DAPI", "GFP", "Brightfield"],
        "Color": OME_COLORS,
        "EmissionWavelength": [461.0, 0.51, 600.0],
        "EmissionWavelengthUnit": ["nm", "µm", "nm"],
    },
}


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_ome_tiff_5d_with_metadata(tmp_path: Path, compression: str | None) -> None:
    data = random_array((2, 3, 4, 130, 90), "uint16")
    path = tmp_path / "cells_file.ome.tif"
    write_tiff(path, data, metadata=OME_META, compression=compression)
    assert detect(path) == "ome-tiff"
    meta, got = load(path)
    assert (meta.format, meta.name, meta.shape) == ("ome-tiff", "cells", (2, 3, 4, 130, 90))
    np.testing.assert_array_equal(got, data)
    assert [ch.name for ch in meta.channels] == ["DAPI", "GFP", "Brightfield"]
    assert [ch.color for ch in meta.channels] == ["FF0000", "00FF00", "FFFFFF"]
    assert [ch.emission_wave for ch in meta.channels] == pytest.approx([461.0, 510.0, 600.0])
    assert meta.physical_size_x == pytest.approx(0.25)
    assert meta.physical_size_y == pytest.approx(0.3)
    assert meta.physical_size_z == pytest.approx(2.0)


def test_ome_tiff_other_dimension_order(tmp_path: Path) -> None:
    data = random_array((3, 2, 4, 60, 50), "float32")  # ZTC order on disk
    write_tiff(tmp_path / "o.ome.tif", data, metadata={"axes": "ZTCYX"})
    meta, got = load(tmp_path / "o.ome.tif")
    assert meta.shape == (2, 4, 3, 60, 50)
    np.testing.assert_array_equal(got, np.transpose(data, (1, 2, 0, 3, 4)))


def test_ome_color_is_signed_rgba() -> None:
    assert ome_color("-16776961") == "FF0000"
    assert ome_color(str(0x00FF00FF)) == "00FF00"
    assert ome_color("-1") == "FFFFFF"
    assert ome_color("255") == "000000"
    assert ome_color("blue") is None


def test_pyramidal_ome_tiff_reads_level_0(tmp_path: Path) -> None:
    data = random_array((2, 512, 384), "uint16")  # C, Y, X
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options: dict[str, Any] = {"tile": (128, 128), "compression": "zlib"}
        tif.write(data, subifds=2, metadata={"axes": "CYX"}, **options)
        for factor in (2, 4):
            tif.write(data[:, ::factor, ::factor], subfiletype=1, **options)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].levels) == 3
    meta, got = load(path)
    assert meta.shape == (1, 2, 1, 512, 384)
    np.testing.assert_array_equal(got[0, :, 0], data)


def test_ome_tiff_rgb(tmp_path: Path) -> None:
    data = random_array((100, 80, 3), "uint8")
    write_tiff(tmp_path / "rgb.ome.tif", data, photometric="rgb")
    meta, got = load(tmp_path / "rgb.ome.tif")
    assert meta.format == "ome-tiff"
    assert [ch.color for ch in meta.channels] == ["FF0000", "00FF00", "0000FF"]
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(data, 2, 0))


def test_float16_tiff_widens_to_float32(tmp_path: Path) -> None:
    data = random_array((50, 40), "float32").astype("float16")
    write_tiff(tmp_path / "h.tif", data)
    meta, got = load(tmp_path / "h.tif")
    assert meta.pixel_type == "float32"
    np.testing.assert_array_equal(got[0, 0, 0], data.astype("float32"))


@pytest.mark.parametrize(
    "options",
    [{}, {"compression": "zlib"}, {"compression": "zlib", "tile": (64, 64)}],
    ids=["plain", "zlib", "tiles"],
)
def test_truncated_tiff_fails_cleanly(tmp_path: Path, options: dict[str, Any]) -> None:
    data = random_array((2, 200, 200), "uint16")
    write_tiff(tmp_path / "t.tif", data, **options)
    assert_truncations_fail(tmp_path / "t.tif", data[None, None])


def test_truncated_tiff_fails_when_opened(tmp_path: Path) -> None:
    write_tiff(tmp_path / "t.tif", random_array((200, 200), "uint16"))
    data = (tmp_path / "t.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailed, match="truncated"):
        open_reader(cut)


def test_garbage_named_tif(tmp_path: Path) -> None:
    (tmp_path / "junk.tif").write_bytes(RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormat):
        open_reader(tmp_path / "junk.tif")
    (tmp_path / "junk2.tif").write_bytes(
        b"II*\x00" + RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    )
    assert_fails_cleanly(tmp_path / "junk2.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(UnsupportedFormat):
        open_reader(tmp_path / "empty.tif")


def test_tiff_of_unsupported_pixel_type(tmp_path: Path) -> None:
    write_tiff(tmp_path / "c.tif", np.zeros((10, 10), "complex64"))
    with pytest.raises(UnsupportedFormat, match="complex64"):
        open_reader(tmp_path / "c.tif")


# PNG and JPEG -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_png_grey(tmp_path: Path, dtype: str) -> None:
    data = random_array((230, 170), dtype)
    PILImage.fromarray(data).save(tmp_path / "grey.png")
    meta, got = load(tmp_path / "grey.png")
    assert (meta.format, meta.name, meta.pixel_type) == ("png", "grey", dtype)
    assert meta.shape == (1, 1, 1, 230, 170)
    np.testing.assert_array_equal(got[0, 0, 0], data)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_colour(tmp_path: Path, mode: str) -> None:
    data = random_array((150, 220, len(mode)), "uint8")
    PILImage.fromarray(data, mode).save(tmp_path / "colour.png")
    meta, got = load(tmp_path / "colour.png")
    assert meta.shape == (1, 3, 1, 150, 220)
    assert [(ch.name, ch.color) for ch in meta.channels] == [
        ("Red", "FF0000"),
        ("Green", "00FF00"),
        ("Blue", "0000FF"),
    ]
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(data[..., :3], 2, 0))


def test_png_16_bit_colour_keeps_16_bits(tmp_path: Path) -> None:
    data = random_array((120, 100, 3), "uint16")
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(data))
    meta, got = load(tmp_path / "rgb16.png")
    assert (meta.pixel_type, meta.size_c) == ("uint16", 3)
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(data, 2, 0))


def test_png_palette_and_grey_alpha(tmp_path: Path) -> None:
    indices = random_array((90, 110), "uint8") % 4
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]
    image = PILImage.fromarray(indices, "L").convert("P")
    image.putpalette(palette + [0] * (768 - len(palette)))
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "palette.png")
    meta, got = load(tmp_path / "palette.png")
    assert meta.size_c == 3
    expected = np.array(palette, np.uint8).reshape(4, 3)[indices]
    np.testing.assert_array_equal(got[0, :, 0], np.moveaxis(expected, 2, 0))

    grey = random_array((60, 70, 2), "uint8")
    PILImage.fromarray(grey, "LA").save(tmp_path / "la.png")
    meta, got = load(tmp_path / "la.png")
    assert meta.shape == (1, 1, 1, 60, 70)
    np.testing.assert_array_equal(got[0, 0, 0], grey[..., 0])


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_matches_pillow(tmp_path: Path, mode: str) -> None:
    shape = (260, 300) if mode == "L" else (260, 300, 3)
    PILImage.fromarray(random_array(shape, "uint8"), mode).save(tmp_path / "photo.jpg", quality=90)
    assert detect(tmp_path / "photo.jpg") == "jpeg"
    meta, got = load(tmp_path / "photo.jpg")
    decoded = np.asarray(PILImage.open(tmp_path / "photo.jpg"))
    expected = decoded[None] if mode == "L" else np.moveaxis(decoded, 2, 0)
    assert (meta.format, meta.size_c) == ("jpeg", 1 if mode == "L" else 3)
    np.testing.assert_array_equal(got[0, :, 0], expected)


@pytest.mark.parametrize("name", ["t.png", "t.jpg"])
def test_truncated_raster_fails_cleanly(tmp_path: Path, name: str) -> None:
    PILImage.fromarray(random_array((300, 300, 3), "uint8")).save(tmp_path / name)
    _meta, source = load(tmp_path / name)
    assert_truncations_fail(tmp_path / name, source)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    PILImage.fromarray(np.zeros((8, 8), "uint8")).save(tmp_path / "small.png")
    data = bytearray((tmp_path / "small.png").read_bytes())
    data[16:24] = struct.pack(">II", 40_000, 40_000)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    message = assert_fails_cleanly(tmp_path / "bomb.png")
    assert "decompression bomb" in message


# NPY ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", TIFF_TYPES)
def test_npy_pixel_types(tmp_path: Path, dtype: str) -> None:
    data = random_array((230, 140), dtype)
    np.save(tmp_path / "a.npy", data)
    meta, got = load(tmp_path / "a.npy")
    assert (meta.format, meta.name, meta.pixel_type) == ("npy", "a", dtype)
    np.testing.assert_array_equal(got[0, 0, 0], data)


def _npy_cases() -> list[tuple[str | None, tuple[int, ...], Callable[[np.ndarray], np.ndarray]]]:
    """(axes, shape, function from the saved array to TCZYX)."""
    return [
        (None, (3, 210, 90), lambda a: a[None, None]),
        ("ZYX", (3, 210, 90), lambda a: a[None, None]),
        ("CYX", (2, 210, 90), lambda a: a[None, :, None]),
        ("YXC", (210, 90, 3), lambda a: np.moveaxis(a, 2, 0)[None, :, None]),
        ("XY", (90, 210), lambda a: a.T[None, None, None]),
        ("ZXY", (2, 90, 210), lambda a: np.swapaxes(a, 1, 2)[None, None]),
        ("tczyx", (2, 3, 2, 210, 90), lambda a: a),
        ("CTYXZ", (2, 3, 210, 90, 2), lambda a: np.transpose(a, (1, 0, 4, 2, 3))),
    ]


@pytest.mark.parametrize("case", _npy_cases(), ids=lambda case: str(case[0]))
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_axes(
    tmp_path: Path,
    case: tuple[str | None, tuple[int, ...], Callable[[np.ndarray], np.ndarray]],
    order: str,
) -> None:
    axes, shape, to_5d = case
    data = np.asarray(random_array(shape, "uint16"), order=order)
    np.save(tmp_path / "a.npy", data)
    meta, got = load(tmp_path / "a.npy", axes)
    expected = to_5d(data)
    assert meta.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_npy_big_endian(tmp_path: Path) -> None:
    data = random_array((150, 70), "int32").astype(">i4")
    np.save(tmp_path / "be.npy", data)
    meta, got = load(tmp_path / "be.npy")
    assert meta.pixel_type == "int32"
    np.testing.assert_array_equal(got[0, 0, 0], data)


def test_npy_needs_axes(tmp_path: Path) -> None:
    np.save(tmp_path / "four.npy", np.zeros((2, 2, 10, 10), "uint8"))
    with pytest.raises(UnsupportedFormat, match="--axes"):
        open_reader(tmp_path / "four.npy")
    with pytest.raises(UnsupportedFormat, match="names 3 axes"):
        open_reader(tmp_path / "four.npy", "ZYX")
    with pytest.raises(UnsupportedFormat, match="Y and X"):
        open_reader(tmp_path / "four.npy", "TCZY")
    with pytest.raises(UnsupportedFormat, match="at most once"):
        open_reader(tmp_path / "four.npy", "ZZYX")
    assert open_reader(tmp_path / "four.npy", "TZYX").meta.shape == (2, 1, 2, 10, 10)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4), bool),
        np.zeros((4, 4), complex),
        np.zeros((4, 4), "int64"),
        np.zeros((4, 4), [("a", "u1"), ("b", "u2")]),
        np.array([[None, 1], [2, 3]], dtype=object),
    ],
    ids=["bool", "complex", "int64", "structured", "object"],
)
def test_npy_unsupported_types(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(UnsupportedFormat):
        open_reader(tmp_path / "x.npy")


def test_truncated_npy_fails_cleanly(tmp_path: Path) -> None:
    data = random_array((3, 200, 100), "uint16")
    np.save(tmp_path / "t.npy", data)
    assert_truncations_fail(tmp_path / "t.npy", data[None, None])


# OME-Zarr -----------------------------------------------------------------------------------


def _multiscales(version: str, axes: str, unit: str, scale: list[float]) -> list[dict[str, Any]]:
    kinds = {"t": "time", "c": "channel"}
    return [
        {
            **({"version": version} if version == "0.4" else {}),
            "name": "embryo",
            "axes": [
                {"name": a, "type": kinds.get(a, "space"), **({"unit": unit} if a in "zyx" else {})}
                for a in axes
            ],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]},
                {
                    "path": "1",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [*scale[:-2], scale[-2] * 2, scale[-1] * 2]}
                    ],
                },
            ],
        }
    ]


OMERO = {
    "channels": [
        {"label": "Hoechst", "color": "0000ff", "window": {"start": 0, "end": 500}},
        {"label": "Actin", "color": "FF00FF", "window": {"start": 0, "end": 900}},
    ]
}


def write_ome_zarr(
    path: Path, data: np.ndarray, zarr_format: int, axes: str, unit: str, scale: list[float]
) -> None:
    """Write a two-level OME-Zarr image the way the spec of ``zarr_format`` (2 → 0.4, 3 → 0.5) says."""
    version = "0.4" if zarr_format == 2 else "0.5"
    attrs: dict[str, Any] = {
        "multiscales": _multiscales(version, axes, unit, scale),
        "omero": OMERO,
    }
    group = zarr.open_group(
        path,
        mode="w",
        zarr_format=zarr_format,  # type: ignore[arg-type]
        attributes=attrs if zarr_format == 2 else {"ome": {"version": "0.5", **attrs}},
    )
    chunks = (*([1] * (data.ndim - 2)), 64, 64)
    group.create_array("0", data=data, chunks=chunks)
    group.create_array("1", data=np.ascontiguousarray(data[..., ::2, ::2]), chunks=chunks)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_ome_zarr_pixels_and_metadata(tmp_path: Path, zarr_format: int, dtype: str) -> None:
    data = random_array((2, 3, 150, 130), dtype)  # C, Z, Y, X
    path = tmp_path / "embryo.ome.zarr"
    write_ome_zarr(path, data, zarr_format, "czyx", "nanometer", [1.0, 2000.0, 325.0, 325.0])
    assert detect(path) == "ome-zarr"
    meta, got = load(path)
    assert (meta.format, meta.name, meta.pixel_type) == ("ome-zarr", "embryo", dtype)
    assert meta.shape == (1, 2, 3, 150, 130)
    np.testing.assert_array_equal(got[0], data)
    assert [(ch.name, ch.color) for ch in meta.channels] == [
        ("Hoechst", "0000FF"),
        ("Actin", "FF00FF"),
    ]
    assert meta.physical_size_x == pytest.approx(0.325)
    assert meta.physical_size_y == pytest.approx(0.325)
    assert meta.physical_size_z == pytest.approx(2.0)


def test_ome_zarr_0_5_written_by_hand_is_zarr_v3(tmp_path: Path) -> None:
    data = random_array((3, 100, 90), "uint16")  # T, Y, X
    path = tmp_path / "movie.zarr"
    write_ome_zarr(path, data, 3, "tyx", "micrometer", [1.0, 0.5, 0.5])
    group_json = json.loads((path / "zarr.json").read_text())
    assert group_json["zarr_format"] == 3
    assert group_json["attributes"]["ome"]["version"] == "0.5"
    meta, got = load(path)
    assert meta.shape == (3, 1, 1, 100, 90)
    assert (meta.physical_size_x, meta.physical_size_z) == (pytest.approx(0.5), None)
    np.testing.assert_array_equal(got[:, 0, 0], data)


def test_bioformats2raw_layout_opens_image_0(tmp_path: Path) -> None:
    path = tmp_path / "converted.zarr"
    zarr.open_group(path, mode="w", zarr_format=2, attributes={"bioformats2raw.layout": 3})
    data = random_array((2, 80, 70), "uint16")
    write_ome_zarr(path / "0", data, 2, "cyx", "micrometer", [1.0, 0.2, 0.2])
    meta, got = load(path)
    assert meta.shape == (1, 2, 1, 80, 70)
    np.testing.assert_array_equal(got[0, :, 0], data)


def test_ome_zarr_malformed_plate_and_plain_groups_are_refused(tmp_path: Path) -> None:
    # Plates are read (tests/test_format_omezarr.py); one without its rows is refused.
    plate = {
        "plate": {"version": "0.4", "wells": [{"path": "B/3", "rowIndex": 1, "columnIndex": 2}]}
    }
    zarr.open_group(tmp_path / "plate.zarr", mode="w", zarr_format=2, attributes=plate)
    with pytest.raises(ImportFailed, match="lists no rows"):
        open_reader(tmp_path / "plate.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    with pytest.raises(UnsupportedFormat, match="multiscales"):
        open_reader(tmp_path / "plain.zarr")
    zarr.create_array(tmp_path / "array.zarr", shape=(4, 4), dtype="uint8", zarr_format=3)
    with pytest.raises(UnsupportedFormat, match="parent"):
        open_reader(tmp_path / "array.zarr")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_damaged_ome_zarr_fails_cleanly(tmp_path: Path, zarr_format: int) -> None:
    path = tmp_path / "damaged.zarr"
    data = random_array((2, 128, 64), "uint16")
    write_ome_zarr(path, data, zarr_format, "cyx", "micrometer", [1.0, 1.0, 1.0])
    chunks = [
        p for p in (path / "0").rglob("*") if p.is_file() and not p.name.startswith((".", "zarr"))
    ]
    assert chunks
    chunks[0].write_bytes(b"not a compressed chunk")
    assert "cannot be read" in assert_fails_cleanly(path)
    (path / "0" / ("zarr.json" if zarr_format == 3 else ".zarray")).unlink()
    assert_fails_cleanly(path)


# Detection ----------------------------------------------------------------------------------


def test_unsupported_files_are_refused_by_detect(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder").mkdir()
    PILImage.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "image.bmp")
    for name in ("notes.txt", "folder", "image.bmp", "missing.tif"):
        with pytest.raises(UnsupportedFormat):
            detect(tmp_path / name)
        with pytest.raises(UnsupportedFormat):
            open_reader(tmp_path / name)
