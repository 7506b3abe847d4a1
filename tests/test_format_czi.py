"""Zeiss CZI: the real samples read band by band through open_fileset must equal the planes
pylibCZIrw reads, with the sizes, channels and scaling the manifest lists; files written here
with pylibCZIrw (many scenes, tiled mosaics, every pixel type) must come back exactly."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from pylibCZIrw import czi as pyczi

from coverslip.cli import main
from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, Reader, detect, open_fileset
from coverslip.formats.czi_meta import czi_color, parse_metadata
from tests.helpers import SAMPLES, read_plane

CZI = SAMPLES / "czi"
BAND = 100  # rows per band: every sample spans several bands
RNG = np.random.default_rng(12)

# The manifest's contents column: (T, C, Z, Y, X), pixel type, pixel size (µm), channel names.
MANIFEST = {
    "CD_s_1_t_3_c_2_z_5.czi": ((3, 2, 5, 170, 240), "uint16", 0.09058, ["LED555", "LED470"]),
    # Bgr24: one CZI channel of three samples, read as Red, Green, Blue
    "RGB-8bit.czi": ((1, 3, 1, 624, 924), "uint8", 1.083, ["Red", "Green", "Blue"]),
    "mosaic_test.czi": ((1, 1, 1, 624, 1756), "uint16", 1.083, ["EGFP"]),
}


def sample(name: str) -> Any:
    path = CZI / name
    return pytest.param(
        path,
        marks=pytest.mark.skipif(not path.exists(), reason=f"the shared sample {name} is absent"),
    )


SAMPLE_PARAMS = [sample(name) for name in MANIFEST]


def read_all(reader: Reader, band: int = BAND) -> np.ndarray:
    meta = reader.meta
    out = np.zeros(meta.shape, dtype=meta.pixel_type)
    for t in range(meta.size_t):
        for c in range(meta.size_c):
            for z in range(meta.size_z):
                out[t, c, z] = read_plane(reader, t, c, z, band)
    return out


@pytest.fixture
def opened() -> Iterator[Any]:
    """Open a path's fileset and every image in it; close them all afterwards."""
    filesets: list[Fileset] = []
    readers: list[Reader] = []

    def open_all(path: Path) -> list[Reader]:
        fileset = open_fileset(path)
        filesets.append(fileset)
        images = [open_image() for open_image in fileset.images]
        readers.extend(images)
        return images

    yield open_all
    for reader in readers:
        reader.close()
    for fileset in filesets:
        fileset.close()


def reference_plane(path: Path, t: int, c: int, z: int, scene: int | None) -> np.ndarray:
    """Return plane (t, c, z) of a scene as pylibCZIrw composites it, (Y, X, samples)."""
    with pyczi.open_czi(str(path)) as czi:
        return czi.read(plane={"T": t, "C": c, "Z": z}, scene=scene)


# Real samples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_PARAMS)
def test_samples_have_the_manifest_sizes_channels_and_scaling(path: Path, opened: Any) -> None:
    shape, pixel_type, pixel_um, names = MANIFEST[path.name]
    assert detect(path) == "czi"
    [reader] = opened(path)
    meta = reader.meta
    assert meta.format == "czi"
    assert meta.name == path.stem
    assert meta.series is None
    assert meta.shape == shape
    assert meta.pixel_type == pixel_type
    assert [ch.name for ch in meta.channels] == names
    assert meta.physical_size_x == pytest.approx(pixel_um, rel=1e-3)
    assert meta.physical_size_y == pytest.approx(pixel_um, rel=1e-3)
    assert meta.levels == []
    assert 0 < len(meta.original_metadata) <= 2000
    assert all(len(value) <= 1000 for value in meta.original_metadata.values())


@pytest.mark.parametrize("path", SAMPLE_PARAMS)
def test_sample_bands_equal_the_planes_pylibczirw_reads(path: Path, opened: Any) -> None:
    [reader] = opened(path)
    meta = reader.meta
    rgb = meta.size_c == 3 and [ch.name for ch in meta.channels] == ["Red", "Green", "Blue"]
    scene = 0 if path.name == "mosaic_test.czi" else None  # the mosaic is scene 0 of the file
    for t in range(meta.size_t):
        for z in range(meta.size_z):
            for c in range(1 if rgb else meta.size_c):
                expected = reference_plane(path, t, c, z, scene)
                if rgb:
                    for sample_index in range(3):  # stored B, G, R
                        got = read_plane(reader, t, sample_index, z, BAND)
                        np.testing.assert_array_equal(got, expected[:, :, 2 - sample_index])
                else:
                    np.testing.assert_array_equal(
                        read_plane(reader, t, c, z, BAND), expected[:, :, 0]
                    )


