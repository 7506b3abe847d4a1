"""Whole-slide images: the real Aperio sample, and slides made here with tifffile whose own
levels are not 2x2 means of level 0, so that reading them exactly proves they are copied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, Pyramidal, Reader, open_fileset
from tests.helpers import SAMPLES, read_channels

SMALL_SVS = SAMPLES / "svs" / "small.svs"
BAND = 64
RNG = np.random.default_rng(12)
APERIO = "Aperio Image Library v12.0.15\r\n"


def images(fileset: Fileset) -> list[Reader]:
    return [open_image() for open_image in fileset.images]


def pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Return an RGB image unrelated to any other level (not a 2x2 mean of anything)."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack(
        [(xx * (seed + 3)) % 256, (yy * (seed + 5)) % 256, ((xx // 4 + yy // 4 + seed) % 2) * 255],
        axis=-1,
    ).astype(np.uint8)


@pytest.fixture(scope="module")
def made_svs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Write an SVS-like slide: tiled level 0, thumbnail, two own levels, label and macro."""
    parts = {
        "level0": RNG.integers(0, 256, (600, 500, 3), dtype=np.uint8),
        "thumbnail": RNG.integers(0, 256, (60, 50, 3), dtype=np.uint8),
        "level1": pattern(300, 250, 1),
        "level2": pattern(150, 125, 2),
        "label": RNG.integers(0, 256, (40, 80, 3), dtype=np.uint8),
        "macro": RNG.integers(0, 256, (50, 150, 3), dtype=np.uint8),
    }
    path = tmp_path_factory.mktemp("svs") / "made.svs"
    description = (
        f"{APERIO}500x600 (256x256) zlib/RGB|AppMag = 40|MPP = 0.25|Date = 03/04/21"
        "|Time = 10:11:12|ScanScope ID = TEST"
    )
    options: dict[str, Any] = {"photometric": "rgb", "metadata": None}
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            parts["level0"], tile=(256, 256), compression="zlib", description=description, **options
        )
        tif.write(parts["thumbnail"], description=f"{APERIO}500x600 -> 50x60", **options)
        tif.write(
            parts["level1"],
            tile=(256, 256),
            compression="zlib",
            description=f"{APERIO}250x300",
            **options,
        )
        tif.write(
            parts["level2"],
            tile=(128, 128),
            compression="zlib",
            description=f"{APERIO}125x150",
            **options,
        )
        # Aperio marks the label as a reduced image (NewSubfileType 1) and the macro with 9.
        tif.write(
            parts["label"],
            subfiletype=1,
            compression="lzw",
            description=f"{APERIO}label",
            **options,
        )
        tif.write(
            parts["macro"],
            subfiletype=9,
            compression="zlib",
            description=f"{APERIO}macro",
            **options,
        )
    return path, parts


def test_svs_sample_reads_like_tifffile() -> None:
    if not SMALL_SVS.exists():
        pytest.skip("the shared samples are not here")
    fileset = open_fileset(SMALL_SVS)
    try:
        assert fileset.format == "svs"
        assert fileset.files == [SMALL_SVS]
        main, thumbnail = images(fileset)
        meta = main.meta
        assert (meta.size_t, meta.size_c, meta.size_z, meta.size_y, meta.size_x) == (
            1,
            3,
            1,
            16,
            16,
        )
        assert meta.pixel_type == "uint8"
        assert [(c.name, c.color) for c in meta.channels] == [
            ("Red", "FF0000"),
            ("Green", "00FF00"),
            ("Blue", "0000FF"),
        ]
        assert meta.physical_size_x == pytest.approx(0.499)
        assert meta.physical_size_y == pytest.approx(0.499)
        assert meta.objective == "20x"
        assert meta.kind == "image" and meta.levels == []
        assert meta.original_metadata["aperio.AppMag"] == "20"
        assert meta.original_metadata["aperio.MPP"] == "0.4990"
        with tifffile.TiffFile(SMALL_SVS) as tif:
            expected = [np.asarray(series.asarray()) for series in tif.series]
        assert np.array_equal(read_channels(main, band=5), expected[0].reshape(16, 16, 3))
        assert thumbnail.meta.kind == "thumbnail" and thumbnail.meta.series == "thumbnail"
        assert thumbnail.meta.physical_size_x is None
        assert np.array_equal(read_channels(thumbnail, band=BAND), expected[1].reshape(16, 16, 3))
        for reader in (main, thumbnail):
            reader.close()
    finally:
        fileset.close()


