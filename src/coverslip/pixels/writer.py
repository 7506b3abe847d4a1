"""Write an OME-Zarr 0.5 pyramid from bands of rows, keeping memory bounded by tiles."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from coverslip.pixels.durable import sync_files, sync_tree
from coverslip.pixels.objects import ObjectStore, is_remote, join
from coverslip.pixels.pyramid import AXES, OWN_ATTRIBUTES, level_shapes, ome_metadata

CODECS: dict[str, list[dict[str, Any]]] = {
    # PERF: bit shuffle, not byte shuffle: on the samples' tiles it stores 58 % of the bytes
    # instead of 72 %, encodes at 1,185 MB/s instead of 385 and decodes at 1,401 instead of
    # 1,115 (8-bit slides gain most; some 16-bit planes decode a little slower).
    "lz4": [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {
            "name": "blosc",
            "configuration": {
                "cname": "lz4",
                "clevel": 5,
                "shuffle": "bitshuffle",
                "blocksize": 0,
            },
        },
    ],
    "zstd": [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {
            "name": "blosc",
            "configuration": {
                "cname": "zstd",
                "clevel": 1,
                "shuffle": "shuffle",
                "blocksize": 0,
            },
        },
    ],
    "none": [{"name": "bytes", "configuration": {"endian": "little"}}],
}


# PERF: on local disk chunks go into shards of one row of up to this many chunks. A file per
# 256² chunk made an import spend more time creating files than encoding them; a reader
# keeps a shard's index and reads a chunk with one ranged read. In an object store every
# chunk stays an object of its own: SeaweedFS spent 7.0 ms of CPU per RGB tile read by range
# from 32-chunk shards against 2.6 ms for the chunks as objects (bench/object_store.py).
SHARD_CHUNKS = 32
_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]


def sharded(codecs: list[dict[str, Any]], tile: int) -> list[dict[str, Any]]:
    """Return the codecs of a sharded array whose chunks are ``tile``² and coded by ``codecs``."""
    configuration = {
        "chunk_shape": [1, 1, 1, tile, tile],
        "codecs": codecs,
        "index_codecs": _INDEX_CODECS,
        "index_location": "end",
    }
    return [{"name": "sharding_indexed", "configuration": configuration}]


def downsample(rows: np.ndarray) -> np.ndarray:
    """Return the 2×2 mean of a 2-D array; odd edges average the pixels they have.

    Integers round half up (``(sum + 2) // 4``), so every level is exact and reproducible;
    floats are summed in float64 in a fixed order, then cast back.
    """
    height, width = rows.shape
    if height % 2 or width % 2:
        # NOTE: repeating the last row/column makes a 2×1 block the mean of its two pixels.
        rows = np.pad(rows, ((0, height % 2), (0, width % 2)), mode="edge")
    top, bottom = rows[0::2], rows[1::2]
    if rows.dtype.kind == "f":
        acc = top[:, 0::2].astype(np.float64)
        acc += bottom[:, 0::2]
        acc += top[:, 1::2]
        acc += bottom[:, 1::2]
        acc /= 4.0
        return acc.astype(rows.dtype)
    # PERF: sum pairs of rows first, in place, in a type twice as wide (four values and the
    # rounding fit), so the only temporaries are half and quarter the band; ``>> 2`` is the
    # floor division by 4, signed ones included.
    kind, size = rows.dtype.kind, rows.dtype.itemsize
    wide = f"{kind}{2 * size}" if kind in "iu" and size < 8 else np.int64
    pairs = top.astype(wide)
    # NOTE: uint64 does not add into int64 in place; it wraps as the whole-array cast did.
    pairs += bottom.astype(np.int64) if size == 8 else bottom
    total = pairs[:, 0::2] + pairs[:, 1::2]
    total += 2
    total >>= 2
    return total.astype(rows.dtype)


def own_levels(height: int, width: int, levels: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the file's levels that make a pyramid: each smaller than the one before it."""
    kept: list[tuple[int, int]] = []
    previous = (height, width)
    for h, w in levels:
        if 0 < h <= previous[0] and 0 < w <= previous[1] and (h, w) != previous:
            kept.append((int(h), int(w)))
            previous = (h, w)
        else:
            break
    return kept


class _Level:
    """One level of one plane being written: rows arrive, full bands of tile rows leave."""

    def __init__(self, writer: PyramidWriter, level: int, index: tuple[int, int, int]) -> None:
        self.writer = writer
        self.level = level
        self.index = index
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.written = 0
        # Levels the file has are written as given; only the levels after them are computed.
        computed = level + 1 >= writer.copied and level + 1 < len(writer.shapes)
        self.child = _Level(writer, level + 1, index) if computed else None

    def push(self, rows: np.ndarray, final: bool) -> None:
        self.pending.append(rows)
        self.pending_rows += rows.shape[0]
        tile = self.writer.tile
        while self.pending_rows >= tile or (final and self.pending_rows):
            block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            take = min(tile, block.shape[0])
            band, rest = block[:take], block[take:]
            self.pending = [rest] if rest.shape[0] else []
            self.pending_rows = rest.shape[0]
            last = final and not self.pending_rows
            self.writer._write(self.level, self.index, self.written, band)
            self.written += band.shape[0]
            if self.child is not None:
                self.child.push(downsample(band), last)


class PyramidWriter:
    """Write one image's pyramid; call ``write_band`` for every band of every plane, then ``finish``."""

    def __init__(
        self,
        path: Path | str,
        shape: Sequence[int],
        dtype: str,
        tile: int = 256,
        codec: str = "lz4",
        name: str = "",
        scale: Sequence[float | None] = (None, None, None),
        channels: Sequence[dict[str, Any]] = (),
        levels: Sequence[tuple[int, int]] = (),
        objects: ObjectStore | None = None,
    ) -> None:
        """Create the arrays; ``levels`` are (height, width) of levels the file has after level 0.

        Those levels are written with ``write_band(..., level=n)`` exactly as the file stores
        them; further 2×2-mean levels follow the last of them until the longest side fits a tile.
        ``path`` is a new folder, or a store URL (written through ``objects``).
        """
        if tile % 2:
            raise ValueError("tile must be even")
        self.path = path
        self.objects = objects if is_remote(path) else None
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.tile = tile
        self.name = name
        self.scale = scale
        self.channels = list(channels)
        height, width = self.shape[3], self.shape[4]
        copied = [(height, width), *own_levels(height, width, levels)]
        self.copied = len(copied)
        self.shapes = copied[:-1] + level_shapes(*copied[-1], tile)
        if self.objects is None:
            if Path(path).exists():
                raise FileExistsError(path)
            Path(path).mkdir(parents=True)
        self._write_group_metadata()
        # PERF: tensorstore does not fsync each write; the writer flushes a band's shards in
        # the background and ``finish`` the rest, and an import that dies half-way is
        # discarded whole anyway.
        context = ts.Context({"cache_pool": {"total_bytes_limit": 0}, "file_io_sync": False})
        self.shard_width = tile * (SHARD_CHUNKS if self.objects is None else 1)
        codecs = sharded(CODECS[codec], tile) if self.objects is None else CODECS[codec]
        self.arrays: list[ts.TensorStore] = []
        for level, (height, width) in enumerate(self.shapes):
            spec = {
                "driver": "zarr3",
                "kvstore": self._kvstore(str(level)),
                "metadata": {
                    "shape": [*self.shape[:3], height, width],
                    "chunk_grid": {
                        "name": "regular",
                        "configuration": {"chunk_shape": [1, 1, 1, tile, self.shard_width]},
                    },
                    "chunk_key_encoding": {"name": "default"},
                    "data_type": self.dtype.name,
                    "fill_value": 0,
                    "codecs": codecs,
                    "dimension_names": list(AXES.lower()),
                },
                "create": True,
                # NOTE: every chunk, fill-valued ones too, so that a missing chunk of our own
                # pyramid is damage, never silently the fill value (see Pyramid).
                "store_data_equal_to_fill_value": True,
            }
            self.arrays.append(ts.open(spec, context=context).result())
        self._planes: dict[tuple[int, int, int, int], _Level] = {}
        # Each band in flight: its write futures and the shard files it writes.
        self._bands: collections.deque[tuple[list[Any], list[str]]] = collections.deque()
        # PERF: a band's shards are flushed to disk while the next bands are read and
        # encoded, not all at the end; ``finish`` then only flushes folders and metadata.
        self._flusher = (
            ThreadPoolExecutor(1, thread_name_prefix="flush") if self.objects is None else None
        )
        self._flushing: list[Future[None]] = []
        self._flushed: set[str] = set()

    def write_band(
        self, t: int, c: int, z: int, rows: np.ndarray, final: bool, level: int = 0
    ) -> None:
        """Add the next rows of plane (t, c, z) of ``level``; ``final`` marks its last band.

        Levels after 0 are written only for levels the file has (``copied``).
        """
        if not 0 <= level < self.copied:
            raise ValueError(f"level {level} is computed, not written (copied: {self.copied})")
        key = (t, c, z, level)
        found = self._planes.get(key)
        if found is None:
            found = self._planes[key] = _Level(self, level, (t, c, z))
        found.push(np.ascontiguousarray(rows, dtype=self.dtype), final)
        if final:
            del self._planes[key]

    def _write(self, level: int, index: tuple[int, int, int], y0: int, band: np.ndarray) -> None:
        t, c, z = index
        rows = self.arrays[level][t, c, z, y0 : y0 + band.shape[0], :]
        step, width = self.shard_width, band.shape[1]
        # NOTE: one write per shard (per chunk in an object store), each the whole shard
        # (bands are a row of chunks), so no shard is ever read back. A write spanning several
        # shards reports its first failure while the others still go on, and they would
        # recreate files of a pyramid already removed; one future per shard lets a failure
        # wait for every write still running.
        # PERF: let tensorstore encode and write while the next band is read; two bands in
        # flight keep memory bounded.
        starts = range(0, width, step)
        futures = [rows[:, x : min(x + step, width)].write(band[:, x : x + step]) for x in starts]
        folder = os.path.join(str(self.path), str(level), "c", str(t), str(c), str(z))
        row = str(y0 // self.tile)
        self._bands.append((futures, [os.path.join(folder, row, str(x // step)) for x in starts]))
        if len(self._bands) > 2:
            self._written(*self._bands.popleft())

    def _written(self, futures: list[Any], files: list[str]) -> None:
        """Wait for a band's writes, then have its files flushed in the background."""
        _wait(futures)
        if self._flusher is not None:
            self._flushing.append(self._flusher.submit(sync_files, files))
            self._flushed.update(files)

    def finish(self, channels: Sequence[dict[str, Any]] | None = None) -> None:
        """Wait for every write, record the final channel metadata and flush it all to disk."""
        while self._bands:
            self._written(*self._bands.popleft())
        self._stop_flushing()
        if self._planes:
            raise RuntimeError(f"planes not finished: {sorted(self._planes)}")
        if channels is not None:
            self.channels = list(channels)
            self._write_group_metadata()
        # NOTE: on disk before the catalog calls the image active, so a crash never leaves an
        # active image whose chunks were still only in memory. An object store has every
        # object once its PUT is answered.
        if self.objects is None:
            sync_tree(Path(self.path), self._flushed)

    def abort(self) -> None:
        """Drop everything written so far, once no write is running any more."""
        for futures, _files in self._bands:
            with contextlib.suppress(Exception):  # the pyramid is being thrown away
                _wait(futures)
        self._bands.clear()
        with contextlib.suppress(Exception):  # flushing what is thrown away may fail
            self._stop_flushing()
        if self.objects is not None:
            with contextlib.suppress(Exception):  # an unreachable store keeps what it has
                self.objects.delete_tree(str(self.path))
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def _stop_flushing(self) -> None:
        """Wait for the background flushes; raise the first that failed."""
        if self._flusher is None:
            return
        self._flusher.shutdown(wait=True)
        self._flusher = None
        _wait(self._flushing)

    def _kvstore(self, relative: str) -> dict[str, Any]:
        if self.objects is not None:
            return self.objects.kvstore(join(str(self.path), relative))
        return {"driver": "file", "path": str(Path(self.path) / relative)}

    def _write_group_metadata(self) -> None:
        attributes = {
            "ome": ome_metadata(self.name, self.shapes, self.shape, self.scale, self.channels),
            OWN_ATTRIBUTES: {"every_chunk_stored": True},
        }
        document = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
        text = json.dumps(document, indent=2)
        if self.objects is not None:
            self.objects.put(join(str(self.path), "zarr.json"), text.encode())
        else:
            (Path(self.path) / "zarr.json").write_text(text)


def _wait(futures: list[Any]) -> None:
    """Wait for every future, then raise the first failure among them."""
    failure: BaseException | None = None
    for future in futures:
        try:
            future.result()
        except Exception as exc:  # re-raised below, once all are done
            failure = failure or exc
    if failure is not None:
        raise failure
