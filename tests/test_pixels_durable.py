"""Crash-safe pixels: every chunk stored and flushed, damage answered 503 and found by check."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from falcon import testing

from coverslip.cli import main
from coverslip.home import Home
from coverslip.pixels import Pyramid
from coverslip.web import create_app
from tests.helpers import decode


def imported(home: Path, path: Path, *options: str) -> int:
    result = CliRunner().invoke(
        main, ["--home", str(home), "import", str(path), "--json", *options]
    )
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith('{"imported"'))
    return int(json.loads(line)["imported"][0])


def chunk_files(pyramid: Path) -> list[Path]:
    return sorted(p for p in pyramid.rglob("*") if p.is_file() and "/c/" in str(p))


def stored_chunks(level: Path) -> int:
    """Count the chunks the shards of one level store, from their indexes (Zarr v3 sharding).

    An index is at the end of its shard: an (offset, size) pair of little-endian uint64 per
    chunk, 2⁶⁴−1 for a chunk not stored, then a 4-byte CRC32C.
    """
    meta = json.loads((level / "zarr.json").read_text())
    shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
    inner = meta["codecs"][0]["configuration"]["chunk_shape"]
    slots = int(np.prod(shard)) // int(np.prod(inner))
    count = 0
    for path in chunk_files(level):
        index = np.frombuffer(path.read_bytes()[-(16 * slots + 4) : -4], "<u8").reshape(-1, 2)
        count += int((index[:, 0] != 2**64 - 1).sum())
    return count


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_every_chunk_is_stored_zeros_included(home: Path, tmp_path: Path) -> None:
    plane = np.zeros((600, 700), np.uint16)
    plane[:10, :10] = 7  # one chunk with data, eleven all zero
    tifffile.imwrite(tmp_path / "dark.tif", plane)
    image_id = imported(home, tmp_path / "dark.tif")
    level0 = home / "pixels" / f"{image_id}.ome.zarr" / "0"
    assert len(chunk_files(level0)) == 3  # a shard per row of chunks
    assert stored_chunks(level0) == 3 * 3  # ceil(600/256) × ceil(700/256)


def test_the_pyramid_and_the_original_are_flushed_before_the_image_is_active(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tifffile.imwrite(
        tmp_path / "cells.tif", np.arange(300 * 400, dtype=np.uint16).reshape(300, 400)
    )
    flushed: set[str] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        flushed.add(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    image_id = imported(home, tmp_path / "cells.tif")
    pyramid = (home / "pixels" / f"{image_id}.ome.zarr").resolve()
    written = {str(p.resolve()) for p in pyramid.rglob("*")}
    assert written and written <= flushed
    assert str(pyramid) in flushed and str(pyramid.parent) in flushed
    originals = [p for p in (home / "originals").resolve().rglob("*") if p.is_file()]
    assert originals and {str(p) for p in originals} <= flushed


@pytest.fixture
def damaged(home: Path, tmp_path: Path) -> tuple[int, np.ndarray, Path, bytes]:
    """An active 2-channel image with the shard of channel 2's first chunk row removed.

    The shard holds chunks 0,0 and 0,1 of that plane; its bytes are returned.
    """
    made = CliRunner().invoke(main, ["--home", str(home), "user", "ensure-admin"])
    assert made.exit_code == 0, made.output  # makes the Public group
    data = np.random.default_rng(1).integers(0, 4000, (2, 300, 300), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "two.tif", data, metadata={"axes": "CYX"})
    image_id = imported(home, tmp_path / "two.tif", "--group", "Public")
    chunk = home / "pixels" / f"{image_id}.ome.zarr" / "0" / "c" / "0" / "1" / "0" / "0" / "0"
    saved = chunk.read_bytes()
    chunk.unlink()
    return image_id, data, chunk, saved


def test_a_missing_chunk_answers_503_naming_the_image_and_caches_nothing(
    home: Path, damaged: tuple[int, np.ndarray, Path, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    image_id, data, chunk, saved = damaged
    client = testing.TestClient(create_app(Home(home).settings({}, {}), Home(home)))
    path = f"/webgateway/render_image_region/{image_id}/0/0/"
    query = "region=256,0,44,44&c=1|0:4000$FF0000,2|0:4000$00FF00&format=png"
    with caplog.at_level(logging.ERROR, logger="coverslip.web"):
        answer = client.simulate_get(path, query_string=query)
    assert answer.status_code == 503, answer.text
    description = answer.json["description"]
    assert f"image {image_id}" in description and "damaged" in description
    assert "missing" in description and str(home) not in description
    assert any(f"image {image_id}" in record.getMessage() for record in caplog.records)
    chunk.write_bytes(saved)  # repaired: the next answer is the real pixels, not a cached black
    answer = client.simulate_get(path, query_string=query)
    assert answer.status_code == 200, answer.text
    got = decode(answer.content)
    want = (data[:, 0:44, 256:300].astype(np.int64) * 255 // 4000).clip(0, 255)
    assert np.abs(got[..., 0].astype(int) - want[0]).max() <= 1
    assert np.abs(got[..., 1].astype(int) - want[1]).max() <= 1


def test_check_reports_missing_and_corrupt_chunks_and_changed_originals(
    home: Path, damaged: tuple[int, np.ndarray, Path, bytes], tmp_path: Path
) -> None:
    image_id, _data, chunk, saved = damaged
    tifffile.imwrite(tmp_path / "fine.tif", np.ones((40, 50), np.uint8))
    fine = imported(home, tmp_path / "fine.tif")

    def check(*ids: int) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--home", str(home), "check", *map(str, ids)])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    code, output = check()
    assert code == 1
    assert f"image {fine}: ok" in output
    assert (
        f"image {image_id}: pixels: chunk 0,1 of plane t=0 c=1 z=0 at level 0 is missing" in output
    )
    chunk.write_bytes(bytes(16) + saved[16:])  # the head of chunk 0,0 wiped, the index intact
    code, output = check(image_id)
    assert code == 1 and "chunk 0,0 of plane t=0 c=1 z=0 at level 0 does not decode" in output
    chunk.write_bytes(saved[-100:])  # a shard cut short: its index cannot be read
    code, output = check(image_id)
    assert code == 1 and "the shard index of chunk 0,0 of plane t=0 c=1 z=0" in output
    original = next(p for p in (home / "originals").rglob("fine.tif") if p.is_file())
    kept = original.read_bytes()
    original.write_bytes(kept[:-1] + bytes([kept[-1] ^ 0xFF]))  # one byte changed
    code, output = check(fine)
    assert code == 1 and f"image {fine}: originals: the originals' sha512 is" in output
    assert check(fine, image_id)[0] == 1


def test_a_registered_zarr_without_a_chunk_reads_its_fill_value(tmp_path: Path) -> None:
    import zarr

    root = zarr.open_group(tmp_path / "foreign.zarr", mode="w", zarr_format=3)
    array = root.create_array("0", shape=(1, 1, 1, 64, 64), chunks=(1, 1, 1, 32, 32), dtype="uint8")
    array[0, 0, 0, :32, :32] = 9  # the other three chunks are never written
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": a} for a in "tczyx"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1, 1]}],
                    }
                ],
            }
        ],
    }
    pyramid = Pyramid(tmp_path / "foreign.zarr")
    assert pyramid.damage() == []
    plane = pyramid.read(0, 0, 0, 0, slice(None), slice(None))
    assert plane[:32, :32].tolist() == np.full((32, 32), 9).tolist() and not plane[32:].any()
