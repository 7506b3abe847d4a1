"""Imaris IMS: files written here with h5py in the layout Imaris writes (chunk-padded data,
text attributes as arrays of characters, several resolution levels) must read back exactly,
each level as stored, through open_fileset."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from coverslip.errors import ImportFailed
from coverslip.formats import Pyramidal, open_fileset
from tests.helpers import opened

RNG = np.random.default_rng(5)
CHUNK = (2, 32, 32)
PADDING = 7777  # what the chunk padding holds, so that a read past the image shows


def text(value: object) -> np.ndarray:
    """Return ``value`` as Imaris stores text attributes: an array of one-byte strings."""
    return np.array(list(str(value)), dtype="S1")


def padded(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(-(-n // k) * k for n, k in zip(shape, CHUNK, strict=True))  # type: ignore[return-value]


def write_ims(
    path: Path,
    levels: list[np.ndarray],
    names: tuple[str, ...] = ("DAPI", "GFP"),
    colours: tuple[str, ...] = ("0.000 0.000 1.000", "0.000 1.000 0.000"),
    extent: tuple[float, float, float] = (51.2, 35.0, 6.0),
) -> None:
    """Write TCZYX ``levels`` (finest first) as an Imaris 5.5 file."""
    t_size, c_size, z_size, y_size, x_size = levels[0].shape
    with h5py.File(path, "w") as h5:
        h5.attrs["ImarisDataSet"] = text("ImarisDataSet")
        h5.attrs["ImarisVersion"] = text("5.5.0")
        h5.attrs["DataSetDirectoryName"] = text("DataSet")
        h5.attrs["DataSetInfoDirectoryName"] = text("DataSetInfo")
        h5.attrs["NumberOfDataSets"] = np.array([1], dtype=np.uint32)
        for r, level in enumerate(levels):
            for t in range(t_size):
                for c in range(c_size):
                    group = h5.create_group(
                        f"DataSet/ResolutionLevel {r}/TimePoint {t}/Channel {c}"
                    )
                    stack = level[t, c]
                    for axis, size in zip("ZYX", stack.shape, strict=True):
                        group.attrs[f"ImageSize{axis}"] = text(size)
                    store = np.full(padded(stack.shape), PADDING, dtype=stack.dtype)
                    store[: stack.shape[0], : stack.shape[1], : stack.shape[2]] = stack
                    group.create_dataset("Data", data=store, chunks=CHUNK, compression="gzip")
                    group.create_dataset("Histogram", data=np.zeros(256, dtype=np.uint64))
        image = h5.create_group("DataSetInfo/Image")
        for axis, size in zip("XYZ", (x_size, y_size, z_size), strict=True):
            image.attrs[axis] = text(size)
        for i, length in enumerate(extent):
            image.attrs[f"ExtMin{i}"] = text("-3.5")
            image.attrs[f"ExtMax{i}"] = text(f"{length - 3.5:.3f}")
        image.attrs["Unit"] = text("um")
        image.attrs["RecordingDate"] = text("2024-05-06 07:08:09.000")
        for c in range(c_size):
            channel = h5.create_group(f"DataSetInfo/Channel {c}")
            channel.attrs["Name"] = text(names[c])
            channel.attrs["Color"] = text(colours[c])
            channel.attrs["LSMEmissionWavelength"] = text(461 + 50 * c)
        times = h5.create_group("DataSetInfo/TimeInfo")
        times.attrs["DatasetTimePoints"] = text(t_size)
        for t in range(t_size):
            times.attrs[f"TimePoint{t + 1}"] = text(f"2024-05-06 07:08:{9 + 2 * t:02d}.500")


def random(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 4000, shape, dtype=np.uint16)


def level_plane(reader: Pyramidal, level: int, t: int, c: int, z: int, height: int) -> np.ndarray:
    bands = [
        reader.read_level_band(level, t, c, z, y0, min(height, y0 + 20))
        for y0 in range(0, height, 20)
    ]
    return np.concatenate(bands)


@pytest.fixture
def three_levels(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    # Level 1 and 2 are their own patterns, not 2 × 2 means of level 0: they must be read
    # as stored. Sizes are not chunk multiples, so every level is padded.
    levels = [random((2, 2, 3, 70, 100)), random((2, 2, 3, 35, 50)), random((2, 2, 3, 17, 25))]
    path = tmp_path / "cells.ims"
    write_ims(path, levels)
    return path, levels


def test_metadata_follows_dataset_info(three_levels: tuple[Path, list[np.ndarray]]) -> None:
    path, _levels = three_levels
    with opened(path) as reader:
        meta = reader.meta
        assert meta.format == "ims"
        assert meta.shape == (2, 2, 3, 70, 100)
        assert meta.pixel_type == "uint16"
        assert [ch.name for ch in meta.channels] == ["DAPI", "GFP"]
        assert [ch.color for ch in meta.channels] == ["0000FF", "00FF00"]
        assert [ch.emission_wave for ch in meta.channels] == [461.0, 511.0]
        assert meta.physical_size_x == pytest.approx(51.2 / 100)
        assert meta.physical_size_y == pytest.approx(35.0 / 70)
        assert meta.physical_size_z == pytest.approx(6.0 / 3)
        assert meta.acquired == "2024-05-06T07:08:09"
        assert meta.time_increment == pytest.approx(2.0)
        assert meta.levels == [(35, 50), (17, 25)]
        assert meta.original_metadata["Channel 0|Name"] == "DAPI"
        assert meta.original_metadata["Image|Unit"] == "um"


def test_every_level_reads_as_stored_without_its_padding(
    three_levels: tuple[Path, list[np.ndarray]],
) -> None:
    path, levels = three_levels
    with opened(path) as reader:
        assert isinstance(reader, Pyramidal)
        for t in range(2):
            for c in range(2):
                for z in range(3):
                    full = level_plane(reader, 0, t, c, z, 70)
                    np.testing.assert_array_equal(full, levels[0][t, c, z])
                    bands = [reader.read_band(t, c, z, y0, min(70, y0 + 30)) for y0 in (0, 30, 60)]
                    np.testing.assert_array_equal(np.concatenate(bands), levels[0][t, c, z])
                    for level, (height, _width) in enumerate(reader.meta.levels, start=1):
                        stored = level_plane(reader, level, t, c, z, height)
                        assert PADDING not in stored
                        np.testing.assert_array_equal(stored, levels[level][t, c, z])
        mean = levels[0][0, 0, 0].reshape(35, 2, 50, 2).mean(axis=(1, 3))
        assert not np.allclose(level_plane(reader, 1, 0, 0, 0, 35), mean)


def test_a_level_that_halves_z_is_left_to_the_importer(tmp_path: Path) -> None:
    levels = [random((1, 1, 8, 64, 64)), random((1, 1, 8, 32, 32)), random((1, 1, 4, 16, 16))]
    path = tmp_path / "thick.ims"
    write_ims(path, levels, names=("only",), colours=("1.000 1.000 1.000",))
    with opened(path) as reader:
        assert reader.meta.levels == [(32, 32)]
        assert reader.meta.channels[0].color == "FFFFFF"
        assert isinstance(reader, Pyramidal)
        np.testing.assert_array_equal(level_plane(reader, 1, 0, 0, 7, 32), levels[1][0, 0, 7])


def test_float_pixels_read_back(tmp_path: Path) -> None:
    data = RNG.standard_normal((1, 1, 2, 40, 33)).astype(np.float32)
    path = tmp_path / "float.ims"
    write_ims(path, [data], names=("ratio",), colours=("1 0 0",))
    with opened(path) as reader:
        assert reader.meta.pixel_type == "float32"
        assert reader.meta.levels == []
        np.testing.assert_array_equal(reader.read_band(0, 0, 1, 0, 40), data[0, 0, 1])


def test_a_truncated_file_fails_with_its_reason(
    three_levels: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    path, _levels = three_levels
    data = path.read_bytes()
    cut = tmp_path / "cut.ims"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailed, match="truncated") as info, opened(cut) as reader:
        meta = reader.meta
        reader.read_band(meta.size_t - 1, meta.size_c - 1, meta.size_z - 1, 0, meta.size_y)
    assert str(tmp_path) not in str(info.value)


def test_an_hdf5_file_that_is_not_imaris_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "other.ims"
    with h5py.File(path, "w") as h5:
        h5["data"] = np.zeros((4, 4))
    with pytest.raises(ImportFailed, match="not an Imaris file"):
        open_fileset(path)
