"""Choose the pixel store's chunk size, codec and I/O package by measurement.

    python bench/pixelstore.py [--quick]

Builds a seeded 3-channel uint16 8192 x 8192 mosaic (smooth gradients, gaussian blobs,
shot and read noise) and its 2x2-mean pyramid, then for every chunk size S (256, 512) and
codec writes the pyramid as Zarr v3 arrays of shape (T, C, Z, Y, X) chunked (1, 1, 1, S, S),
once with tensorstore and once with zarr-python, and times reads in a fresh process per
reader configuration:

- a random 256 x 256 tile of one channel at levels 0, 1, 2 (tile positions on the 256 grid);
- a 3-channel 512 x 512 region at levels 0, 1, 2, aligned to 512 and at a random offset;
- opening the arrays (the first open in a process, then the median of the further levels).

Readers: tensorstore with no chunk cache and default data-copy concurrency, the same with
`data_copy_concurrency` limited to 1 (one thread per read, as in a worker process), the
same with a 256 MB chunk cache, and zarr-python 3. Chunks come from the OS page cache
(the files were just written), so the figures are kvstore + decode + copy cost.
Prints markdown tables on stdout (progress goes to stderr) and removes its temporary files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 8192
CHANNELS = 3
SEED = 20240611
TILE = 256
REGION = 512
BYTES_CODEC: dict[str, Any] = {"name": "bytes", "configuration": {"endian": "little"}}


def blosc(cname: str, clevel: int) -> dict[str, Any]:
    return {
        "name": "blosc",
        "configuration": {
            "cname": cname,
            "clevel": clevel,
            "shuffle": "shuffle",
            "typesize": 2,
            "blocksize": 0,
        },
    }


def zstd(level: int) -> dict[str, Any]:
    return {"name": "zstd", "configuration": {"level": level, "checksum": False}}


CODECS: dict[str, list[dict[str, Any]]] = {
    "none": [BYTES_CODEC],
    "blosc-lz4": [BYTES_CODEC, blosc("lz4", 5)],
    "blosc-zstd1": [BYTES_CODEC, blosc("zstd", 1)],
    "blosc-zstd2": [BYTES_CODEC, blosc("zstd", 2)],
    "blosc-zstd3": [BYTES_CODEC, blosc("zstd", 3)],
    "zstd1": [BYTES_CODEC, zstd(1)],
    "zstd3": [BYTES_CODEC, zstd(3)],
}
QUICK_CODECS = ["none", "blosc-lz4", "blosc-zstd1", "zstd1"]

NO_CACHE = {"cache_pool": {"total_bytes_limit": 0}}
READERS: dict[str, dict[str, Any]] = {
    "ts": {"engine": "tensorstore", "context": NO_CACHE},
    "ts dcc1": {
        "engine": "tensorstore",
        "context": {**NO_CACHE, "data_copy_concurrency": {"limit": 1}},
    },
    "ts dcc1 cache": {
        "engine": "tensorstore",
        "context": {
            "cache_pool": {"total_bytes_limit": 256 * 2**20},
            "data_copy_concurrency": {"limit": 1},
        },
        "recheck_cached_data": "open",
    },
    "zarr": {"engine": "zarr"},
}


# --------------------------------------------------------------------------- the image


def stamp_blobs(plane: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Add `count` gaussian blobs of a few sizes and random brightness to `plane` in place."""
    height, width = plane.shape
    for sigma, share in ((3.0, 0.5), (6.0, 0.3), (12.0, 0.15), (24.0, 0.05)):
        radius = int(3 * sigma)
        axis = np.arange(-radius, radius + 1, dtype=np.float32)
        kernel = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma * sigma))
        n = int(count * share)
        ys = rng.integers(0, height - 2 * radius - 1, n)
        xs = rng.integers(0, width - 2 * radius - 1, n)
        peaks = rng.gamma(2.0, 600.0, n).astype(np.float32)
        side = 2 * radius + 1
        for y, x, peak in zip(ys.tolist(), xs.tolist(), peaks.tolist(), strict=True):
            plane[y : y + side, x : x + side] += kernel * peak


