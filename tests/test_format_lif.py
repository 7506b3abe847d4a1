"""Leica LIF: the real LAS X sample (three XZ images) read band by band through
open_fileset must equal the planes liffile reads, with the sizes and calibration it reports."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import liffile
import numpy as np
import pytest

from coverslip.errors import ImportFailed
from coverslip.formats import Reader, open_fileset
from tests.helpers import SAMPLES, read_plane

SAMPLE = SAMPLES / "lif" / "testdata_2channel_xz.lif"
BAND = 50

needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="the shared LIF sample is absent")


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    if not SAMPLE.exists():
        pytest.skip("the shared LIF sample is absent")
    fileset = open_fileset(SAMPLE)
    opened = [open_image() for open_image in fileset.images]
    try:
        yield opened
    finally:
        for reader in opened:
            reader.close()
        fileset.close()


def step_um(coords: np.ndarray) -> float:
    return float(coords[1] - coords[0]) * 1e6


def test_every_series_is_an_image_with_the_sizes_liffile_reports(readers: list[Reader]) -> None:
    expected = {
        # name: (T, C, Z, Y, X); an XZ scan's rows are its Z, an XZ stack's Z is its Y
        "xzt": (20, 2, 1, 128, 128),
        "xzy": (1, 2, 23, 128, 128),
        "xz": (1, 2, 1, 512, 512),
    }
    assert [r.meta.name for r in readers] == list(expected)
    with liffile.LifFile(SAMPLE) as lif:
        for reader, image in zip(readers, lif.images, strict=True):
            meta = reader.meta
            assert meta.format == "lif"
            assert meta.series == image.path
            assert meta.shape == expected[meta.name]
            assert meta.pixel_type == "uint8" == image.dtype.name
            assert meta.size_c == image.sizes["C"] == len(meta.channels)
            assert meta.physical_size_x == pytest.approx(step_um(image.coords["X"]))
            # The physical Y of an XZ picture is the Z step between its rows.
            assert meta.physical_size_y == pytest.approx(step_um(image.coords["Z"]))
            if "Y" in image.sizes:
                assert meta.physical_size_z == pytest.approx(step_um(image.coords["Y"]))
            else:
                assert meta.physical_size_z is None
            luts = [
                ch.get("LUTName")
                for ch in ET.fromstring(ET.tostring(image.xml_element)).iter("ChannelDescription")
            ]
            assert luts == ["Green", "Red"]
            assert [ch.color for ch in meta.channels] == ["00FF00", "FF0000"]
            # The active detectors' dyes (HyD 1 FITC, HyD 3 TRITC) name the channels.
            assert [ch.name for ch in meta.channels] == ["FITC", "TRITC"]
            assert 490 < (meta.channels[0].emission_wave or 0) < 545
            assert meta.objective == "HC PL APO CS2 63x/1.30 GLYC"
            assert 0 < len(meta.original_metadata) <= 2000
            assert all(len(v) <= 1000 for v in meta.original_metadata.values())
    xzt = readers[0].meta
    assert xzt.time_increment == pytest.approx(10.07 / 19)
    assert xzt.acquired is not None and xzt.acquired.startswith("2021-03-04T16:39:17")


def test_bands_equal_the_planes_liffile_reads(readers: list[Reader]) -> None:
    with liffile.LifFile(SAMPLE) as lif:
        for reader, image in zip(readers, lif.images, strict=True):
            data = image.asarray()
            meta = reader.meta
            for t in range(meta.size_t):
                for c in range(meta.size_c):
                    for z in range(meta.size_z):
                        if image.dims == ("T", "C", "Z", "X"):
                            expected = data[t, c]
                        elif image.dims == ("Y", "C", "Z", "X"):
                            expected = data[z, c]
                        else:
                            assert image.dims == ("C", "Z", "X")
                            expected = data[c]
                        np.testing.assert_array_equal(read_plane(reader, t, c, z, BAND), expected)


def test_a_band_is_read_without_the_rest_of_the_plane(readers: list[Reader]) -> None:
    with liffile.LifFile(SAMPLE) as lif:
        expected = lif.images[2].asarray()[1, 300:301]
    np.testing.assert_array_equal(readers[2].read_band(0, 1, 0, 300, 301), expected)


@needs_sample
@pytest.mark.parametrize("fraction", [0.5, 0.02])
def test_a_truncated_file_fails_with_its_reason(tmp_path: Path, fraction: float) -> None:
    data = SAMPLE.read_bytes()
    cut = tmp_path / "cut.lif"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImportFailed) as info:
        fileset = open_fileset(cut)
        try:
            for open_image in fileset.images:
                reader = open_image()
                try:
                    meta = reader.meta
                    for c in range(meta.size_c):
                        reader.read_band(meta.size_t - 1, c, meta.size_z - 1, 0, meta.size_y)
                finally:
                    reader.close()
        finally:
            fileset.close()
    message = str(info.value)
    assert "truncated" in message or "not a readable Leica file" in message
    assert str(tmp_path) not in message


def dimension(dim_id: int, size: int, stride: int, length: float, unit: str = "m") -> str:
    return (
        f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{size}" Origin="0" '
        f'Length="{length}" Unit="{unit}" BitInc="0" BytesInc="{stride}" />'
    )


def write_lif(path: Path, data: np.ndarray) -> None:
    """Write (M, Z, C, Y, X) uint16 ``data`` as a LIF: an XY stack of 2 channels, 2 tiles."""
    tiles, depth, channels, height, width = data.shape
    plane = height * width * 2
    luts = ("Red", "Green")
    descriptions = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="12" '
        f'NameOfMeasuredQuantity="" Min="0" Max="4095" Unit="" LUTName="{luts[c]}" '
        f'IsLUTInverted="0" BytesInc="{c * plane}" BitInc="0" />'
        for c in range(channels)
    )
    dims = "".join(
        (
            dimension(1, width, 2, (width - 1) * 1e-7),
            dimension(2, height, width * 2, (height - 1) * 2e-7),
            dimension(3, depth, channels * plane, (depth - 1) * 5e-7),
            dimension(10, tiles, depth * channels * plane, 0, ""),
        )
    )
    xml = (
        '<LMSDataContainerHeader Version="2"><Element Name="project"><Data><Experiment />'
        '</Data><Memory Size="0" MemoryBlockID="MemBlock_0" /><Children>'
        '<Element Name="stack" UniqueID="1"><Data><Image><ImageDescription>'
        f"<Channels>{descriptions}</Channels><Dimensions>{dims}</Dimensions>"
        f'</ImageDescription></Image></Data><Memory Size="{data.nbytes}" '
        'MemoryBlockID="MemBlock_1" /><Children /></Element></Children></Element>'
        "</LMSDataContainerHeader>"
    )
    out = struct.pack("<IIBI", 0x70, 2 * len(xml) + 5, 0x2A, len(xml)) + xml.encode("utf-16-le")
    for block, payload in (("MemBlock_0", b""), ("MemBlock_1", data.astype("<u2").tobytes())):
        out += struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(payload), 0x2A, len(block))
        out += block.encode("utf-16-le") + payload
    path.write_bytes(out)


def test_an_xy_stack_with_tiles_reads_back_exactly(tmp_path: Path) -> None:
    # Tile positions (M) are kept, as time points, since the image has a Z of its own.
    data = np.random.default_rng(3).integers(0, 4096, (2, 3, 2, 30, 40), dtype=np.uint16)
    path = tmp_path / "stack.lif"
    write_lif(path, data)
    with liffile.LifFile(path) as lif:
        assert lif.images[0].sizes == {"M": 2, "Z": 3, "C": 2, "Y": 30, "X": 40}
    fileset = open_fileset(path)
    try:
        (open_image,) = fileset.images
        reader = open_image()
        meta = reader.meta
        assert (meta.name, meta.series) == ("stack", "stack")
        assert meta.shape == (2, 2, 3, 30, 40)
        assert meta.pixel_type == "uint16"
        assert [(ch.name, ch.color) for ch in meta.channels] == [
            ("Red", "FF0000"),
            ("Green", "00FF00"),
        ]
        assert meta.physical_size_x == pytest.approx(0.1)
        assert meta.physical_size_y == pytest.approx(0.2)
        assert meta.physical_size_z == pytest.approx(0.5)
        for t in range(2):
            for c in range(2):
                for z in range(3):
                    np.testing.assert_array_equal(read_plane(reader, t, c, z, BAND), data[t, z, c])
        reader.close()
    finally:
        fileset.close()
