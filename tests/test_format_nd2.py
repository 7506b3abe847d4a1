"""Nikon ND2: the real sample read band by band through open_fileset must equal the planes nd2
reads, with the sizes, channels and voxel size the manifest lists. No writer of ND2 exists, so
the mapping of multi-point positions and loops onto frames is checked on the plan itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nd2
import numpy as np
import pytest

from coverslip.errors import ImportFailed
from coverslip.formats import Reader, detect, open_fileset
from coverslip.formats.nd2 import flatten, plan_frames, rgb_hex
from tests.helpers import SAMPLES, read_plane

SAMPLE = SAMPLES / "nd2" / "cluster.nd2"
BAND = 8  # rows per band: the sample's 31 rows span four bands

needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="the shared ND2 sample is absent")


@pytest.fixture
def reader() -> Iterator[Reader]:
    fileset = open_fileset(SAMPLE)
    assert len(fileset.images) == 1
    opened = fileset.images[0]()
    try:
        yield opened
    finally:
        opened.close()
        fileset.close()


@needs_sample
def test_the_sample_has_the_manifest_sizes_channels_and_voxel_size(reader: Reader) -> None:
    assert detect(SAMPLE) == "nd2"
    meta = reader.meta
    assert meta.format == "nd2"
    assert meta.name == "cluster"
    assert meta.series is None
    assert meta.shape == (3, 2, 10, 31, 38)  # manifest: T 3, Z 10, C 2, Y 31, X 38
    assert meta.pixel_type == "uint16"
    assert [ch.name for ch in meta.channels] == ["5-FAM/pH 9.0", "FM 4-64/2% CHAPS"]
    assert meta.physical_size_x == pytest.approx(0.1678, abs=1e-4)
    assert meta.physical_size_y == pytest.approx(0.1678, abs=1e-4)
    assert meta.physical_size_z == pytest.approx(0.5)
    assert meta.levels == []


@needs_sample
def test_the_sample_metadata(reader: Reader) -> None:
    meta = reader.meta
    with nd2.ND2File(SAMPLE) as f:
        colors = [ch.channel.color for ch in f.metadata.channels]
    expected = [f"{c.r:02X}{c.g:02X}{c.b:02X}" for c in colors]
    assert [ch.color for ch in meta.channels] == expected == ["78E90F", "FE0100"]
    assert [ch.emission_wave for ch in meta.channels] == [525, 700]
    assert [ch.excitation_wave for ch in meta.channels] == [488, 561]
    assert meta.objective == "Plan Apo λ 60x"
    # NIS-Elements wrote "18/06/2014 15:55:27" local time; the frame clock says 13:55 UTC.
    assert meta.acquired is not None and meta.acquired.startswith("2014-06-18T13:55")
    assert meta.time_increment is not None and meta.time_increment > 0
    original = meta.original_metadata
    assert original["attributes|widthPx"] == "38"
    assert original["text_info|optics"] == "Plan Apo λ 60x"
    assert 0 < len(original) <= 2000
    assert all(len(value) <= 1000 for value in original.values())


@needs_sample
def test_every_band_equals_the_plane_nd2_reads(reader: Reader) -> None:
    expected = nd2.imread(SAMPLE)  # (T, Z, C, Y, X): small enough to read whole here
    meta = reader.meta
    for t in range(meta.size_t):
        for c in range(meta.size_c):
            for z in range(meta.size_z):
                np.testing.assert_array_equal(read_plane(reader, t, c, z, BAND), expected[t, z, c])


@needs_sample
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_a_truncated_copy_fails_with_the_reason(tmp_path: Path, fraction: float) -> None:
    data = SAMPLE.read_bytes()
    cut = tmp_path / "cluster.nd2"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImportFailed) as info:
        fileset = open_fileset(cut)
        try:
            for open_image in fileset.images:
                image = open_image()
                try:
                    for t in range(image.meta.size_t):
                        read_plane(image, t, 0, 0, BAND)
                finally:
                    image.close()
        finally:
            fileset.close()
    message = str(info.value)
    assert "truncated" in message
    assert "\n" not in message and str(tmp_path) not in message


def test_garbage_with_the_nd2_signature_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "garbage.nd2"
    path.write_bytes(b"\xda\xce\xbe\x0a" + bytes(range(256)) * 64)
    with pytest.raises(ImportFailed, match="ND2"):
        open_fileset(path)


# The plan: loops and positions onto frame numbers ---------------------------------------------


def test_each_position_is_an_image_and_frames_follow_nd2s_loop_order() -> None:
    sizes = {"T": 2, "P": 3, "Z": 4, "C": 2, "Y": 16, "X": 16}
    plan = plan_frames(sizes, 24)
    assert (plan.positions, plan.size_t, plan.size_z) == (3, 2, 4)
    # nd2 numbers frames in the order of its loops, slowest first (here T, P, Z).
    for p in range(3):
        for t in range(2):
            for z in range(4):
                assert plan.frame(p, t, z) == np.ravel_multi_index((t, p, z), (2, 3, 4))


def test_a_single_frame_file_and_unnamed_loops() -> None:
    single = plan_frames({"Y": 8, "X": 8}, 1)
    assert (single.positions, single.size_t, single.size_z, single.frame(0, 0, 0)) == (1, 1, 1, 0)
    # A custom loop (U) is the Z of a file without one, and is folded into T otherwise.
    assert plan_frames({"U": 5, "C": 2, "Y": 8, "X": 8}, 5).size_z == 5
    folded = plan_frames({"T": 2, "U": 3, "Z": 4, "Y": 8, "X": 8}, 24)
    assert (folded.size_t, folded.size_z) == (6, 4)
    assert folded.frame(0, 4, 2) == np.ravel_multi_index((1, 1, 2), (2, 3, 4))


def test_an_interrupted_time_lapse_keeps_its_complete_time_points() -> None:
    plan = plan_frames({"T": 10, "P": 2, "Z": 3, "Y": 8, "X": 8}, 2 * 3 * 4 + 5)
    assert (plan.size_t, plan.positions, plan.size_z) == (4, 2, 3)
    with pytest.raises(ImportFailed, match="holds 5 of the 6 frames"):
        plan_frames({"P": 2, "Z": 3, "Y": 8, "X": 8}, 5)


def test_colours_and_flattened_metadata() -> None:
    assert rgb_hex(nd2.structures.Color(r=120, g=233, b=15)) == "78E90F"
    assert rgb_hex(0x0000FF) == "FF0000"  # packed as 0xBBGGRR
    flat = flatten({"a": {"b": [1, 2], "c": None, "d": [{"e": "x" * 2000}]}})
    assert flat == {"a|b": "1 2", "a|d #1|e": "x" * 1000}
    many = flatten({"k": {str(i): i for i in range(3000)}})
    assert len(many) == 2000


@needs_sample
def test_a_frame_the_chunk_map_puts_past_the_end_fails_instead_of_reading_black(
    tmp_path: Path,
) -> None:
    # nd2 itself returns zeros for such a frame.
    data = bytearray(SAMPLE.read_bytes())
    key = b"ImageDataSeq|29!"
    at = data.rfind(key) + len(key)
    data[at : at + 8] = (len(data) + 4096).to_bytes(8, "little")
    damaged = tmp_path / "damaged.nd2"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ImportFailed, match="truncated .* frame 29"):
        open_fileset(damaged)
