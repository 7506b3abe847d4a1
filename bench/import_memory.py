"""Import a large single-plane uint16 TIFF and report throughput and peak memory.

    python bench/import_memory.py [--size 32768] [--runs 3]

Writes a tiled, uncompressed TIFF of size × size uint16 pixels (32768² = 2 GiB) tile by tile,
then runs `coverslip import` on it in a fresh instance home per run, and prints the median
wall time, MB/s and the peak resident memory of the import's process tree. The reference,
measured in the same run, is tifffile decoding the same pixels band by band in a fresh
process, writing nothing. `import_vendor.py` measures CZI and SVS with the code here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import tifffile

TILE = 512
GOAL = 200  # MB/s of uncompressed pixel bytes
LIMIT = 1024  # MB of peak RSS, at any input size
SAMPLE = 0.05  # seconds between samples of the process tree's RSS
# The reference: tifffile decoding every band of 1,024 rows of the first series, nothing kept.
READ_TIFF = """
import sys, tifffile, zarr
with tifffile.TiffFile(sys.argv[1]) as tif:
    series = tif.series[0]
    array = zarr.open_array(series.aszarr(level=0), mode="r", zarr_format=2)
    y = series.axes.index("Y")
    for y0 in range(0, array.shape[y], 1024):
        array[(slice(None),) * y + (slice(y0, y0 + 1024),)]
"""


def tiles(size: int) -> Iterator[np.ndarray]:
    """Yield the tiles of a structured test image, row by row."""
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    rng = np.random.default_rng(0)
    for ty in range(size // TILE):
        for tx in range(size // TILE):
            base = 1000 + 800 * np.sin((yy + ty * TILE) / 700.0) * np.cos((xx + tx * TILE) / 900.0)
            noise = rng.integers(0, 64, (TILE, TILE))
            yield (base + noise).astype(np.uint16)


def measure(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return its wall seconds and the peak RSS (MB) of its process tree.

    The tree's RSS is summed every SAMPLE seconds; the kernel's own maximum for the process
    (which samples can miss) wins when it is larger.
    """
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "100"},
        )
        tree = psutil.Process(process.pid)
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            try:
                members = [tree, *tree.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in members))
            except psutil.Error:
                pass  # NOTE: a member ended between listing and reading; the next sample counts
            time.sleep(SAMPLE)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            output.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{output.read()}")
    return wall, max(peak / 2**20, usage.ru_maxrss / 1024)


@dataclass
class Figures:
    """Median wall time and peak RSS of one command over its runs."""

    command: str
    walls: list[float]
    peaks: list[float]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks)


def import_runs(source: Path, runs: int, work: Path) -> Figures:
    """Import ``source`` ``runs`` times, each into a fresh instance home under ``work``."""
    coverslip = Path(sys.executable).with_name("coverslip")
    walls, peaks = [], []
    for run in range(runs):
        home = work / f"home{run}"
        command = [str(coverslip), "--home", str(home), "import", str(source), "--json"]
        wall, peak = measure(command)
        walls.append(wall)
        peaks.append(peak)
        shutil.rmtree(home)
    return Figures(f"coverslip import {source.name}", walls, peaks)


def reference_runs(source: Path, runs: int, code: str, what: str) -> Figures:
    """Run the decode-only reference ``code`` on ``source`` ``runs`` times in fresh processes."""
    walls, peaks = [], []
    for _ in range(runs):
        wall, peak = measure([sys.executable, "-c", code, str(source)])
        walls.append(wall)
        peaks.append(peak)
    return Figures(what, walls, peaks)


COPY = """
import os, shutil, sys
shutil.copyfile(sys.argv[1], sys.argv[2])
with open(sys.argv[2], "rb") as copied:
    os.fsync(copied.fileno())
os.unlink(sys.argv[2])
"""


def disk_runs(source: Path, runs: int, work: Path) -> Figures:
    """Copy ``source`` into ``work`` and fsync it ``runs`` times: what the disk gives now."""
    walls, peaks = [], []
    for _ in range(runs):
        wall, peak = measure([sys.executable, "-c", COPY, str(source), str(work / "copy")])
        walls.append(wall)
        peaks.append(peak)
    return Figures(f"cp {source.name} and fsync", walls, peaks)


def print_disk(source: Path, disk: Figures) -> None:
    """Print, under the table, how fast the disk wrote a copy of ``source`` in the same run."""
    megabytes = source.stat().st_size / 1e6
    print(
        f"\nThe disk in the same run: `{disk.command}` (×{len(disk.walls)}) took "
        f"{disk.wall:.1f} s, {megabytes / disk.wall:,.0f} MB/s of the file's "
        f"{megabytes:,.0f} MB (an import writes the original and its pyramid).",
        flush=True,
    )


def print_header() -> None:
    """Print the head of the table that print_row adds to."""
    print()
    print(
        "| command | input | median wall | throughput | peak RSS (median) | to the 200 MB/s goal "
        "| reference (same run) | reference MB/s | import / reference |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)


def print_row(what: str, megabytes: float, imported: Figures, reference: Figures) -> None:
    """Print a row: ``what`` the input is, its MB of pixels, the import and its reference."""
    speed, peer = megabytes / imported.wall, megabytes / reference.wall
    over = " **over 1 GB**" if imported.peak > LIMIT else ""
    print(
        f"| `{imported.command}` (×{len(imported.walls)}) | {what}, {megabytes:,.0f} MB "
        f"| {imported.wall:.1f} s | {speed:,.0f} MB/s | {imported.peak:,.0f} MB{over} "
        f"| {speed / GOAL:.0%} | {reference.command} | {peer:,.0f} MB/s | {speed / peer:.0%} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coverslip-bench-"))
    try:
        source = work / "big.tif"
        started = time.perf_counter()
        tifffile.imwrite(
            source,
            tiles(args.size),
            shape=(args.size, args.size),
            dtype=np.uint16,
            tile=(TILE, TILE),
            bigtiff=True,
        )
        megabytes = args.size * args.size * 2 / 1e6
        print(f"wrote {source.name}: {megabytes:,.0f} MB in {time.perf_counter() - started:.1f} s")
        imported = import_runs(source, args.runs, work)
        reference = reference_runs(source, args.runs, READ_TIFF, "tifffile decoding it")
        disk = disk_runs(source, args.runs, work)
        print_header()
        print_row(f"{args.size}² uint16", megabytes, imported, reference)
        print_disk(source, disk)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
