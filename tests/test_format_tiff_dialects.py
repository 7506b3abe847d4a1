"""TIFF dialects, multi-series files, the file's own pyramid and multi-file OME-TIFF sets.

Real samples from instruments (never copied into the repository) are checked against the
values of the samples' manifest and against planes read independently with tifffile; the
rest are made here with tifffile."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, Pyramidal, Reader, open_fileset
from coverslip.formats import tiff_meta as dialects
from tests.helpers import SAMPLES

RNG = np.random.default_rng(12)


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {name} is not here")
    return path


def read_all(reader: Reader, band: int = 64) -> np.ndarray:
    """Return the whole TCZYX image, assembled band by band as the importer reads it."""
    meta = reader.meta
    out = np.zeros(meta.shape, dtype=meta.pixel_type)
    for t in range(meta.size_t):
        for c in range(meta.size_c):
            for z in range(meta.size_z):
                for y0 in range(0, meta.size_y, band):
                    y1 = min(meta.size_y, y0 + band)
                    out[t, c, z, y0:y1] = reader.read_band(t, c, z, y0, y1)
    return out


def images(path: Path) -> tuple[Fileset, list[Reader]]:
    fileset = open_fileset(path)
    return fileset, [open_image() for open_image in fileset.images]


def close(fileset: Fileset, readers: list[Reader]) -> None:
    for reader in readers:
        reader.close()
    fileset.close()


# Samples ------------------------------------------------------------------------------------


def test_imagej_composite_sample() -> None:
    path = sample("tiff/5channel.tif")
    fileset, (reader,) = images(path)
    try:
        meta = reader.meta
        assert (meta.shape, meta.pixel_type, meta.series) == ((1, 5, 1, 64, 64), "uint8", None)
        assert meta.original_metadata["ImageJ"] == "1.40g"
        expected = tifffile.imread(path)  # CYX
        np.testing.assert_array_equal(read_all(reader)[0, :, 0], expected)
    finally:
        close(fileset, [reader])


def test_metamorph_sample() -> None:
    path = sample("tiff/MetamorphImage.tif")
    fileset, (reader,) = images(path)
    try:
        meta = reader.meta
        assert (meta.shape, meta.pixel_type) == ((1, 1, 1, 520, 696), "uint16")
        assert meta.physical_size_x == pytest.approx(0.645)
        assert meta.physical_size_y == pytest.approx(0.645)
        assert meta.channels[0].name == "Cy5"
        assert meta.channels[0].excitation_wave == pytest.approx(675)
        assert meta.objective == "20x Plan Fluor ELWD"
        assert meta.acquired is not None and meta.acquired.startswith("2010-03-05T12:08")
        assert meta.original_metadata["CalibrationUnits"] == "um"
        np.testing.assert_array_equal(read_all(reader)[0, 0, 0], tifffile.imread(path))
    finally:
        close(fileset, [reader])


def test_imagej_palette_z_stack_sample() -> None:
    path = sample("tiff/colocsample1b-green.tif")
    fileset, (reader,) = images(path)
    try:
        meta = reader.meta
        assert (meta.shape, meta.pixel_type) == ((1, 1, 33, 152, 172), "uint8")
        assert meta.physical_size_x == pytest.approx(0.3282, abs=1e-4)
        assert meta.physical_size_z == pytest.approx(0.646, abs=1e-3)
        assert meta.channels[0].name == "Ch2-T1"
        # the palette's indices are the data, not the colours they map to
        np.testing.assert_array_equal(read_all(reader)[0, 0], tifffile.imread(path))
    finally:
        close(fileset, [reader])


def test_imagej_unit_pixel_is_no_physical_size() -> None:
    path = sample("tiff/multich_multi_time.tif")
    fileset, (reader,) = images(path)
    try:
        meta = reader.meta
        assert (meta.shape, meta.pixel_type) == ((2, 3, 501, 11, 13), "uint16")
        assert (meta.physical_size_x, meta.physical_size_y, meta.physical_size_z) == (None,) * 3
        assert meta.time_increment == pytest.approx(1.0)
        # slice labels are plane numbers here; the names come from Bio-Formats' Info
        assert [ch.name for ch in meta.channels] == ["LLS1", "LLS2", "LLS1_2"]
        assert [ch.excitation_wave for ch in meta.channels] == [488, 488, 561]
        assert len(meta.original_metadata) <= dialects.MAX_KEYS
        assert all(len(v) <= dialects.MAX_VALUE for v in meta.original_metadata.values())
        expected = tifffile.imread(path)  # TZCYX
        got = np.stack([reader.read_band(1, c, 400, 0, 11) for c in range(3)])
        np.testing.assert_array_equal(got, expected[1, 400])
    finally:
        close(fileset, [reader])


def test_olympus_sis_sample_has_two_series() -> None:
    path = sample("tiff/olympus_SIS.tif")
    fileset, readers = images(path)
    try:
        assert len(readers) == 2
        rgb, grey = (reader.meta for reader in readers)
        assert (rgb.shape, rgb.pixel_type, rgb.series) == ((1, 3, 1, 101, 112), "uint8", "series 0")
        assert (grey.shape, grey.pixel_type, grey.series) == (
            (1, 1, 1, 101, 112),
            "uint16",
            "series 1",
        )
        # sis_metadata gives metres per pixel: a TEM image at 600,000x
        assert grey.physical_size_x == pytest.approx(2.3928e-5, rel=1e-3)
        assert grey.original_metadata["magnification"] == "600000.0"
        with tifffile.TiffFile(path) as tif:
            first, second = tif.series[0].asarray(), tif.series[1].asarray()
        np.testing.assert_array_equal(read_all(readers[0])[0, :, 0], np.moveaxis(first, 2, 0))
        np.testing.assert_array_equal(read_all(readers[1])[0, 0, 0], second)
    finally:
        close(fileset, readers)


def test_ome_multi_channel_z_sample() -> None:
    path = sample("ome-tiff/multi-channel-z-series.ome.tif")
    fileset, (reader,) = images(path)
    try:
        meta = reader.meta
        assert (meta.format, meta.shape, meta.pixel_type) == (
            "ome-tiff",
            (1, 3, 5, 167, 439),
            "int8",
        )
        assert meta.physical_size_x is None  # the OME-XML gives none
        np.testing.assert_array_equal(read_all(reader)[0], tifffile.imread(path))
    finally:
        close(fileset, [reader])


def test_qptiff_sample() -> None:
    path = sample("qptiff/small_vectra.qptiff")
    fileset, readers = images(path)
    try:
        metas = [reader.meta for reader in readers]
        assert [m.kind for m in metas] == ["image", "thumbnail", "overview", "label"]
        main = metas[0]
        assert (main.shape, main.pixel_type, main.series) == (
            (1, 3, 1, 1440, 1920),
            "uint8",
            "Baseline",
        )
        assert [(ch.name, ch.color) for ch in main.channels] == [
            ("DAPI", "0000FF"),
            ("FITC", "00FF00"),
            ("Cy3", "FFFF00"),
        ]
        assert main.physical_size_x == pytest.approx(0.4965, abs=1e-4)
        assert main.objective == "10x"
        assert main.original_metadata["SlideID"] == "RTM61_1"
        with tifffile.TiffFile(path) as tif:
            planes = tif.series[0].asarray()
            thumb = tif.series[1].asarray()
        np.testing.assert_array_equal(read_all(readers[0], band=512)[0, :, 0], planes)
        np.testing.assert_array_equal(read_all(readers[1])[0, :, 0], np.moveaxis(thumb, 2, 0))
    finally:
        close(fileset, readers)


@pytest.mark.parametrize("opened", ["multifile-Z3.ome.tiff", "multifile.companion.ome"])
def test_multifile_sample_is_one_image(opened: str) -> None:
    folder = sample("ome-tiff/multifile")
    fileset, (reader,) = images(folder / opened)
    try:
        assert fileset.format == "ome-tiff"
        assert fileset.files[0] == folder / opened
        assert sorted(p.name for p in fileset.files) == sorted(p.name for p in folder.iterdir())
        meta = reader.meta
        assert (meta.shape, meta.pixel_type, meta.name) == ((1, 1, 5, 24, 18), "uint8", "multifile")
        assert meta.acquired == "2010-03-02T15:08:59"
        expected = np.stack(
            [tifffile.imread(folder / f"multifile-Z{z}.ome.tiff") for z in range(1, 6)]
        )
        np.testing.assert_array_equal(read_all(reader)[0, 0], expected)
    finally:
        close(fileset, [reader])


def test_multifile_sample_with_a_member_gone(tmp_path: Path) -> None:
    folder = sample("ome-tiff/multifile")
    for member in folder.iterdir():
        shutil.copy(member, tmp_path / member.name)
    (tmp_path / "multifile-Z4.ome.tiff").unlink()
    for opened in ("multifile-Z1.ome.tiff", "multifile.companion.ome"):
        with pytest.raises(ImportFailed, match=r"multifile-Z4\.ome\.tiff is missing"):
            open_fileset(tmp_path / opened)
    (tmp_path / "multifile.companion.ome").unlink()
    with pytest.raises(ImportFailed, match=r"multifile\.companion\.ome is missing"):
        open_fileset(tmp_path / "multifile-Z2.ome.tiff")


# Made here ----------------------------------------------------------------------------------


def write_pyramid(path: Path, data: np.ndarray, levels: list[np.ndarray], ome: bool) -> None:
    """Write ``data`` (CYX) tiled, with ``levels`` as SubIFDs (OME) or reduced pages (plain)."""
    options: dict[str, Any] = {"tile": (64, 64), "compression": "zlib", "photometric": "minisblack"}
    with tifffile.TiffWriter(path, bigtiff=True, ome=ome) as tif:
        if ome:
            tif.write(data, subifds=len(levels), metadata={"axes": "CYX", "Name": "pyr"}, **options)
            for level in levels:
                tif.write(level, subfiletype=1, **options)
        else:
            tif.write(data, **options)
            for level in levels:
                tif.write(level, subfiletype=1, **options)


@pytest.mark.parametrize("ome", [True, False], ids=["ome-subifds", "plain-reduced-pages"])
def test_own_pyramid_levels_are_read_as_stored(tmp_path: Path, ome: bool) -> None:
    data = RNG.integers(0, 65535, (2, 300, 260), dtype=np.uint16)
    # NOTE: a level a 2x2 mean could not produce: a checkerboard and its inverse
    check = (np.indices((150, 130)).sum(axis=0) % 2 * 60000).astype(np.uint16)
    levels = [np.stack([check, 60000 - check]), RNG.integers(0, 9, (2, 75, 65), dtype=np.uint16)]
    path = tmp_path / ("pyr.ome.tif" if ome else "pyr.tif")
    write_pyramid(path, data if ome else data[0], [lv if ome else lv[0] for lv in levels], ome)
    fileset, (reader,) = images(path)
    try:
        assert isinstance(reader, Pyramidal)
        assert reader.meta.levels == [(150, 130), (75, 65)]
        for number, level in enumerate(levels, start=1):
            for c in range(reader.meta.size_c):
                got = np.concatenate(
                    [
                        reader.read_level_band(number, 0, c, 0, y, min(y + 40, level.shape[1]))
                        for y in range(0, level.shape[1], 40)
                    ]
                )
                np.testing.assert_array_equal(got, level[c])
        np.testing.assert_array_equal(read_all(reader)[0, :, 0], data if ome else data[:1])
    finally:
        close(fileset, [reader])


def test_truncated_pyramidal_ome_tiff_fails(tmp_path: Path) -> None:
    data = RNG.integers(0, 255, (1, 300, 260), dtype=np.uint8)
    path = tmp_path / "pyr.ome.tif"
    write_pyramid(path, data, [data[:, ::2, ::2]], ome=True)
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImportFailed):
        fileset, readers = images(cut)
        close(fileset, readers)


def test_imagej_hyperstack_labels_luts_and_timing(tmp_path: Path) -> None:
    data = RNG.integers(0, 4000, (3, 2, 2, 40, 30), dtype=np.uint16)  # TZCYX
    luts = [np.zeros((3, 256), np.uint8), np.zeros((3, 256), np.uint8)]
    luts[0][0] = np.arange(256)  # red ramp
    luts[1][1] = luts[1][2] = np.arange(256)  # cyan ramp
    labels = ["DAPI", "GFP"] + [f"{n}" for n in range(3, 13)]
    tifffile.imwrite(
        tmp_path / "hyper.tif",
        data,
        imagej=True,
        resolution=(1 / 0.4, 1 / 0.4),
        metadata={
            "axes": "TZCYX",
            "unit": "nm",
            "spacing": 800,
            "finterval": 2.5,
            "mode": "composite",
            "Labels": labels,
            "LUTs": luts,
            "Properties": {"Scope": "Example 3000"},
        },
    )
    fileset, (reader,) = images(tmp_path / "hyper.tif")
    try:
        meta = reader.meta
        assert meta.shape == (3, 2, 2, 40, 30)
        assert [(ch.name, ch.color) for ch in meta.channels] == [
            ("DAPI", "FF0000"),
            ("GFP", "00FFFF"),
        ]
        assert meta.physical_size_x == pytest.approx(0.4e-3)
        assert meta.physical_size_z == pytest.approx(0.8)
        assert meta.time_increment == pytest.approx(2.5)
        assert meta.original_metadata["Scope"] == "Example 3000"
        np.testing.assert_array_equal(read_all(reader), np.moveaxis(data, 2, 1))
    finally:
        close(fileset, [reader])


def test_multi_image_ome_tiff_gives_one_image_per_ome_image(tmp_path: Path) -> None:
    first = RNG.integers(0, 255, (2, 50, 40), dtype=np.uint8)
    second = RNG.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(first, photometric="minisblack", metadata={"axes": "CYX", "Name": "well A1"})
        tif.write(
            second,
            photometric="minisblack",
            metadata={
                "axes": "ZYX",
                "Name": "overview",
                "PhysicalSizeX": 2.0,
                "PhysicalSizeY": 2.0,
            },
        )
    fileset, readers = images(path)
    try:
        a, b = (reader.meta for reader in readers)
        assert (a.name, a.series, a.shape) == ("well A1", "well A1", (1, 2, 1, 50, 40))
        assert (b.name, b.series, b.shape, b.kind) == (
            "overview",
            "overview",
            (1, 1, 3, 20, 30),
            "image",
        )
        assert (a.physical_size_x, b.physical_size_x) == (None, pytest.approx(2.0))
        np.testing.assert_array_equal(read_all(readers[0])[0, :, 0], first)
        np.testing.assert_array_equal(read_all(readers[1])[0, 0], second)
    finally:
        close(fileset, readers)


COMPANION = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0">
    <Objective ID="Objective:0" Model="Plan-Apochromat" NominalMagnification="63" LensNA="1.4"/>
  </Instrument>
  <Image ID="Image:0" Name="embryo">
    <AcquisitionDate>2024-05-06T07:08:09</AcquisitionDate>
    <ObjectiveSettings ID="Objective:0"/>
    <Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="30" SizeY="20" SizeZ="3"
        SizeC="1" SizeT="1" PhysicalSizeX="0.1" PhysicalSizeY="0.1" PhysicalSizeZ="0.5">
      <Channel ID="Channel:0" Name="mCherry" ExcitationWavelength="561" EmissionWavelength="610"/>
      {tiffdata}
    </Pixels>
  </Image>
</OME>
"""


