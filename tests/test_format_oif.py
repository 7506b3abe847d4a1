"""Olympus OIB/OIF: the real FluoView sample, and the OIF that oiffile makes of it, read band
by band through open_fileset must equal the planes oiffile reads, with its calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import oiffile
import pytest

from coverslip.errors import ImportFailed
from coverslip.formats import Reader, detect, open_fileset
from tests.helpers import SAMPLES, opened, read_plane

OIB = SAMPLES / "oib" / "test.oib"
BAND = 100

pytestmark = pytest.mark.skipif(not OIB.exists(), reason="the shared OIB sample is absent")


def assert_like_the_sample(reader: Reader) -> None:
    meta = reader.meta
    assert meta.format == "oib"
    assert meta.shape == (1, 3, 1, 256, 256)
    assert meta.pixel_type == "uint16"
    # Dye names where the settings have one, else the channel names.
    assert [ch.name for ch in meta.channels] == ["CH1", "Alexa Fluor 546", "TD1"]
    assert [ch.emission_wave for ch in meta.channels] == [None, 572.0, None]
    assert [ch.excitation_wave for ch in meta.channels] == [488.0, 543.0, 543.0]
    assert meta.physical_size_x == meta.physical_size_y == 0.177
    assert meta.physical_size_z is None
    assert meta.acquired == "2012-07-26T15:13:35"
    assert meta.original_metadata["Reference Image Parameter|WidthUnit"] == "um"
    assert len(meta.original_metadata) <= 2000
    reference = oiffile.imread(OIB)  # (C, Y, X)
    assert reference.shape == (3, 256, 256)
    for c in range(3):
        np.testing.assert_array_equal(read_plane(reader, 0, c, 0, BAND), reference[c])


def test_oib_sample_has_the_manifests_sizes_and_the_planes_oiffile_reads() -> None:
    with opened(OIB) as reader:
        assert_like_the_sample(reader)


def test_the_same_image_as_an_oif_folder_reads_the_same(tmp_path: Path) -> None:
    oiffile.oib2oif(OIB, location=str(tmp_path), verbose=0)
    (main,) = tmp_path.glob("*.oif")
    assert detect(main) == "oib"
    fileset = open_fileset(main)
    try:
        assert fileset.files == [main, main.with_name(main.name + ".files")]
    finally:
        fileset.close()
    with opened(main) as reader:
        assert_like_the_sample(reader)


def test_an_oif_without_its_folder_fails_clearly(tmp_path: Path) -> None:
    oiffile.oib2oif(OIB, location=str(tmp_path), verbose=0)
    (main,) = tmp_path.glob("*.oif")
    folder = main.with_name(main.name + ".files")
    for member in folder.iterdir():
        member.unlink()
    folder.rmdir()
    with pytest.raises(ImportFailed, match="storage path not found") as info:
        open_fileset(main)
    assert str(tmp_path) not in str(info.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_truncated_oib_fails_with_its_reason(tmp_path: Path, fraction: float) -> None:
    data = OIB.read_bytes()
    cut = tmp_path / "cut.oib"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImportFailed, match="truncated or damaged") as info, opened(cut) as reader:
        for c in range(reader.meta.size_c):
            reader.read_band(0, c, 0, 0, reader.meta.size_y)
    assert str(tmp_path) not in str(info.value)
