"""Import a ~2 GB Zeiss CZI and Aperio SVS made here, and report throughput and peak memory.

    python bench/import_vendor.py [--formats czi,svs] [--scale 1.0] [--runs 3] [--clean]

The inputs are written tile by tile (the maker stays bounded too) into bench/results/inputs/
and kept there for the next run; `--clean` deletes them first. Each is imported `--runs`
times with `coverslip import` into a fresh instance home, measured as in import_memory.py.
The reference, measured in the same run, is the vendor library (pylibCZIrw, tifffile) decoding
every pixel of the same file in bands of 1,024 rows in a fresh process, writing nothing.
Throughput is uncompressed pixel bytes of the imported image per second.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from import_memory import (
    READ_TIFF,
    disk_runs,
    import_runs,
    print_disk,
    print_header,
    print_row,
    reference_runs,
)
from pylibCZIrw import czi as pyczi

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "results" / "inputs"
# A Zeiss mosaic: 3 uint16 channels of 2048² camera frames, 9 × 9 frames (2,038 MB).
CZI_FRAME, CZI_FRAMES, CZI_CHANNELS = 2048, 9, 3
# An Aperio slide: RGB, 256² JPEG tiles, 104 × 104 tiles (2,127 MB), levels ÷4 and ÷16.
SVS_TILE, SVS_TILES = 256, 104
APERIO = "Aperio Image Library v12.0.15\r\n"
READ_CZI = """
import sys
from pylibCZIrw import czi as pyczi
with pyczi.open_czi(sys.argv[1]) as czi:
    box = czi.total_bounding_rectangle
    for c in range(czi.total_bounding_box["C"][1]):
        for y0 in range(box.y, box.y + box.h, 1024):
            rows = min(1024, box.y + box.h - y0)
            czi.read(roi=(box.x, y0, box.w, rows), plane={"C": c}, pixel_type="Gray16")