@pytest.mark.skipif(not (CZI / "mosaic_test.czi").exists(), reason="the sample is absent")
def test_the_mosaic_is_composited_from_both_tiles(opened: Any) -> None:
    [reader] = opened(CZI / "mosaic_test.czi")
    whole = read_plane(reader, 0, 0, 0, BAND)
    # Two 924-pixel tiles side by side: both halves hold data, not background.
    assert whole[:, :800].any() and whole[:, -800:].any()
    assert np.count_nonzero(whole) > 0.99 * whole.size


@pytest.mark.skipif(not (CZI / "CD_s_1_t_3_c_2_z_5.czi").exists(), reason="absent")
def test_celldiscoverer_metadata(opened: Any) -> None:
    [reader] = opened(CZI / "CD_s_1_t_3_c_2_z_5.czi")
    meta = reader.meta
    assert [ch.color for ch in meta.channels] == ["FF7E00", "00FF33"]
    assert [ch.emission_wave for ch in meta.channels] == [568, 517]
    assert [ch.excitation_wave for ch in meta.channels] == [553, 493]
    assert meta.physical_size_z == pytest.approx(0.32)
    assert meta.objective == "Plan-Apochromat 50x/1.2"
    assert meta.acquired is not None and meta.acquired.startswith("2016-02-12T09:41:02")
    assert meta.time_increment == pytest.approx(60.075)
    original = meta.original_metadata
    assert original["Information|Image|SizeT"] == "3"
    assert float(original["Scaling|Items|Distance|Value"]) == pytest.approx(9.0576674e-08)
    # The image's own description comes before the (much longer) acquisition set-up.
    assert list(original).index("Information|Image|SizeX") < 100


@pytest.mark.parametrize("path", SAMPLE_PARAMS)
def test_a_truncated_sample_fails_with_the_reason(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    cut = tmp_path / path.name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailed) as info:
        fileset = open_fileset(cut)
        try:
            for open_image in fileset.images:
                reader = open_image()
                try:
                    read_all(reader)
                finally:
                    reader.close()
        finally:
            fileset.close()
    message = str(info.value)
    assert "truncated" in message
    assert "\n" not in message and str(tmp_path) not in message


# Files written here ---------------------------------------------------------------------------


def write_czi(path: Path, tiles: list[dict[str, Any]], **metadata: Any) -> None:
    """Write tiles, each {"data", "location", "plane", "scene"}, with pylibCZIrw."""
    with pyczi.create_czi(str(path)) as czi:
        for tile in tiles:
            data = tile["data"]
            czi.write(
                data[:, :, None] if data.ndim == 2 else data,
                location=tile.get("location", (0, 0)),
                plane=tile.get("plane"),
                scene=tile.get("scene", 0),
            )
        czi.write_metadata(**metadata)


def test_each_scene_is_its_own_image_with_exact_pixels(tmp_path: Path, opened: Any) -> None:
    # Three scenes of different sizes in different places, one partly at negative x.
    scenes = [((0, 0), (150, 230)), ((1000, 400), (90, 120)), ((-300, 2000), (60, 75))]
    truth = [RNG.integers(0, 65536, (2, 2, 1, h, w), dtype=np.uint16) for _, (h, w) in scenes]
    tiles = [
        {"data": truth[s][t, c, 0], "location": loc, "plane": {"T": t, "C": c}, "scene": s}
        for s, (loc, _) in enumerate(scenes)
        for t in range(2)
        for c in range(2)
    ]
    path = tmp_path / "three scenes.czi"
    # NOTE: pylibCZIrw stores scale_x as given, and CZI scaling is in metres.
    write_czi(path, tiles, channel_names={0: "DAPI", 1: "GFP"}, scale_x=0.25e-6, scale_y=0.25e-6)
    readers = opened(path)
    assert [r.meta.series for r in readers] == ["scene 1", "scene 2", "scene 3"]
    for reader, expected in zip(readers, truth, strict=True):
        meta = reader.meta
        assert meta.name == "three scenes"
        assert meta.shape == expected.shape
        assert [ch.name for ch in meta.channels] == ["DAPI", "GFP"]
        assert [ch.color for ch in meta.channels] == [None, None]
        assert meta.physical_size_x == pytest.approx(0.25)
        np.testing.assert_array_equal(read_all(reader, band=64), expected)