def write_companion_set(folder: Path) -> np.ndarray:
    """Write three plain TIFFs of one plane each and a companion naming them; return ZYX."""
    planes = RNG.integers(0, 65535, (3, 20, 30), dtype=np.uint16)
    tiffdata = []
    for z, plane in enumerate(planes):
        tifffile.imwrite(folder / f"embryo_z{z}.tif", plane, photometric="minisblack")
        tiffdata.append(
            f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="1">'
            f'<UUID FileName="embryo_z{z}.tif">urn:uuid:0000000{z}-0000-0000-0000-000000000000</UUID>'
            "</TiffData>"
        )
    (folder / "embryo.companion.ome").write_text(
        COMPANION.replace("{tiffdata}", "\n".join(tiffdata))
    )
    return planes


def test_companion_set_made_here(tmp_path: Path) -> None:
    planes = write_companion_set(tmp_path)
    fileset, (reader,) = images(tmp_path / "embryo.companion.ome")
    try:
        assert [p.name for p in fileset.files] == [
            "embryo.companion.ome",
            "embryo_z0.tif",
            "embryo_z1.tif",
            "embryo_z2.tif",
        ]
        meta = reader.meta
        assert (meta.name, meta.shape, meta.format) == ("embryo", (1, 1, 3, 20, 30), "ome-tiff")
        assert (meta.physical_size_x, meta.physical_size_z) == (
            pytest.approx(0.1),
            pytest.approx(0.5),
        )
        channel = meta.channels[0]
        assert (channel.name, channel.excitation_wave, channel.emission_wave) == (
            "mCherry",
            561,
            610,
        )
        assert meta.objective == "Plan-Apochromat 63x/1.4"
        assert meta.acquired == "2024-05-06T07:08:09"
        np.testing.assert_array_equal(read_all(reader)[0, 0], planes)
    finally:
        close(fileset, [reader])
    (tmp_path / "embryo_z1.tif").unlink()
    with pytest.raises(ImportFailed, match=r"embryo_z1\.tif is missing"):
        open_fileset(tmp_path / "embryo.companion.ome")


