"""OME-Zarr filesets: bioformats2raw series, HCS plates, labels, the file's own levels and the
quirks of early writers, checked against the real samples and against arrays read
independently with zarr-python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, Pyramidal, Reader, open_fileset
from tests.helpers import SAMPLES, read_plane

CMU = SAMPLES / "ome-zarr" / "CMU-1-Small-Region.ome.zarr"
BLOBS = SAMPLES / "ome-zarr" / "blobs_image_v04.ome.zarr"
IDR_PLATE = SAMPLES / "ome-zarr" / "idr-2551-plate-v0.4-metadata-only.zarr"
RNG = np.random.default_rng(12)


def sample(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"sample {path.name} is not here")
    return path


def opened(fileset: Fileset, index: int) -> Reader:
    return fileset.images[index]()


def read_level(reader: Reader, level: int, band: int = 700) -> np.ndarray:
    """Return level ``level`` (0 = full size) as TCZYX, read band by band like the importer."""
    meta = reader.meta
    height, width = (meta.size_y, meta.size_x) if level == 0 else meta.levels[level - 1]
    out = np.zeros((meta.size_t, meta.size_c, meta.size_z, height, width), meta.pixel_type)
    for t in range(meta.size_t):
        for c in range(meta.size_c):
            for z in range(meta.size_z):
                out[t, c, z] = read_plane(reader, t, c, z, band, level)
    return out


def stored(path: Path) -> np.ndarray:
    """Return the array at ``path`` read with zarr-python alone."""
    return np.asarray(zarr.open_array(path, mode="r")[...])


# Writers ------------------------------------------------------------------------------------


def ome_attrs(zarr_format: int, attrs: dict[str, Any]) -> dict[str, Any]:
    if zarr_format == 3:
        return {"ome": {"version": "0.5", **attrs}}
    return attrs


def write_image(
    path: Path,
    levels: list[np.ndarray],
    zarr_format: int = 3,
    axes: str = "cyx",
    unit: str | None = "micrometer",
    scale: float = 0.5,
    omero: dict[str, Any] | None = None,
) -> None:
    """Write an OME-Zarr image whose levels are exactly ``levels`` (no relation assumed)."""
    kinds = {"t": "time", "c": "channel"}
    datasets = []
    for index, level in enumerate(levels):
        factor = levels[0].shape[-1] / level.shape[-1]
        values = [1.0 if a in "tc" else scale * (factor if a in "yx" else 1) for a in axes]
        datasets.append(
            {"path": str(index), "coordinateTransformations": [{"type": "scale", "scale": values}]}
        )
    multiscale: dict[str, Any] = {
        "name": path.name.removesuffix(".zarr"),
        "axes": [
            {
                "name": a,
                "type": kinds.get(a, "space"),
                **({"unit": unit} if unit and a in "zyx" else {}),
            }
            for a in axes
        ],
        "datasets": datasets,
    }
    if zarr_format == 2:
        multiscale["version"] = "0.4"
    attrs: dict[str, Any] = {"multiscales": [multiscale]}
    if omero:
        attrs["omero"] = omero
    group = zarr.open_group(
        path,
        mode="w",
        zarr_format=zarr_format,  # type: ignore[arg-type]
        attributes=ome_attrs(zarr_format, attrs),
    )
    for index, level in enumerate(levels):
        chunks = (*([1] * (level.ndim - 2)), 32, 32)
        group.create_array(str(index), data=level, chunks=chunks)


def group(path: Path, zarr_format: int, attrs: dict[str, Any]) -> None:
    zarr.open_group(
        path,
        mode="w",
        zarr_format=zarr_format,  # type: ignore[arg-type]
        attributes=ome_attrs(zarr_format, attrs),
    )


def write_plate(
    path: Path, zarr_format: int = 3, well_paths: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Write a 2x2-well plate of 2 fields each; return the field data by "A1 field 0"."""
    rows, columns = ["A", "B"], ["1", "2"]
    paths = well_paths or [f"{r}/{c}" for r in rows for c in columns]
    wells = [{"path": p, "rowIndex": i // 2, "columnIndex": i % 2} for i, p in enumerate(paths)]
    plate = {
        "name": "screen",
        "rows": [{"name": r} for r in rows],
        "columns": [{"name": c} for c in columns],
        "wells": wells[::-1],  # listed in any order; read in row-major order
        "acquisitions": [{"id": 7, "name": "first run"}, {"id": 9, "name": "second run"}],
        "field_count": 2,
    }
    group(path, zarr_format, {"plate": plate})
    data = {}
    if well_paths:
        return data
    for well in wells:
        folder = path / well["path"]
        images = [{"path": str(f), "acquisition": (7, 9)[f]} for f in range(2)]
        group(folder, zarr_format, {"well": {"images": images}})
        for field in range(2):
            pixels = RNG.integers(0, 4000, (2, 40, 50), dtype="uint16")
            write_image(folder / str(field), [pixels], zarr_format)
            name = f"{rows[well['rowIndex']]}{columns[well['columnIndex']]} field {field}"
            data[name] = pixels
    return data


# Real samples -------------------------------------------------------------------------------


def test_bioformats2raw_sample_every_series_is_an_image() -> None:
    root = sample(CMU)
    fileset = open_fileset(root)
    try:
        assert fileset.format == "ome-zarr" and fileset.plate is None
        assert len(fileset.images) == 3
        image = opened(fileset, 0)
        meta = image.meta
        assert (meta.shape, meta.pixel_type, meta.kind) == ((1, 3, 1, 2967, 2220), "uint8", "image")
        assert [ch.name for ch in meta.channels] == ["Channel 0", "Channel 1", "Channel 2"]
        assert [ch.color for ch in meta.channels] == ["FF0000", "00FF00", "0000FF"]
        assert meta.physical_size_x == pytest.approx(0.499)
        assert meta.physical_size_y == pytest.approx(0.499)
        assert meta.physical_size_z is None  # z has no unit
        assert (meta.objective, meta.acquired) == ("20x", "2009-12-29T09:59:15")
        assert meta.original_metadata["Series 0 MPP"] == "0.4990"
        # The file's own level 1 (not a 2x2 reduction of level 0), read as stored.
        assert meta.levels == [(768, 574)]
        np.testing.assert_array_equal(read_level(image, 0), stored(root / "0" / "0"))
        np.testing.assert_array_equal(read_level(image, 1), stored(root / "0" / "1"))
        image.close()
        # Aperio's descriptions name series 1 the label (387x463) and 2 the macro.
        for index, kind, shape, levels in (
            (1, "label", (1, 3, 1, 463, 387), 1),
            (2, "macro", (1, 3, 1, 431, 1280), 3),
        ):
            associated = opened(fileset, index)
            meta = associated.meta
            assert (meta.kind, meta.series, meta.shape) == (kind, kind, shape)
            assert meta.name == f"CMU-1-Small-Region {kind}"
            assert (meta.physical_size_x, meta.physical_size_y) == (None, None)  # unitless
            assert len(meta.levels) == levels
            for level in range(levels + 1):
                expected = stored(root / str(index) / str(level))
                np.testing.assert_array_equal(read_level(associated, level), expected)
            associated.close()
    finally:
        fileset.close()


def test_blobs_sample_unitless_with_integer_channel_labels() -> None:
    root = sample(BLOBS)
    fileset = open_fileset(root)
    image = opened(fileset, 0)
    meta = image.meta
    assert (meta.shape, meta.pixel_type) == ((1, 3, 1, 12, 12), "float64")
    assert [ch.name for ch in meta.channels] == ["0", "1", "2"]
    assert (meta.physical_size_x, meta.physical_size_y, meta.physical_size_z) == (None,) * 3
    assert (meta.levels, meta.labels) == ([], [])
    np.testing.assert_array_equal(read_level(image, 0)[0, :, 0], stored(root / "0"))
    image.close()
    fileset.close()


def test_idr_plate_sample_structure_without_pixels() -> None:
    root = sample(IDR_PLATE)
    fileset = open_fileset(root)
    plate = fileset.plate
    assert plate is not None
    assert plate.name == "JL_120731_S6A"
    assert plate.rows == list("ABCDEFGH")
    assert plate.columns == [str(n) for n in range(1, 13)]
    assert len(plate.wells) == 96
    assert {(w.row, w.column) for w in plate.wells} == {(r, c) for r in range(8) for c in range(12)}
    assert all(len(well.fields) == 6 for well in plate.wells)
    assert len(fileset.images) == 576
    assert sorted(i for well in plate.wells for i in well.fields) == list(range(576))
    assert len(plate.acquisitions) == 6 and "Meas_01(2012-07-31_10-41-12)" in plate.acquisitions
    a2 = next(w for w in plate.wells if (w.row, w.column) == (0, 1))
    # Field 2 of A2 has its multiscales but no arrays; every field fails with its name.
    with pytest.raises(ImportFailed, match=r"^A2 field 2: level '0' is not a Zarr array"):
        fileset.images[a2.fields[2]]()
    for index, opener in enumerate(fileset.images):
        with pytest.raises(ImportFailed, match=r"^[A-H]\d+ field [0-5]: "):
            opener()
        assert index < 576
    fileset.close()


# Made here ----------------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plate_fields_are_images(tmp_path: Path, zarr_format: int) -> None:
    data = write_plate(tmp_path / "screen.zarr", zarr_format)
    fileset = open_fileset(tmp_path / "screen.zarr")
    plate = fileset.plate
    assert plate is not None
    assert (plate.name, plate.rows, plate.columns) == ("screen", ["A", "B"], ["1", "2"])
    assert plate.acquisitions == ["first run", "second run"]
    assert [(w.row, w.column, w.fields) for w in plate.wells] == [
        (0, 0, [0, 1]),
        (0, 1, [2, 3]),
        (1, 0, [4, 5]),
        (1, 1, [6, 7]),
    ]
    names = ["A1", "A2", "B1", "B2"]
    for index in range(8):
        reader = opened(fileset, index)
        series = f"{names[index // 2]} field {index % 2}"
        assert (reader.meta.series, reader.meta.name) == (series, f"screen {series}")
        assert (
            reader.meta.original_metadata["Acquisition"] == ("first run", "second run")[index % 2]
        )
        assert reader.meta.shape == (1, 2, 1, 40, 50)
        assert reader.meta.physical_size_x == pytest.approx(0.5)
        np.testing.assert_array_equal(read_level(reader, 0, band=16)[0, :, 0], data[series])
        reader.close()
    fileset.close()


def test_well_on_its_own_is_a_fileset_of_fields(tmp_path: Path) -> None:
    data = write_plate(tmp_path / "screen.zarr")
    fileset = open_fileset(tmp_path / "screen.zarr" / "B" / "2")
    assert fileset.plate is None and len(fileset.images) == 2
    reader = opened(fileset, 1)
    assert reader.meta.series == "field 1"
    np.testing.assert_array_equal(read_level(reader, 0)[0, :, 0], data["B2 field 1"])


def test_own_levels_are_read_as_stored(tmp_path: Path) -> None:
    full = RNG.integers(0, 60000, (2, 3, 90, 70), dtype="uint16")
    # Levels unrelated to any 2x2 mean of the one before: proof that they are copied.
    half = RNG.integers(0, 60000, (2, 3, 45, 35), dtype="uint16")
    quarter = RNG.integers(0, 60000, (2, 3, 23, 18), dtype="uint16")
    path = tmp_path / "pyramid.zarr"
    write_image(path, [full, half, quarter], 3, "czyx", "nanometer", 250.0)
    fileset = open_fileset(path)
    reader = opened(fileset, 0)
    assert isinstance(reader, Pyramidal)
    assert reader.meta.levels == [(45, 35), (23, 18)]
    assert reader.meta.physical_size_x == pytest.approx(0.25)
    assert reader.meta.physical_size_z == pytest.approx(0.25)
    for level, expected in enumerate((full, half, quarter)):
        np.testing.assert_array_equal(read_level(reader, level, band=20)[0], expected)


def test_levels_that_do_not_reduce_are_left_to_the_importer(tmp_path: Path) -> None:
    full = RNG.integers(0, 255, (64, 64), dtype="uint8")
    path = tmp_path / "odd.zarr"
    # Level 1 is fine; level 2 is larger than level 1 and is not taken as the file's own.
    write_image(path, [full, full[::2, ::2], full], 2, "yx")
    reader = opened(open_fileset(path), 0)
    assert reader.meta.levels == [(32, 32)]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_labels_are_listed(tmp_path: Path, zarr_format: int) -> None:
    path = tmp_path / "cells.zarr"
    image = RNG.integers(0, 255, (2, 30, 30), dtype="uint8")
    write_image(path, [image], zarr_format)
    group(path / "labels", zarr_format, {"labels": ["nuclei", "cells", "ghost"]})
    for name in ("nuclei", "cells"):
        mask = (image[0] > 128).astype("uint8")
        write_image(path / "labels" / name, [mask], zarr_format, "yx")
    meta = opened(open_fileset(path), 0).meta
    assert meta.labels == ["nuclei", "cells"]  # "ghost" is listed but not there


def test_bioformats2raw_numbered_groups_and_ome_xml(tmp_path: Path) -> None:
    root = tmp_path / "converted.zarr"
    group(root, 2, {"bioformats2raw.layout": 3})
    first = RNG.integers(0, 4000, (2, 20, 30), dtype="uint16")
    second = RNG.integers(0, 255, (1, 10, 12), dtype="uint8")
    write_image(root / "0", [first], 2, unit=None, scale=1.0)
    write_image(root / "1", [second], 2, unit=None, scale=1.0)
    fileset = open_fileset(root)  # no OME group: the numbered groups are the series
    assert [opened(fileset, i).meta.name for i in range(len(fileset.images))] == ["0", "1"]
    group(root / "OME", 2, {"series": ["0", "1"]})
    (root / "OME" / "METADATA.ome.xml").write_text(
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0" Name="tile scan"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" '
        'Type="uint16" SizeX="30" SizeY="20" SizeZ="1" SizeC="2" SizeT="1" PhysicalSizeX="250" '
        'PhysicalSizeXUnit="nm" PhysicalSizeY="0.25">'
        '<Channel ID="Channel:0:0" Name="DAPI" Color="65535" EmissionWavelength="461"/>'
        '<Channel ID="Channel:0:1" Name="GFP" Color="16711935"/></Pixels></Image>'
        '<Image ID="Image:1" Name="overview"><Pixels ID="Pixels:1" DimensionOrder="XYZCT" '
        'Type="uint8" SizeX="12" SizeY="10" SizeZ="1" SizeC="1" SizeT="1"/></Image></OME>'
    )
    fileset = open_fileset(root)
    meta = opened(fileset, 0).meta
    assert (meta.name, meta.series, meta.kind) == ("tile scan", "series 0", "image")
    assert [(ch.name, ch.color, ch.emission_wave) for ch in meta.channels] == [
        ("DAPI", "0000FF", 461.0),
        ("GFP", "00FF00", None),
    ]
    assert (meta.physical_size_x, meta.physical_size_y) == (pytest.approx(0.25),) * 2
    second_meta = opened(fileset, 1).meta
    assert (second_meta.kind, second_meta.series) == ("overview", "overview")
    np.testing.assert_array_equal(read_level(opened(fileset, 1), 0)[0, :, 0], second)


@pytest.mark.parametrize(
    ("dtype", "fill"), [("<u2", "0"), ("<f4", "NaN"), ("<i2", "NaN"), ("<u1", "")]
)
def test_string_fill_value_of_early_writers(tmp_path: Path, dtype: str, fill: str) -> None:
    path = tmp_path / "early.zarr"
    data = np.arange(64 * 40, dtype=dtype).reshape(64, 40)
    write_image(path, [data], 2, "yx")
    zarray = path / "0" / ".zarray"
    meta = json.loads(zarray.read_text())
    meta["fill_value"] = fill
    zarray.write_text(json.dumps(meta))
    reader = opened(open_fileset(path), 0)
    np.testing.assert_array_equal(read_level(reader, 0, band=24)[0, 0, 0], data)
    # A chunk that is not there reads as the fill value, as Zarr says.
    (path / "0" / "0.0").unlink()
    band = read_level(reader, 0)[0, 0, 0]
    expected = np.nan if fill == "NaN" and dtype == "<f4" else 0
    assert np.isnan(band[0, 0]) if expected is np.nan else band[0, 0] == expected


def test_unitless_axes_have_no_physical_size(tmp_path: Path) -> None:
    path = tmp_path / "unitless.zarr"
    write_image(path, [np.zeros((3, 16, 16), "uint8")], 3, "zyx", unit=None, scale=2.0)
    meta = opened(open_fileset(path), 0).meta
    assert (meta.physical_size_x, meta.physical_size_y, meta.physical_size_z) == (None,) * 3


# Security -----------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Return another image beside the one under test, which no metadata may name."""
    path = tmp_path / "other"
    write_image(path, [np.full((1, 8, 8), 7, "uint8")], 3)
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "inner-dotdot"])
def test_plate_well_path_must_stay_inside(tmp_path: Path, outside: Path, how: str) -> None:
    path = tmp_path / "plate.zarr"
    escape = {"dotdot": "../other", "absolute": str(outside), "inner-dotdot": "A/../../other"}[how]
    write_plate(path, 3, ["A/1", "A/2", "B/1", escape])
    with pytest.raises(ImportFailed, match="leaves the image folder") as caught:
        open_fileset(path)
    assert str(tmp_path) not in str(caught.value).replace(escape, "")