def make_image(size: int) -> np.ndarray:
    """A seeded (C, Y, X) uint16 mosaic: gradients + blobs + poisson-like noise."""
    rng = np.random.default_rng(SEED)
    image = np.empty((CHANNELS, size, size), dtype=np.uint16)
    yy = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :]
    for c in range(CHANNELS):
        fy, fx, phase = rng.uniform(2.0, 6.0), rng.uniform(2.0, 6.0), rng.uniform(0, 6.28)
        plane = (
            150.0
            + 120.0 * yy
            + 80.0 * xx
            + 60.0 * np.sin(fy * 6.28 * yy + phase) * np.cos(fx * 6.28 * xx)
        ).astype(np.float32)
        stamp_blobs(plane, rng, count=(size * size) // 6000)
        # shot noise ~ sqrt(signal), plus camera read noise
        noise = rng.standard_normal((size, size), dtype=np.float32)
        plane += noise * np.sqrt(plane) + rng.standard_normal((size, size), dtype=np.float32) * 3
        np.clip(plane, 0, 65535, out=plane)
        image[c] = plane.astype(np.uint16)
    return image


def pyramid(level0: np.ndarray, chunk: int) -> list[np.ndarray]:
    """2x2-mean levels until the longest side fits one chunk."""
    levels = [level0]
    while max(levels[-1].shape[-2:]) > chunk:
        a = levels[-1]
        c, h, w = a.shape
        a = a[:, : h - h % 2, : w - w % 2].astype(np.uint32)
        summed = a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]
        levels.append(((summed + 2) // 4).astype(np.uint16))
    return levels


# --------------------------------------------------------------------------- writing


def ome_group(root: Path, levels: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    datasets = [
        {
            "path": str(i),
            "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 2**i, 2**i]}],
        }
        for i in range(levels)
    ]
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    attrs = {"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}}
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attrs}
    (root / "zarr.json").write_text(json.dumps(doc))


def ts_spec(path: Path, shape: tuple[int, ...], chunk: int, codecs: list[dict[str, Any]]) -> dict:
    return {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": list(shape),
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [1, 1, 1, chunk, chunk]},
            },
            "chunk_key_encoding": {"name": "default"},
            "data_type": "uint16",
            "fill_value": 0,
            "codecs": codecs,
            "dimension_names": ["t", "c", "z", "y", "x"],
        },
        "create": True,
        "delete_existing": True,
    }


def write_tensorstore(root: Path, levels: list[np.ndarray], chunk: int, codec: str) -> None:
    import tensorstore as ts

    ome_group(root, len(levels))
    context = ts.Context({"file_io_sync": False})
    for i, data in enumerate(levels):
        shape = (1, *data.shape[:1], 1, *data.shape[1:])
        arr = ts.open(ts_spec(root / str(i), shape, chunk, CODECS[codec]), context=context).result()
        arr[0, :, 0, :, :].write(data).result()


def zarr_codecs(codec: str) -> dict[str, Any]:
    from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

    chain = CODECS[codec]
    compressors = []
    for spec in chain[1:]:
        conf = spec["configuration"]
        if spec["name"] == "blosc":
            compressors.append(
                BloscCodec(
                    cname=conf["cname"],
                    clevel=conf["clevel"],
                    shuffle=conf["shuffle"],
                    typesize=conf["typesize"],
                    blocksize=conf["blocksize"],
                )
            )
        else:
            compressors.append(ZstdCodec(level=conf["level"], checksum=conf["checksum"]))
    return {"serializer": BytesCodec(endian="little"), "compressors": compressors}


def write_zarr(root: Path, levels: list[np.ndarray], chunk: int, codec: str) -> None:
    import zarr

    ome_group(root, len(levels))
    for i, data in enumerate(levels):
        shape = (1, *data.shape[:1], 1, *data.shape[1:])
        arr = zarr.create_array(
            store=str(root / str(i)),
            shape=shape,
            chunks=(1, 1, 1, chunk, chunk),
            dtype="uint16",
            fill_value=0,
            dimension_names=["t", "c", "z", "y", "x"],
            overwrite=True,
            **zarr_codecs(codec),
        )
        arr[0, :, 0, :, :] = data


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- reading (worker)