def test_svs_levels_are_read_as_stored(made_svs: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, parts = made_svs
    fileset = open_fileset(path)
    try:
        main = fileset.images[0]()
        assert isinstance(main, Pyramidal)
        assert main.meta.levels == [(300, 250), (150, 125)]
        assert np.array_equal(read_channels(main, band=BAND), parts["level0"])
        # NOTE: neither level is a 2x2 mean of the one above; only a copy matches.
        assert np.array_equal(read_channels(main, 1, BAND), parts["level1"])
        assert np.array_equal(read_channels(main, 2, BAND), parts["level2"])
        with pytest.raises(ValueError):
            main.read_level_band(3, 0, 0, 0, 0, 1)
        main.close()
    finally:
        fileset.close()


def test_the_channels_of_an_rgb_band_are_decoded_once(
    made_svs: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, parts = made_svs
    fileset = open_fileset(path)
    try:
        main = fileset.images[0]()
        assert isinstance(main, Pyramidal)
        level = main.levels[0]  # type: ignore[attr-defined]
        assert level.page is not None  # tiled: its tiles are decoded two at a time
        decoded: list[tuple[int, int]] = []
        rows = level._rows

        def counting(index: Any, y0: int, y1: int) -> np.ndarray:
            decoded.append((y0, y1))
            return rows(index, y0, y1)

        level._rows = counting
        for y0, y1 in [(100, 164), (164, 300)]:
            for c in range(3):
                band = main.read_band(0, c, 0, y0, y1)
                assert band.flags.c_contiguous
                np.testing.assert_array_equal(band, parts["level0"][y0:y1, :, c])
        assert decoded == [(100, 164), (164, 300)]
        main.close()
    finally:
        fileset.close()


def test_svs_metadata_from_the_description(made_svs: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = made_svs
    fileset = open_fileset(path)
    try:
        meta = fileset.images[0]().meta
        assert meta.name == "made" and meta.format == "svs"
        assert meta.physical_size_x == pytest.approx(0.25)
        assert meta.physical_size_y == pytest.approx(0.25)
        assert meta.objective == "40x"
        assert meta.acquired == "2021-03-04T10:11:12"
        assert meta.original_metadata["aperio.ScanScope ID"] == "TEST"
        assert all(len(value) <= 4096 for value in meta.original_metadata.values())
    finally:
        fileset.close()


def test_svs_label_macro_and_thumbnail_are_associated_images(
    made_svs: tuple[Path, dict[str, np.ndarray]],
) -> None:
    path, parts = made_svs
    fileset = open_fileset(path)
    try:
        readers = images(fileset)
        assert [r.meta.kind for r in readers] == ["image", "thumbnail", "label", "macro"]
        for reader in readers[1:]:
            kind = reader.meta.kind
            assert reader.meta.series == kind
            assert reader.meta.levels == []
            assert reader.meta.physical_size_x is None
            assert np.array_equal(read_channels(reader, band=16), parts[kind])
            reader.close()
    finally:
        fileset.close()


def write_scn(path: Path, macro: np.ndarray, first: list[np.ndarray], second: np.ndarray) -> None:
    """Write a Leica SCN-like slide: a macro image and two main images, the first with a level."""

    def image(name: str, ifds: list[tuple[int, np.ndarray]], view: tuple[int, int]) -> str:
        dims = "".join(
            f'<dimension sizeX="{a.shape[1]}" sizeY="{a.shape[0]}" r="{r}" ifd="{ifd}"/>'
            for r, (ifd, a) in enumerate(ifds)
        )
        return (
            f'<image name="{name}"><creationDate>2013-03-12T11:45:25.79Z</creationDate>'
            f'<view sizeX="{view[0]}" sizeY="{view[1]}" offsetX="0" offsetY="0"/>'
            "<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings>"
            f"</scanSettings><pixels>{dims}</pixels></image>"
        )

    collection = (100000, 200000)  # nm
    xml = (
        '<?xml version="1.0"?><scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01">'
        f'<collection name="slide" sizeX="{collection[0]}" sizeY="{collection[1]}">'
        + image("macro", [(0, macro)], collection)
        + image(
            "tissue A",
            [(1, first[0]), (2, first[1])],
            (first[0].shape[1] * 500, first[0].shape[0] * 500),
        )
        + image("tissue B", [(3, second)], (second.shape[1] * 250, second.shape[0] * 250))
        + "</collection></scn>"
    )
    options: dict[str, Any] = {"photometric": "rgb", "metadata": None, "tile": (64, 64)}
    with tifffile.TiffWriter(path) as tif:
        tif.write(macro, description=xml, **options)
        for array in (*first, second):
            tif.write(array, compression="zlib", **options)


def test_scn_main_images_are_each_an_image(tmp_path: Path) -> None:
    macro = pattern(64, 32, 4)
    first = [RNG.integers(0, 256, (200, 150, 3), dtype=np.uint8), pattern(100, 75, 5)]
    second = pattern(90, 120, 6)
    path = tmp_path / "slide.scn"
    write_scn(path, macro, first, second)
    fileset = open_fileset(path)
    try:
        assert fileset.format == "scn"
        a, b, overview = images(fileset)
        assert (a.meta.series, b.meta.series) == ("tissue A", "tissue B")
        assert a.meta.name == "slide [tissue A]"
        assert a.meta.levels == [(100, 75)] and b.meta.levels == []
        assert a.meta.physical_size_x == pytest.approx(0.5)
        assert b.meta.physical_size_x == pytest.approx(0.25)
        assert a.meta.objective == "20x"
        assert a.meta.acquired == "2013-03-12T11:45:25.79Z"
        assert np.array_equal(read_channels(a, band=BAND), first[0])
        assert np.array_equal(read_channels(a, 1, BAND), first[1])
        assert np.array_equal(read_channels(b, band=BAND), second)
        assert overview.meta.kind == "macro"
        assert np.array_equal(read_channels(overview, band=BAND), macro)
    finally:
        fileset.close()


def assert_fails_cleanly(path: Path) -> str:
    """Opening ``path`` and reading every band of every image raises ImportFailed, nothing else."""
    with pytest.raises(ImportFailed) as info:
        fileset = open_fileset(path)
        try:
            for reader in images(fileset):
                read_channels(reader, band=BAND)
                for level in range(1, len(reader.meta.levels) + 1):
                    read_channels(reader, level, BAND)
        finally:
            fileset.close()
    message = str(info.value)
    assert "\n" not in message and str(path.parent) not in message
    return message


def test_truncated_svs_fails_cleanly(
    tmp_path: Path, made_svs: tuple[Path, dict[str, np.ndarray]]
) -> None:
    sources = [made_svs[0]] + ([SMALL_SVS] if SMALL_SVS.exists() else [])
    for source in sources:
        data = source.read_bytes()
        cut = tmp_path / f"cut-{source.name}"
        cut.write_bytes(data[: len(data) // 2])
        message = assert_fails_cleanly(cut)
        assert "truncated" in message or "damaged" in message


def test_svs_with_a_damaged_tile_fails_when_read(
    tmp_path: Path, made_svs: tuple[Path, dict[str, np.ndarray]]
) -> None:
    path, _ = made_svs
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[2].dataoffsets[0])  # the first tile of level 1
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    damaged = tmp_path / "damaged.svs"
    damaged.write_bytes(bytes(data))
    assert "level 1 cannot be decoded" in assert_fails_cleanly(damaged)


def test_mirax_without_its_data_folder_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "slide.mrxs"
    path.write_text("[GENERAL]\nSLIDE_VERSION = 01.02\n")
    assert "data folder slide/" in assert_fails_cleanly(path)
    (tmp_path / "slide").mkdir()
    assert "MIRAX" in assert_fails_cleanly(path)