def test_plate_field_path_must_stay_inside_its_well(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "plate.zarr"
    write_plate(path, 3)
    well = {"well": {"images": [{"path": "0"}, {"path": "../../../other"}]}}
    (path / "B" / "2" / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"ome": well}})
    )
    with pytest.raises(ImportFailed, match="leaves the image folder"):
        open_fileset(path)


@pytest.mark.parametrize("escape", ["../other", "ABSOLUTE", "0/../../other"])
def test_bioformats2raw_series_path_must_stay_inside(
    tmp_path: Path, outside: Path, escape: str
) -> None:
    root = tmp_path / "converted.zarr"
    group(root, 2, {"bioformats2raw.layout": 3})
    write_image(root / "0", [np.zeros((1, 8, 8), "uint8")], 2)
    series = str(outside) if escape == "ABSOLUTE" else escape
    group(root / "OME", 2, {"series": ["0", series]})
    with pytest.raises(ImportFailed, match="leaves the image folder"):
        open_fileset(root)


def test_label_name_must_stay_inside(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "cells.zarr"
    write_image(path, [np.zeros((1, 8, 8), "uint8")], 3)
    group(path / "labels", 3, {"labels": ["../../other"]})
    fileset = open_fileset(path)
    with pytest.raises(ImportFailed, match="leaves the image folder"):
        fileset.images[0]()


def test_symlinked_field_is_refused(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "plate.zarr"
    write_plate(path, 3)
    target = path / "A" / "1" / "1"
    for entry in sorted(target.rglob("*"), reverse=True):
        entry.rmdir() if entry.is_dir() else entry.unlink()
    target.rmdir()
    target.symlink_to(outside)
    with pytest.raises(ImportFailed, match="links outside its folder"):
        open_fileset(path)