"""


def texture(y0: int, x0: int, height: int, width: int, seed: int, step: float = 1.0) -> np.ndarray:
    """Return a smooth float pattern of a region in image pixels (sampled every ``step``)."""
    yy = (y0 + np.arange(height)[:, None]) * step
    xx = (x0 + np.arange(width)[None, :]) * step
    return np.sin(yy / (300.0 + 40 * seed)) * np.cos(xx / (420.0 - 30 * seed))


def make_czi(path: Path, frame: int, frames: int, channels: int) -> None:
    """Write a mosaic CZI of frames × frames uint16 camera frames per channel, frame by frame."""
    rng = np.random.default_rng(0)
    with pyczi.create_czi(str(path)) as czi:
        for c in range(channels):
            for fy in range(frames):
                for fx in range(frames):
                    base = 900 + 700 * texture(fy * frame, fx * frame, frame, frame, c)
                    noise = rng.integers(0, 64, (frame, frame))
                    data = (base + noise).astype(np.uint16)[:, :, None]
                    czi.write(data, location=(fx * frame, fy * frame), plane={"C": c})
        czi.write_metadata(
            channel_names={c: f"channel {c}" for c in range(channels)},
            scale_x=0.325e-6,
            scale_y=0.325e-6,
        )


def rgb_tiles(side: int, tile: int, step: float) -> Iterator[np.ndarray]:
    """Yield the RGB tiles of a stained-looking slide, row by row."""
    rng = np.random.default_rng(1)
    for y0 in range(0, side, tile):
        for x0 in range(0, side, tile):
            planes = [texture(y0, x0, tile, tile, seed, step) for seed in range(3)]
            noise = rng.integers(-6, 7, (tile, tile, 1))
            rgb = np.stack([200 + 50 * p for p in planes], axis=-1) + noise
            yield np.clip(rgb, 0, 255).astype(np.uint8)


def make_svs(path: Path, tile: int, tiles: int) -> None:
    """Write an Aperio-style SVS: JPEG-tiled level 0, thumbnail, levels ÷4 and ÷16, label."""
    side = tile * tiles
    head = f"{APERIO}{side}x{side} [0,0 {side}x{side}] ({tile}x{tile}) JPEG/RGB Q=80"
    options = {"photometric": "rgb", "metadata": None}
    jpeg = {"compression": "jpeg", "compressionargs": {"level": 80}}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        description = f"{head}|AppMag = 40|MPP = 0.25|Date = 03/04/21|Time = 10:11:12"
        shape = (side, side, 3)
        tif.write(
            rgb_tiles(side, tile, 1.0),
            shape=shape,
            dtype=np.uint8,
            tile=(tile, tile),
            description=description,
            **jpeg,
            **options,
        )
        thumb = side // 32
        tif.write(
            next(rgb_tiles(thumb, thumb, 32.0)), description=f"{head} -> {thumb}x{thumb}", **options
        )
        for factor in (4, 16):
            small = math.ceil(side / factor / tile) * tile
            tif.write(
                rgb_tiles(small, tile, float(factor)),
                shape=(small, small, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                description=f"{head} -> {small}x{small}",
                **jpeg,
                **options,
            )
        label = np.full((400, 800, 3), 240, np.uint8)
        tif.write(label, subfiletype=1, description=f"{APERIO}label 800x400", **options)


def cached(name: str, make: Callable[[Path], None]) -> Path:
    """Return the input ``name``, making it first when an earlier run did not leave it."""
    path = INPUTS / name
    if not path.exists():
        INPUTS.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        started = time.perf_counter()
        make(partial)
        partial.rename(path)
        print(
            f"wrote {name}: {path.stat().st_size / 1e6:,.0f} MB on disk in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    else:
        print(f"reusing {name}: {path.stat().st_size / 1e6:,.0f} MB on disk", flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--formats", default="czi,svs", help="comma-separated: czi, svs")
    parser.add_argument("--scale", type=float, default=1.0, help="side length × this (0.5: ¼)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clean", action="store_true", help="delete the kept inputs first")
    args = parser.parse_args()
    if args.clean:
        shutil.rmtree(INPUTS, ignore_errors=True)
    wanted = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = set(wanted) - {"czi", "svs"}
    if unknown:
        parser.error(f"unknown formats: {', '.join(sorted(unknown))} (czi, svs)")
    # Each: (input, what it is, MB of pixels, the reference's code and name).
    inputs: list[tuple[Path, str, float, str, str]] = []
    if "czi" in wanted:
        frames = max(1, round(CZI_FRAMES * args.scale))
        side = CZI_FRAME * frames
        source = cached(
            f"mosaic-{CZI_CHANNELS}x{side}.czi",
            lambda p: make_czi(p, CZI_FRAME, frames, CZI_CHANNELS),
        )
        what = f"CZI mosaic {CZI_CHANNELS} × {side}² uint16, {frames}² frames, uncompressed"
        megabytes = CZI_CHANNELS * side * side * 2 / 1e6
        inputs.append((source, what, megabytes, READ_CZI, "pylibCZIrw decoding it"))
    if "svs" in wanted:
        tiles = max(1, round(SVS_TILES * args.scale))
        side = SVS_TILE * tiles
        source = cached(f"slide-{side}.svs", lambda p: make_svs(p, SVS_TILE, tiles))
        what = f"SVS {side}² RGB, JPEG Q80 256² tiles, levels ÷4 ÷16"
        megabytes = side * side * 3 / 1e6
        inputs.append((source, what, megabytes, READ_TIFF, "tifffile decoding it"))
    work = Path(tempfile.mkdtemp(prefix="coverslip-bench-"))
    try:
        print_header()
        for source, what, megabytes, code, name in inputs:
            imported = import_runs(source, args.runs, work)
            print_row(what, megabytes, imported, reference_runs(source, args.runs, code, name))
        print_disk(inputs[0][0], disk_runs(inputs[0][0], args.runs, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