def positions(shape: tuple[int, int], n: int, rng: np.random.Generator, size: int, step: int):
    """n seeded origins of a size x size window; on the `step` grid, or off it if step == 1."""
    h, w = shape
    ys = rng.integers(0, (h - size) // step + 1, n) * step
    xs = rng.integers(0, (w - size) // step + 1, n) * step
    return list(zip(ys.tolist(), xs.tolist(), strict=True))


def timed(fn, args: list, warmup: int = 5) -> list[float]:
    for a in args[:warmup]:
        fn(*a)
    out = []
    for a in args:
        started = time.perf_counter_ns()
        fn(*a)
        out.append((time.perf_counter_ns() - started) / 1e6)
    return out


def worker(job: dict[str, Any]) -> dict[str, Any]:
    root = Path(job["root"])
    reader = READERS[job["reader"]]
    nlevels = job["levels"]
    rng = np.random.default_rng(SEED)
    opens: list[float] = []
    arrays: list[Any] = []
    if reader["engine"] == "tensorstore":
        import tensorstore as ts

        started = time.perf_counter_ns()
        context = ts.Context(reader["context"])
        for i in range(nlevels):
            spec: dict[str, Any] = {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(root / str(i))},
            }
            if "recheck_cached_data" in reader:
                spec["recheck_cached_data"] = reader["recheck_cached_data"]
            arrays.append(ts.open(spec, context=context, read=True).result())
            opens.append((time.perf_counter_ns() - started) / 1e6)
            started = time.perf_counter_ns()

        def tile(level: int, c: int, y: int, x: int) -> np.ndarray:
            return arrays[level][0, c, 0, y : y + TILE, x : x + TILE].read().result()

        def region(level: int, y: int, x: int) -> np.ndarray:
            return arrays[level][0, :, 0, y : y + REGION, x : x + REGION].read().result()

    else:
        import zarr

        started = time.perf_counter_ns()
        for i in range(nlevels):
            arrays.append(zarr.open_array(str(root / str(i)), mode="r"))
            opens.append((time.perf_counter_ns() - started) / 1e6)
            started = time.perf_counter_ns()

        def tile(level: int, c: int, y: int, x: int) -> np.ndarray:
            return arrays[level][0, c, 0, y : y + TILE, x : x + TILE]

        def region(level: int, y: int, x: int) -> np.ndarray:
            return arrays[level][0, :, 0, y : y + REGION, x : x + REGION]

    shape0 = arrays[0].shape
    assert tuple(shape0) == (1, CHANNELS, 1, job["size"], job["size"]), shape0
    result: dict[str, Any] = {"open": [opens[0], statistics.median(opens[1:])]}
    chunk = job["chunk"]
    for level in (0, 1, 2):
        hw = tuple(arrays[level].shape[-2:])
        tiles = [
            (level, int(rng.integers(0, CHANNELS)), y, x)
            for y, x in positions(hw, job["tiles"], rng, TILE, TILE)
        ]
        result[f"tile{level}"] = timed(tile, tiles)
        aligned = [(level, y, x) for y, x in positions(hw, job["regions"], rng, REGION, REGION)]
        result[f"aligned{level}"] = timed(region, aligned)
        unaligned = []
        for y, x in positions(hw, job["regions"], rng, REGION, 1):
            y, x = (y + 1 if y % chunk == 0 else y), (x + 1 if x % chunk == 0 else x)
            unaligned.append((level, y, x))
        result[f"unaligned{level}"] = timed(region, unaligned)
    check = region(0, 0, 0)
    result["checksum"] = int(np.asarray(check, dtype=np.uint64).sum())
    return result


# --------------------------------------------------------------------------- driver


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def stat(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):.2f} / {p90:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer codecs and repetitions")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    begun = time.perf_counter()
    codecs = QUICK_CODECS if args.quick else list(CODECS)
    tiles, regions = (200, 60) if args.quick else (500, 200)
    log = sys.stderr
    print(f"building {CHANNELS} x {SIZE}^2 uint16 mosaic ...", file=log, flush=True)
    image = make_image(SIZE)
    print(f"  {time.perf_counter() - begun:.1f} s", file=log, flush=True)

    storage_rows: list[str] = []
    read_rows: list[str] = []
    checksums: set[int] = set()
    work = Path(tempfile.mkdtemp(prefix="coverslip-pixelstore-"))
    try:
        for chunk in (256, 512):
            levels = pyramid(image, chunk)
            raw = sum(a.nbytes for a in levels)
            for codec in codecs:
                sizes: dict[str, int] = {}
                speeds: dict[str, float] = {}
                roots: dict[str, Path] = {}
                for engine, write in (("ts", write_tensorstore), ("zarr", write_zarr)):
                    root = work / f"{chunk}-{codec}-{engine}.ome.zarr"
                    started = time.perf_counter()
                    write(root, levels, chunk, codec)
                    speeds[engine] = raw / 1e6 / (time.perf_counter() - started)
                    sizes[engine] = disk_bytes(root)
                    roots[engine] = root
                os.sync()
                disk = sizes["ts"]
                storage_rows.append(
                    f"| {chunk} | {codec} | {disk / 1e6:,.0f} | {raw / disk:.2f} "
                    f"| {speeds['ts']:,.0f} | {speeds['zarr']:,.0f} |"
                )
                for name, reader in READERS.items():
                    engine = "zarr" if reader["engine"] == "zarr" else "ts"
                    job = {
                        "root": str(roots[engine]),
                        "reader": name,
                        "levels": len(levels),
                        "size": SIZE,
                        "chunk": chunk,
                        "tiles": tiles,
                        "regions": regions,
                    }
                    r = run_worker(job)
                    checksums.add(r["checksum"])
                    cells = [f"{r['open'][0]:.1f} / {r['open'][1]:.2f}"]
                    cells += [stat(r[f"tile{lv}"]) for lv in (0, 1, 2)]
                    cells += [stat(r[f"aligned{lv}"]) for lv in (0, 1, 2)]
                    cells += [stat(r[f"unaligned{lv}"]) for lv in (0, 1, 2)]
                    read_rows.append(f"| {chunk} | {codec} | {name} | " + " | ".join(cells) + " |")
                    print(f"  {chunk} {codec} {name}: tile0 {cells[1]}", file=log, flush=True)
                for root in roots.values():
                    shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(checksums) != 1:
        raise SystemExit(f"readers disagree on the pixels: {sorted(checksums)}")

    mode = "quick" if args.quick else "full"
    print(
        f"Image: {CHANNELS} x {SIZE} x {SIZE} uint16, seed {SEED}; {mode} run; "
        f"{tiles} tile reads and {regions} region reads per cell; cores: {os.cpu_count()}.\n"
    )
    print("| S | codec | disk MB | ratio | write MB/s ts | write MB/s zarr |")
    print("|---:|---|---:|---:|---:|---:|")
    print("\n".join(storage_rows))
    print(
        "\nRead times in ms, median / p90. open: first array / each further level. "
        "tile: one channel 256², levels 0/1/2. aligned, unaligned: 3 channels 512².\n"
    )
    head = ["S", "codec", "reader", "open"]
    head += [f"tile L{lv}" for lv in (0, 1, 2)]
    head += [f"aligned L{lv}" for lv in (0, 1, 2)]
    head += [f"unaligned L{lv}" for lv in (0, 1, 2)]
    print("| " + " | ".join(head) + " |")
    print("|---:|---|---|" + "---:|" * (len(head) - 3))
    print("\n".join(read_rows))
    print(f"\nTotal time: {time.perf_counter() - begun:.0f} s", file=log)


if __name__ == "__main__":
    main()