def test_companion_naming_files_outside_its_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    tifffile.imwrite(tmp_path / "secret.tif", np.zeros((20, 30), np.uint16))
    tiffdata = '<TiffData IFD="0" PlaneCount="1"><UUID FileName="../secret.tif">urn:uuid:1</UUID></TiffData>'
    text = COMPANION.replace("{tiffdata}", tiffdata).replace('SizeZ="3"', 'SizeZ="1"')
    (tmp_path / "inner" / "evil.companion.ome").write_text(text)
    with pytest.raises(ImportFailed, match="outside its folder"):
        open_fileset(tmp_path / "inner" / "evil.companion.ome")


def test_ome_xml_with_entities_is_refused(tmp_path: Path) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE OME [<!ENTITY a "aaaa">]><OME><Image Name="&a;"/></OME>'
    (tmp_path / "bomb.companion.ome").write_text(bomb)
    with pytest.raises(ImportFailed, match="refused"):
        open_fileset(tmp_path / "bomb.companion.ome")


# Dialect metadata without a sample: the dicts tifffile hands out ---------------------------


def test_lsm_metadata() -> None:
    md = {
        "VoxelSizeX": 2.2e-7,
        "VoxelSizeY": 2.2e-7,
        "VoxelSizeZ": 1.0e-6,
        "TimeIntervall": 0.75,
        "ChannelColors": {
            "Mono": False,
            "Colors": [[0, 255, 0, 0], [255, 0, 0, 0]],
            "ColorNames": ["Ch1", "Ch2"],
        },
        "ScanInformation": {
            "Objective": "Plan-Neofluar 40x/1.3 Oil",
            "Tracks": [{"Name": "Track1"}],
        },
    }
    found = dialects.lsm(md, 2)
    assert found.physical == (pytest.approx(0.22), pytest.approx(0.22), pytest.approx(1.0))
    assert [(ch.name, ch.color) for ch in found.channels] == [("Ch1", "00FF00"), ("Ch2", "FF0000")]
    assert found.objective == "Plan-Neofluar 40x/1.3 Oil"
    assert found.time_increment == pytest.approx(0.75)
    assert found.original["ScanInformation|Tracks #1|Name"] == "Track1"