def test_a_tiled_mosaic_is_read_band_by_band_across_tiles(tmp_path: Path, opened: Any) -> None:
    # 3 × 2 tiles of 70 × 90 with a gap of 10 pixels between columns, bands of 33 rows.
    expected = np.zeros((140, 290), dtype=np.uint8)
    tiles = []
    for row in range(2):
        for col in range(3):
            data = RNG.integers(1, 256, (70, 90), dtype=np.uint8)
            y, x = row * 70, col * 100
            expected[y : y + 70, x : x + 90] = data
            tiles.append({"data": data, "location": (x, y)})
    path = tmp_path / "mosaic.czi"
    write_czi(path, tiles)
    [reader] = opened(path)
    assert reader.meta.shape == (1, 1, 1, 140, 290)
    np.testing.assert_array_equal(read_plane(reader, 0, 0, 0, 33), expected)


@pytest.mark.parametrize("samples", [1, 3], ids=["Gray16", "Bgr48"])
def test_bands_are_cut_from_taller_reads_in_any_order(
    tmp_path: Path, opened: Any, samples: int
) -> None:
    # Two CZI channels of a 2 × 2 mosaic of 50 × 40 frames; the reader reads 16 rows at once.
    truth = RNG.integers(0, 65536, (2, 100, 80, samples), dtype=np.uint16)
    tiles = [
        {"data": truth[c, y : y + 50, x : x + 40], "location": (x, y), "plane": {"C": c}}
        for c in range(2)
        for y in (0, 50)
        for x in (0, 40)
    ]
    path = tmp_path / "bands.czi"
    write_czi(path, tiles)
    [reader] = opened(path)
    reader.rows = 16
    # Image channels: the CZI channel's samples as R, G, B (libCZI stores B, G, R).
    expected = np.concatenate([np.moveaxis(truth[c, :, :, ::-1], 2, 0) for c in range(2)])
    assert reader.meta.size_c == 2 * samples
    for c in range(reader.meta.size_c):
        np.testing.assert_array_equal(read_plane(reader, 0, c, 0, 7), expected[c])
    # Out of order, within a read, across two reads, taller than a read, back to another channel.
    for c, y0, y1 in [(1, 90, 100), (0, 3, 9), (1, 10, 30), (0, 0, 100), (1, 40, 41), (0, 95, 99)]:
        band = reader.read_band(0, c * samples, 0, y0, y1)
        np.testing.assert_array_equal(band, expected[c * samples, y0:y1])


@pytest.mark.parametrize(
    ("dtype", "samples"),
    [("uint8", 1), ("uint16", 1), ("float32", 1), ("uint8", 3), ("uint16", 3)],
    ids=["Gray8", "Gray16", "Gray32Float", "Bgr24", "Bgr48"],
)
def test_every_pixel_type_reads_exactly(
    tmp_path: Path, opened: Any, dtype: str, samples: int
) -> None:
    shape = (83, 61, samples)
    if dtype == "float32":
        bgr = (RNG.standard_normal(shape) * 1e3).astype(dtype)
    else:
        bgr = RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    path = tmp_path / f"{dtype}x{samples}.czi"
    write_czi(path, [{"data": bgr}])
    [reader] = opened(path)
    meta = reader.meta
    assert meta.pixel_type == dtype
    assert meta.size_c == samples
    pixels = read_all(reader, band=20)[0, :, 0]
    if samples == 3:
        assert [(ch.name, ch.color) for ch in meta.channels] == [
            ("Red", "FF0000"),
            ("Green", "00FF00"),
            ("Blue", "0000FF"),
        ]
        np.testing.assert_array_equal(pixels, np.moveaxis(bgr[:, :, ::-1], 2, 0))
    else:
        assert [ch.color for ch in meta.channels] == [None]
        np.testing.assert_array_equal(pixels[0], bgr[:, :, 0])


