"""DeltaVision and MRC: the real samples, and maps written here with mrcfile, read band by
band through open_fileset must equal what the reference readers (mrc, mrcfile) read."""

from __future__ import annotations

import warnings
from pathlib import Path

import mrc
import mrcfile
import numpy as np
import pytest

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import open_fileset
from tests.helpers import SAMPLES, opened, read_plane

DV = SAMPLES / "dv" / "toxo.dv"
MAP = SAMPLES / "mrc" / "EMD-3197.map"
BAND = 50
RNG = np.random.default_rng(12)

needs_dv = pytest.mark.skipif(not DV.exists(), reason="the shared DV sample is absent")
needs_map = pytest.mark.skipif(not MAP.exists(), reason="the shared MRC sample is absent")


def assert_truncated_fails(source: Path, tmp_path: Path) -> str:
    data = source.read_bytes()
    cut = tmp_path / f"cut{source.suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailed) as info, opened(cut) as reader:
        meta = reader.meta
        reader.read_band(meta.size_t - 1, meta.size_c - 1, meta.size_z - 1, 0, meta.size_y)
    message = str(info.value)
    assert str(tmp_path) not in message
    return message


@needs_dv
def test_deltavision_sample_has_the_manifests_sizes_and_waves() -> None:
    with opened(DV) as reader:
        meta = reader.meta
        assert meta.format == "dv"
        assert meta.shape == (1, 2, 17, 128, 128)
        assert meta.pixel_type == "uint16"
        assert [ch.name for ch in meta.channels] == ["525 nm", "632 nm"]
        assert [ch.emission_wave for ch in meta.channels] == [525.0, 632.0]
        assert meta.physical_size_x == pytest.approx(0.1326, abs=1e-4)
        assert meta.physical_size_y == pytest.approx(0.1326, abs=1e-4)
        assert meta.physical_size_z == pytest.approx(0.3)
        assert meta.objective == "Olympus 100X/1.35, U Plan Apo, IX70"
        assert meta.original_metadata["header|nc"] == "2"


@needs_dv
def test_deltavision_bands_equal_the_planes_mrc_reads() -> None:
    reference = mrc.imread(str(DV))  # (C, Z, Y, X), the file's ZTW order undone by mrc
    assert reference.shape == (2, 17, 128, 128)
    with opened(DV) as reader:
        for c in range(2):
            for z in range(17):
                np.testing.assert_array_equal(read_plane(reader, 0, c, z, BAND), reference[c, z])


@needs_dv
def test_truncated_deltavision_fails_with_its_reason(tmp_path: Path) -> None:
    assert "truncated" in assert_truncated_fails(DV, tmp_path)


@needs_map
def test_mrc_sample_has_the_manifests_sizes_and_voxel_size() -> None:
    with opened(MAP) as reader:
        meta = reader.meta
        assert meta.format == "mrc"
        assert meta.shape == (1, 1, 20, 20, 20)
        assert meta.pixel_type == "float32"
        assert len(meta.channels) == 1
        # 11.4 Å
        assert meta.physical_size_x == meta.physical_size_y == meta.physical_size_z == 0.00114
        assert meta.original_metadata["label|1"] == "::::EMDATABANK.org::::EMD-3197::::"


@needs_map
def test_mrc_bands_equal_the_sections_mrcfile_reads() -> None:
    reference = mrcfile.read(MAP)
    with opened(MAP) as reader:
        for z in range(20):
            np.testing.assert_array_equal(read_plane(reader, 0, 0, z, BAND), reference[z])


@needs_map
def test_truncated_mrc_fails_with_its_reason(tmp_path: Path) -> None:
    assert "truncated" in assert_truncated_fails(MAP, tmp_path)


def write_map(path: Path, data: np.ndarray, voxel: float | tuple[float, float, float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NOTE: mrcfile warns that float16 is a new mode
        with mrcfile.new(path, overwrite=True) as out:
            out.set_data(data)
            out.voxel_size = voxel


@pytest.mark.parametrize(
    ("dtype", "mode", "pixel_type"),
    [
        ("int16", 1, "int16"),
        ("float32", 2, "float32"),
        ("uint16", 6, "uint16"),
        ("int8", 0, "int8"),
        ("float16", 12, "float32"),
    ],
)
def test_maps_written_by_mrcfile_read_back_exactly(
    tmp_path: Path, dtype: str, mode: int, pixel_type: str
) -> None:
    kind = np.dtype(dtype)
    if kind.kind == "f":
        data = (RNG.standard_normal((5, 130, 70)) * 100).astype(kind)
    else:
        info = np.iinfo(kind)
        data = RNG.integers(info.min, info.max, (5, 130, 70), dtype=kind, endpoint=True)
    path = tmp_path / "volume.mrc"
    write_map(path, data, (2.5, 3.0, 7.0))
    with mrcfile.open(path, header_only=True) as written:
        assert int(written.header.mode) == mode
    expected = mrcfile.read(path)
    with opened(path) as reader:
        meta = reader.meta
        assert meta.shape == (1, 1, 5, 130, 70)
        assert meta.pixel_type == pixel_type
        assert (meta.physical_size_x, meta.physical_size_y, meta.physical_size_z) == (
            0.00025,
            0.0003,
            0.0007,
        )
        for z in range(5):
            np.testing.assert_array_equal(
                read_plane(reader, 0, 0, z, BAND), expected[z].astype(pixel_type)
            )


def test_a_single_image_has_no_z_size(tmp_path: Path) -> None:
    path = tmp_path / "image.mrc"
    data = np.arange(12 * 9, dtype=np.int16).reshape(12, 9)
    write_map(path, data, 1.5)
    with opened(path) as reader:
        assert reader.meta.shape == (1, 1, 1, 12, 9)
        assert reader.meta.physical_size_x == 0.00015
        assert reader.meta.physical_size_z is None
        np.testing.assert_array_equal(read_plane(reader, 0, 0, 0, BAND), data)


def test_a_volume_stack_is_volumes_over_time(tmp_path: Path) -> None:
    path = tmp_path / "stack.mrcs"
    data = RNG.standard_normal((3, 4, 16, 8)).astype(np.float32)
    with mrcfile.new(path) as out:
        out.set_data(data)  # 4-D data makes a volume stack (space group 401)
    with opened(path) as reader:
        assert reader.meta.shape == (3, 1, 4, 16, 8)
        for t in range(3):
            for z in range(4):
                np.testing.assert_array_equal(read_plane(reader, t, 0, z, BAND), data[t, z])


def test_complex_maps_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "fourier.mrc"
    with mrcfile.new(path) as out:
        out.set_data(np.zeros((2, 4, 4), dtype=np.complex64))
    with pytest.raises(UnsupportedFormat, match=r"mode 4 \(complex float32\)"):
        open_fileset(path)


def test_truncated_written_map_fails(tmp_path: Path) -> None:
    path = tmp_path / "whole.mrc"
    write_map(path, np.ones((4, 64, 64), dtype=np.int16), 1.0)
    assert "truncated" in assert_truncated_fails(path, tmp_path)
