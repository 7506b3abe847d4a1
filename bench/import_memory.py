"""Import a large single-plane uint16 TIFF and report throughput and peak memory.

    python bench/import_memory.py [--size 32768] [--runs 3]

Writes a tiled, uncompressed TIFF of size × size uint16 pixels (32768² = 2 GiB) tile by tile,
then runs `coverslip import` on it under `/usr/bin/time -v` in a fresh instance home, and
prints the median wall time, MB/s and the peak resident memory of the import process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

TILE = 512


def tiles(size: int) -> Iterator[np.ndarray]:
    """Yield the tiles of a structured test image, row by row."""
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    rng = np.random.default_rng(0)
    for ty in range(size // TILE):
        for tx in range(size // TILE):
            base = 1000 + 800 * np.sin((yy + ty * TILE) / 700.0) * np.cos((xx + tx * TILE) / 900.0)
            noise = rng.integers(0, 64, (TILE, TILE))
            yield (base + noise).astype(np.uint16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=32768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    coverslip = Path(sys.executable).with_name("coverslip")
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
        megabytes = source.stat().st_size / 1e6
        print(f"wrote {source.name}: {megabytes:,.0f} MB in {time.perf_counter() - started:.1f} s")
        walls, rss = [], []
        for run in range(args.runs):
            home = work / f"home{run}"
            command = [
                "/usr/bin/time",
                "-v",
                str(coverslip),
                "--home",
                str(home),
                "import",
                str(source),
                "--json",
            ]
            started = time.perf_counter()
            done = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"}
            )
            walls.append(time.perf_counter() - started)
            if done.returncode:
                sys.exit(f"import failed:\n{done.stdout}\n{done.stderr}")
            peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
            rss.append(int(peak.group(1)) / 1024 if peak else float("nan"))
            shutil.rmtree(home)
        wall = statistics.median(walls)
        print()
        print("| command | input | median wall | throughput | peak RSS (median) |")
        print("|---|---|---|---|---|")
        print(
            f"| `coverslip import big.tif` (×{args.runs}) | {args.size}² uint16, {megabytes:,.0f} MB "
            f"| {wall:.1f} s | {megabytes / wall:,.0f} MB/s | {statistics.median(rss):,.0f} MB |"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