def test_a_damaged_directory_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "damaged.czi"
    write_czi(path, [{"data": RNG.integers(0, 255, (20, 30), dtype=np.uint8)}])
    data = bytearray(path.read_bytes())
    directory = int.from_bytes(data[32 + 52 : 32 + 60], "little")
    data[directory : directory + 16] = b"\x00" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(ImportFailed, match="damaged"):
        open_fileset(path)


def test_metadata_parsing_of_colours_and_missing_parts() -> None:
    assert czi_color("#FFFF7E00") == "FF7E00"
    assert czi_color("#00ff33") == "00FF33"
    assert czi_color("Unknown") is None
    assert parse_metadata("<not xml").channels == []
    xml = (
        "<ImageDocument><Metadata><DisplaySetting><Channels>"
        '<Channel Id="Channel:0" Name="Cy5"><Color>#FFFF0000</Color></Channel>'
        "</Channels></DisplaySetting></Metadata></ImageDocument>"
    )
    described = parse_metadata(xml)
    assert [(ch.name, ch.color) for ch in described.channels] == [("Cy5", "FF0000")]
    assert described.physical == (None, None, None)
    assert described.original == {
        "DisplaySetting|Channels|Channel|Id": "Channel:0",
        "DisplaySetting|Channels|Channel|Name": "Cy5",
        "DisplaySetting|Channels|Channel|Color": "#FFFF0000",
    }


def test_original_metadata_is_capped() -> None:
    items = "".join(f"<Item{i}>{'x' * 1500}</Item{i}>" for i in range(2500))
    described = parse_metadata(
        f"<ImageDocument><Metadata><Information>{items}</Information></Metadata></ImageDocument>"
    )
    assert len(described.original) == 2000
    assert {len(v) for v in described.original.values()} == {1000}


def test_channels_of_different_pixel_types_share_the_widest(tmp_path: Path, opened: Any) -> None:
    narrow = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    wide = RNG.integers(0, 65536, (10, 12), dtype=np.uint16)
    path = tmp_path / "mixed.czi"
    write_czi(path, [{"data": narrow, "plane": {"C": 0}}, {"data": wide, "plane": {"C": 1}}])
    [reader] = opened(path)
    assert reader.meta.pixel_type == "uint16"
    np.testing.assert_array_equal(read_all(reader)[0, :, 0], np.stack([narrow, wide]))


def test_dimensions_that_do_not_start_at_zero(tmp_path: Path, opened: Any) -> None:
    # pylibCZIrw counts sizes from 0; the subblock directory says where C and Z start.
    first = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    second = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    path = tmp_path / "offset.czi"
    tiles = [
        {"data": first, "plane": {"C": 1, "Z": 2}},
        {"data": second, "plane": {"C": 2, "Z": 2}},
    ]
    write_czi(path, tiles)
    [reader] = opened(path)
    assert reader.meta.shape == (1, 2, 1, 10, 12)
    np.testing.assert_array_equal(read_all(reader)[0, :, 0], np.stack([first, second]))


SEGMENT = struct.Struct("<16sqq")  # a ZISRAW segment's id, allocated and used size