def test_micromanager_metadata() -> None:
    md = {
        "Summary": {
            "PixelSize_um": 0.108,
            "z-step_um": 0.3,
            "Interval_ms": 500,
            "ChNames": ["DAPI", "GFP"],
            "ChColors": [-16776961, -16711936],
        }
    }
    found = dialects.micromanager(md, 2)
    assert found.physical == (pytest.approx(0.108), pytest.approx(0.108), pytest.approx(0.3))
    assert found.time_increment == pytest.approx(0.5)
    assert [(ch.name, ch.color) for ch in found.channels] == [("DAPI", "0000FF"), ("GFP", "00FF00")]


def test_nih_metadata() -> None:
    found = dialects.nih({"XScale": 4.0, "UnitsID": 1, "AspectRatio": 1.0, "FrameInterval": 0.0})
    assert found.physical == (pytest.approx(0.25), pytest.approx(0.25), None)
    assert dialects.nih({"XScale": 4.0, "UnitsID": 9}).physical == (None, None, None)  # pixels


def test_flatten_caps_keys_and_values() -> None:
    flat = dialects.flatten({"big": "x" * 5000, "many": [{"k": i} for i in range(5000)]})
    assert len(flat["big"]) == dialects.MAX_VALUE
    assert len(flat) == dialects.MAX_KEYS
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(500):
        node["d"] = node = {}
    assert dialects.flatten(deep) == {}  # nesting past MAX_DEPTH is dropped, not a RecursionError
