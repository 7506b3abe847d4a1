"""DICOM whole-slide series: the real highdicom sample, checked against its frames put together
with pydicom and numpy, and a two-level series with a label and an overview written here with
pydicom, whose level 1 is not a 2x2 mean of level 0 (so reading it exactly proves it is copied)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from coverslip.errors import ImportFailed
from coverslip.formats import Fileset, Pyramidal, Reader, open_fileset
from tests.helpers import SAMPLES, read_channels

SM_IMAGE = SAMPLES / "dicom" / "sm_image.dcm"
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
RNG = np.random.default_rng(21)
BAND = 16


def images(fileset: Fileset) -> list[Reader]:
    return [open_image() for open_image in fileset.images]


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def write_instance(
    path: Path,
    pixels: np.ndarray,
    uids: tuple[str, str, str],
    spacing_mm: float,
    flavor: str = "VOLUME",
    tile: int = 32,
) -> None:
    """Write one uncompressed TILED_FULL VL WSI instance of RGB ``pixels`` with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = WSI, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.Modality, ds.SeriesNumber = "SM", 1
    ds.Manufacturer, ds.ManufacturerModelName = "Coverslip tests", "pydicom"
    ds.PatientName, ds.PatientID = "Doe^Jane", "P-123"
    ds.StudyDate, ds.AcquisitionDateTime = "20240102", "20240102030405"
    ds.ImageType = ["ORIGINAL", "PRIMARY", flavor, "NONE"]
    height, width = pixels.shape[:2]
    rows, columns = -(-height // tile), -(-width // tile)
    padded = np.zeros((rows * tile, columns * tile, 3), dtype=np.uint8)
    padded[:height, :width] = pixels
    frames = padded.reshape(rows, tile, columns, tile, 3).swapaxes(1, 2)
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = height, width
    ds.NumberOfFrames = rows * columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * spacing_mm, height * spacing_mm
    ds.ImagedVolumeDepth = 0.001
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20, 40
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing_mm, spacing_mm], 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    optical = Dataset()
    optical.OpticalPathIdentifier, optical.ObjectiveLensPower = "1", 20
    optical.IlluminationTypeCodeSequence = Sequence(
        [code("111744", "DCM", "Brightfield illumination")]
    )
    optical.IlluminationColorCodeSequence = Sequence([code("414298005", "SCT", "Full Spectrum")])
    ds.OpticalPathSequence = Sequence([optical])
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def made_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Write a series of four instances (two levels, label, overview) and one of another series."""
    yy, xx = np.mgrid[:35, :45]
    parts = {
        "level0": RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8),
        "level1": np.stack([(xx * 7) % 256, (yy * 11) % 256, np.full_like(xx, 99)], -1).astype(
            np.uint8
        ),
        "label": RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "overview": RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8),
    }
    folder = tmp_path_factory.mktemp("dicom") / "slide"
    folder.mkdir()
    uids = (generate_uid(), generate_uid(), generate_uid())
    write_instance(folder / "level0.dcm", parts["level0"], uids, 0.00025)
    write_instance(folder / "level1.dcm", parts["level1"], uids, 0.0005)
    write_instance(folder / "label.dcm", parts["label"], uids, 0.01, "LABEL")
    write_instance(folder / "overview.dcm", parts["overview"], uids, 0.01, "OVERVIEW")
    return folder, parts


def sample_pixels() -> np.ndarray:
    """Return the sample's 50x50 RGB total pixel matrix put together from its 5x5 frames."""
    ds = pydicom.dcmread(SM_IMAGE)
    frames = ds.pixel_array  # (25, 10, 10, 3), row by row (TILED_FULL)
    rows, columns = (
        -(-ds.TotalPixelMatrixRows // ds.Rows),
        -(-ds.TotalPixelMatrixColumns // ds.Columns),
    )
    whole = frames.reshape(rows, columns, ds.Rows, ds.Columns, 3).swapaxes(1, 2)
    whole = whole.reshape(rows * ds.Rows, columns * ds.Columns, 3)
    return whole[: ds.TotalPixelMatrixRows, : ds.TotalPixelMatrixColumns]


@pytest.mark.parametrize("given", ["file", "folder"])
def test_sample_reads_like_pydicom(given: str) -> None:
    if not SM_IMAGE.exists():
        pytest.skip("the shared samples are not here")
    fileset = open_fileset(SM_IMAGE if given == "file" else SM_IMAGE.parent)
    try:
        assert fileset.format == "dicom"
        assert fileset.files == [SM_IMAGE]
        (reader,) = images(fileset)
        meta = reader.meta
        assert (meta.size_t, meta.size_c, meta.size_z, meta.size_y, meta.size_x) == (
            1,
            3,
            1,
            50,
            50,
        )
        assert meta.pixel_type == "uint8"
        assert [c.name for c in meta.channels] == ["Red", "Green", "Blue"]
        assert meta.physical_size_x == pytest.approx(0.499)
        assert meta.physical_size_y == pytest.approx(0.499)
        assert meta.levels == []
        assert meta.acquired == "2009-12-29T09:59:15"
        assert meta.original_metadata["Manufacturer"] == "Test Manufacturer"
        assert meta.original_metadata["ManufacturerModelName"] == "Test Model"
        assert meta.original_metadata["StudyDate"] == "20190604"
        assert meta.original_metadata["PrimaryAnatomicStructure"] == "Brain"
        # SECURITY: patient attributes stay out of what every viewer sees.
        assert not any(key.startswith("Patient") for key in meta.original_metadata)
        # Bands of 7 rows cross the 10-row frames.
        assert np.array_equal(read_channels(reader, band=7), sample_pixels())
        reader.close()
    finally:
        fileset.close()


def test_series_levels_are_read_as_stored(made_series: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, parts = made_series
    fileset = open_fileset(folder)
    try:
        main = fileset.images[0]()
        assert isinstance(main, Pyramidal)
        assert main.meta.levels == [(35, 45)]
        assert np.array_equal(read_channels(main, band=BAND), parts["level0"])
        assert np.array_equal(read_channels(main, 1, BAND), parts["level1"])
        assert main.meta.physical_size_x == pytest.approx(0.25)
        assert main.meta.objective == "20x"
        assert main.meta.original_metadata["IlluminationType"] == "Brightfield illumination"
        assert "PatientName" not in main.meta.original_metadata
        main.close()
    finally:
        fileset.close()


def test_label_and_overview_are_associated_images(
    made_series: tuple[Path, dict[str, np.ndarray]],
) -> None:
    folder, parts = made_series
    fileset = open_fileset(folder)
    try:
        readers = images(fileset)
        assert [r.meta.kind for r in readers] == ["image", "label", "overview"]
        for reader in readers[1:]:
            assert reader.meta.series == reader.meta.kind
            assert np.array_equal(read_channels(reader, band=5), parts[reader.meta.kind])
    finally:
        fileset.close()


def test_an_instance_opens_its_whole_series(
    tmp_path: Path, made_series: tuple[Path, dict[str, np.ndarray]]
) -> None:
    folder, parts = made_series
    copy = tmp_path / "slide"
    shutil.copytree(folder, copy)
    other = (generate_uid(), generate_uid(), generate_uid())
    write_instance(copy / "other.dcm", parts["label"], other, 0.001)  # another slide's series
    fileset = open_fileset(copy / "level1.dcm")
    try:
        assert fileset.files[0] == copy / "level1.dcm"
        assert sorted(p.name for p in fileset.files) == [
            "label.dcm",
            "level0.dcm",
            "level1.dcm",
            "overview.dcm",
        ]
        main = fileset.images[0]()
        assert main.meta.levels == [(35, 45)]
        assert np.array_equal(read_channels(main, band=BAND), parts["level0"])
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
    assert "\n" not in message and str(path.parent.parent) not in message
    return message


def test_truncated_sample_fails_cleanly(tmp_path: Path) -> None:
    if not SM_IMAGE.exists():
        pytest.skip("the shared samples are not here")
    data = SM_IMAGE.read_bytes()
    for fraction in (0.5, 0.9):
        folder = tmp_path / f"cut{fraction}"
        folder.mkdir()
        cut = folder / "sm_image.dcm"
        cut.write_bytes(data[: int(len(data) * fraction)])
        assert_fails_cleanly(cut)


@pytest.mark.parametrize("member", ["level0.dcm", "level1.dcm", "label.dcm"])
def test_series_with_a_truncated_instance_fails_cleanly(
    tmp_path: Path, made_series: tuple[Path, dict[str, np.ndarray]], member: str
) -> None:
    folder, _ = made_series
    copy = tmp_path / "slide"
    shutil.copytree(folder, copy)
    data = (copy / member).read_bytes()
    (copy / member).write_bytes(data[: len(data) // 2])
    assert_fails_cleanly(copy)