def _segment(ident: bytes, body: bytes) -> bytes:
    """Return a ZISRAW segment holding ``body``, padded to the 32 bytes segments align to."""
    allocated = -(-len(body) // 32) * 32
    return SEGMENT.pack(ident, allocated, len(body)) + body + bytes(allocated - len(body))


def _entries(directory: bytes) -> list[bytearray]:
    """Return the DirectoryEntryDV records of a subblock directory segment's body."""
    (count,) = struct.unpack_from("<i", directory, 0)
    found, offset = [], 128
    for _ in range(count):
        (dims,) = struct.unpack_from("<i", directory, offset + 28)
        found.append(bytearray(directory[offset : offset + 32 + 20 * dims]))
        offset += 32 + 20 * dims
    return found


def _dimensions(entry: bytes) -> dict[bytes, int]:
    """Return where each DimensionEntryDV of a directory entry starts, by dimension name."""
    (count,) = struct.unpack_from("<i", entry, 28)
    return {bytes(entry[32 + 20 * i : 33 + 20 * i]): 32 + 20 * i for i in range(count)}


def write_pyramid_czi(path: Path, level0: np.ndarray, layers: dict[int, np.ndarray]) -> None:
    """Write a mosaic CZI of 512² frames, then add pyramid subblocks as ZEN stores them.

    pylibCZIrw writes no pyramids, so each layer is appended by hand: a subblock whose X and
    Y have the mosaic's logical size and the layer's stored size (PyramidType 2, several
    subblocks), then a new directory listing every subblock, which the file header points to.
    """
    height, width = level0.shape
    with pyczi.create_czi(str(path)) as czi:
        for y0 in range(0, height, 512):
            for x0 in range(0, width, 512):
                frame = np.ascontiguousarray(level0[y0 : y0 + 512, x0 : x0 + 512])
                czi.write(frame[:, :, None], location=(x0, y0), plane={"C": 0})
    raw = bytearray(path.read_bytes())
    (directory_at,) = struct.unpack_from("<q", raw, SEGMENT.size + 52)
    _ident, allocated, used = SEGMENT.unpack_from(raw, directory_at)
    start = directory_at + SEGMENT.size
    entries = _entries(bytes(raw[start : start + (used or allocated)]))
    # Each pyramid subblock gets an M index of its own, after the frames'.
    mosaic = 1 + max(struct.unpack_from("<i", e, _dimensions(e)[b"M"] + 4)[0] for e in entries)
    for number, stored in enumerate(layers.values()):
        entry = bytearray(entries[0])
        entry[22] = 2  # PyramidType: built from several subblocks
        struct.pack_into("<q", entry, 6, len(raw))  # where the subblock segment starts
        where = _dimensions(entry)
        struct.pack_into("<4siifi", entry, where[b"X"], b"X", 0, width, 0.0, stored.shape[1])
        struct.pack_into("<4siifi", entry, where[b"Y"], b"Y", 0, height, 0.0, stored.shape[0])
        struct.pack_into("<4siifi", entry, where[b"M"], b"M", mosaic + number, 1, 0.0, 1)
        data = np.ascontiguousarray(stored, dtype=level0.dtype).tobytes()
        fields = struct.pack("<iiq", 0, 0, len(data)) + bytes(entry)
        raw += _segment(b"ZISRAWSUBBLOCK\0\0", fields + bytes(max(0, 256 - len(fields))) + data)
        entries.append(entry)
    listing = struct.pack("<i", len(entries)) + bytes(124) + b"".join(map(bytes, entries))
    struct.pack_into("<q", raw, SEGMENT.size + 52, len(raw))
    raw += _segment(b"ZISRAWDIRECTORY\0", listing)
    path.write_bytes(bytes(raw))


def test_the_files_own_pyramid_is_copied_as_it_is(tmp_path: Path, opened: Any) -> None:
    level0 = RNG.integers(0, 4000, (1024, 1536), dtype=np.uint16)
    # Layers that are not 2 × 2 means of the level above: copied, they stay as they are.
    layers = {f: (level0[::f, ::f] + 7).astype(np.uint16) for f in (2, 4)}
    write_pyramid_czi(tmp_path / "pyramid.czi", level0, layers)
    (reader,) = opened(tmp_path / "pyramid.czi")
    assert reader.meta.levels == [(512, 768), (256, 384)]
    assert np.array_equal(read_plane(reader, 0, 0, 0, BAND), level0)  # layers left out
    np.testing.assert_array_equal(reader.read_level_band(1, 0, 0, 0, 100, 356), layers[2][100:356])
    with pytest.raises(ValueError):
        reader.read_level_band(3, 0, 0, 0, 0, 1)

    home = tmp_path / "home"
    result = CliRunner().invoke(
        main, ["--home", str(home), "import", str(tmp_path / "pyramid.czi"), "--json"]
    )
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(home / "pixels" / "1.ome.zarr"), mode="r")
    stored = [np.asarray(group[str(n)])[0, 0, 0] for n in range(4)]
    assert [s.shape for s in stored] == [(1024, 1536), (512, 768), (256, 384), (128, 192)]
    np.testing.assert_array_equal(stored[0], level0)
    np.testing.assert_array_equal(stored[1], layers[2])
    np.testing.assert_array_equal(stored[2], layers[4])
    quads = layers[4].astype(np.int64).reshape(128, 2, 192, 2).sum(axis=(1, 3))
    np.testing.assert_array_equal(stored[3], (quads + 2) // 4)  # computed below the file's own


@pytest.mark.parametrize("path", SAMPLE_PARAMS)
def test_a_czi_without_pyramid_subblocks_lists_no_levels(path: Path, opened: Any) -> None:
    for reader in opened(path):
        assert reader.meta.levels == []
