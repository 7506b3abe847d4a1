"""Open an OME-Zarr pyramid (ours, or a registered 0.4/0.5 one) and read planes, regions and tiles."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
from numcodecs import Blosc

from coverslip.pixels.objects import (
    ObjectStore,
    WebStore,
    answer,
    check_key,
    is_remote,
    join,
    source_for,
)

AXES = "TCZYX"
# The group attribute where this store marks its own pyramids ({"every_chunk_stored": true}).
OWN_ATTRIBUTES = "coverslip"

# NOTE: no chunk cache: the render cache keeps what is worth keeping, and every worker
# process would otherwise hold its own copy of the same chunks.
_PIXELS = "the object store holding the pixels"  # what does not answer, when a read fails
# An object store that stops answering fails a read after two quick retries (then 503), not
# after tensorstore's default of 32.
_CONTEXT = ts.Context(
    {
        "cache_pool": {"total_bytes_limit": 0},
        "data_copy_concurrency": {"limit": 1},
        "s3_request_retries": {"max_retries": 2, "initial_delay": "20ms", "max_delay": "200ms"},
    }
)


class DamagedPixels(Exception):
    """A chunk of one of our own pyramids is missing or does not decode.

    Our pyramids store every chunk, so a missing one is damage (a crash, a disk fault, a
    deleted file), never the fill value. The message names the chunk, not the path.
    """


class PyramidError(Exception):
    """The pyramid is missing or not an OME-Zarr image this store reads.

    # SECURITY: messages name paths relative to the pyramid's folder only, never the
    # instance home or a tensorstore spec: they reach the people who upload files.
    """


def confined(root: Path, relative: object) -> Path:
    """Return ``root / relative`` if it stays inside ``root`` after resolving symlinks.

    # SECURITY: paths inside OME-Zarr metadata come from whoever wrote the file. An absolute
    # path, ``..``, or a symlink out of the folder would read another image's pixels.
    """
    text = str(relative)
    if not isinstance(relative, str) or not text or "\\" in text or "\0" in text:
        raise PyramidError(f"the path {text[:80]!r} in the metadata is not a relative path")
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts:
        raise PyramidError(f"the path {text[:80]!r} in the metadata leaves the image folder")
    target = root / text
    try:
        inside = target.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise PyramidError(f"the path {text[:80]!r} in the metadata leaves the image folder")
    return target


def confined_key(url: str, relative: object) -> str:
    """Return the store URL of ``relative`` below ``url``, refusing keys that leave it."""
    text = str(relative)
    if not isinstance(relative, str) or not text or text.startswith("/"):
        raise PyramidError(f"the path {text[:80]!r} in the metadata is not a relative path")
    try:
        check_key(join(url, text))
    except ValueError:
        raise PyramidError(
            f"the path {text[:80]!r} in the metadata leaves the image folder"
        ) from None
    return join(url, text)


def escaping_links(root: Path) -> list[str]:
    """Return the symlinks under ``root`` (relative names) that resolve outside it."""
    base = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            entry = Path(dirpath) / name
            if entry.is_symlink():
                try:
                    inside = entry.resolve().is_relative_to(base)
                except (OSError, RuntimeError):
                    inside = False
                if not inside:
                    found.append(str(entry.relative_to(root)))
    return sorted(found)


def level_shapes(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Return (height, width) of every level: halve (rounding up) until the longest side fits a tile."""
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def ome_metadata(
    name: str,
    shapes: Sequence[tuple[int, int]],
    shape: Sequence[int],
    scale: Sequence[float | None],
    channels: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Return the ``ome`` attributes of an OME-Zarr 0.5 image group."""
    sx, sy, sz = (s or 1.0 for s in scale)
    axes: list[dict[str, Any]] = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    datasets = []
    for level, (height, width) in enumerate(shapes):
        fy, fx = shape[3] / height, shape[4] / width
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, sz, sy * fy, sx * fx]}
                ],
            }
        )
    meta: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": datasets,
                "type": "mean",
                "metadata": {"method": "2x2 mean, half up"},
            }
        ],
    }
    if channels:
        meta["omero"] = {
            "channels": [
                {
                    "label": ch["name"],
                    "color": ch["color"],
                    "active": True,
                    "window": {
                        "min": ch["min"],
                        "max": ch["max"],
                        "start": ch["window_start"],
                        "end": ch["window_end"],
                    },
                }
                for ch in channels
            ],
            "rdefs": {
                "model": "color" if len(channels) > 1 else "greyscale",
                "defaultZ": shape[2] // 2,
                "defaultT": 0,
            },
        }
    return meta


def axis_names(multiscale: dict[str, Any]) -> list[str]:
    """Return the lower-case axis names of a multiscales entry (t, c, z, y, x when it has none)."""
    return [
        str(axis.get("name") if isinstance(axis, dict) else axis).lower()
        for axis in multiscale.get("axes") or ["t", "c", "z", "y", "x"]
    ]


def read_group(
    path: Path | str, objects: ObjectStore | None = None
) -> tuple[str, dict[str, Any], bool]:
    """Return (zarr format "2" or "3", the image attributes, whether every chunk is stored).

    ``path`` is a folder, or an object-store URL read through ``objects``. Only pyramids this
    store wrote say that every chunk is stored.
    """
    try:
        v3 = _read_text(path, "zarr.json", objects)
        if v3 is not None:
            attrs = json.loads(v3).get("attributes", {})
            own = attrs.get(OWN_ATTRIBUTES)
            dense = isinstance(own, dict) and own.get("every_chunk_stored") is True
            return "3", attrs.get("ome", attrs), dense
        v2 = _read_text(path, ".zattrs", objects)
        if v2 is not None:
            return "2", json.loads(v2), False
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise PyramidError(f"unreadable group metadata ({reason})") from None
    raise PyramidError("not a Zarr group")


def _read_text(where: Path | str, name: str, objects: ObjectStore | None) -> str | None:
    """Return the text of the file ``name`` in the folder or store folder ``where``, or None."""
    if is_remote(where):
        data = _source(str(where), objects).get(join(str(where), name))
        return None if data is None else data.decode()
    target = Path(where) / name
    return target.read_text() if target.exists() else None


def _source(url: str, objects: ObjectStore | None) -> ObjectStore | WebStore:
    found = source_for(url, objects)
    if found is None:
        raise PyramidError("the pixels are in an object store this server is not set up for")
    return found


@dataclass(frozen=True)
class Level:
    """One level: a tensorstore array and where T, C, Z, Y, X are among its dimensions."""

    array: ts.TensorStore
    dims: tuple[int | None, ...]  # index of T, C, Z, Y, X in the array, None if absent
    height: int
    width: int
    chunks: DirectChunks | None = None


# An empty slot of a shard index: that chunk is not stored.
_EMPTY = 2**64 - 1
# Shard indexes kept per level; a 32-chunk index is 516 bytes.
_INDEXES = 4096


def _layout(meta: dict[str, Any]) -> tuple[list[int], list[int], list[dict[str, Any]]] | None:
    """Return (shard shape, chunk shape, chunk codecs) if we read this array directly, else None.

    An unsharded array is its own shard of one chunk. A sharded one must keep its index at
    the end, as little-endian (offset, size) pairs followed by a CRC32C, as we write them.
    """
    grid = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
    codecs = meta.get("codecs", [])
    chunk, inner = grid, codecs
    if len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        conf = codecs[0].get("configuration", {})
        chunk, inner = conf.get("chunk_shape", []), conf.get("codecs", [])
        index = conf.get("index_codecs", [])
        if (
            conf.get("index_location", "end") != "end"
            or [codec.get("name") for codec in index] != ["bytes", "crc32c"]
            or index[0].get("configuration", {}).get("endian", "little") != "little"
            or len(chunk) != len(grid)
            or any(whole % part for whole, part in zip(grid, chunk, strict=False))
        ):
            return None
    encoding = meta.get("chunk_key_encoding", {})
    if (
        meta.get("dimension_names") != list(AXES.lower())
        or encoding.get("name") != "default"
        or encoding.get("configuration", {}).get("separator", "/") != "/"
        or [codec.get("name") for codec in inner] not in (["bytes"], ["bytes", "blosc"])
        or inner[0].get("configuration", {}).get("endian", "little") != "little"
        or len(grid) != 5
        or grid[:3] != [1, 1, 1]
        or chunk[:3] != [1, 1, 1]
    ):
        return None
    return grid, chunk, inner


class DirectChunks:
    """Read the chunks of one of our own Zarr v3 arrays straight from their files.

    # PERF: a 256² tile is one chunk; opening its file and decompressing it here takes about
    # 80 µs, where a tensorstore read costs 150 µs idle and much more under load (thread
    # hand-offs). Only arrays this store wrote qualify: TCZYX, default chunk keys, chunks
    # of one plane, and the bytes codec optionally followed by blosc, in shards of a row of
    # chunks or not sharded. A shard's index is read once and kept, so a chunk in a shard
    # is one ranged read.
    """

    def __init__(self, path: Path, meta: dict[str, Any], dense: bool = False) -> None:
        layout = _layout(meta)
        assert layout is not None, "check qualifies() first"
        shard, chunk, codecs = layout
        self.path = path
        self.level_name = path.name
        self.dense = dense  # every chunk is stored: a missing one is damage
        # PERF: chunk names are built as text; six pathlib joins cost 20 µs a chunk.
        self._prefix = f"{path}{os.sep}c{os.sep}"
        self.chunk_y, self.chunk_x = chunk[3:]
        self.per_y, self.per_x = shard[3] // chunk[3], shard[4] // chunk[4]
        self.sharded = shard != chunk
        self.index_bytes = self.per_y * self.per_x * 16 + 4
        self._indexes: dict[str, np.ndarray] = {}
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        self.fill = meta.get("fill_value", 0) or 0
        self.blosc = Blosc() if len(codecs) == 2 else None

    @staticmethod
    def qualifies(meta: dict[str, Any]) -> bool:
        """Return whether an array's metadata is of the kind this store writes."""
        return _layout(meta) is not None

    @classmethod
    def for_array(cls, path: Path, dense: bool = False) -> DirectChunks | None:
        """Return a reader for the array at ``path`` if it is one this store wrote, else None."""
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        return cls(path, meta, dense) if cls.qualifies(meta) else None

    def _key(self, t: int, c: int, z: int, cy: int, cx: int) -> tuple[str, int]:
        """Return the key of the object holding chunk (cy, cx), and its slot in the shard."""
        sy, iy = divmod(cy, self.per_y)
        sx, ix = divmod(cx, self.per_x)
        return f"{t}/{c}/{z}/{sy}/{sx}", iy * self.per_x + ix

    def _keep_index(self, key: str, data: bytes, where: str) -> np.ndarray:
        """Return a shard's (offset, size) pairs from the bytes at its end, and keep them."""
        if len(data) != self.index_bytes:
            raise DamagedPixels(f"the shard index of {where} is truncated")
        index = np.frombuffer(data, dtype="<u8", count=(self.index_bytes - 4) // 8).reshape(-1, 2)
        if len(self._indexes) >= _INDEXES:
            self._indexes.clear()
        self._indexes[key] = index
        return index

    @staticmethod
    def _slot(index: np.ndarray, slot: int) -> tuple[int, int] | None:
        """Return (offset, size) of a chunk in its shard; None: not stored."""
        offset, length = (int(v) for v in index[slot])
        return None if offset == _EMPTY else (offset, length)

    def read(
        self, plane: tuple[int, int, int], y: slice, x: slice, height: int, width: int
    ) -> np.ndarray:
        """Return rows ``y`` and columns ``x`` (bounded slices) of one (t, c, z) plane."""
        y0, y1, _ = y.indices(height)
        x0, x1, _ = x.indices(width)
        t, c, z = plane
        if y0 % self.chunk_y == x0 % self.chunk_x == 0 and (y1 - y0, x1 - x0) == (
            self.chunk_y,
            self.chunk_x,
        ):  # a whole chunk, as tiles are
            return self._chunk(t, c, z, y0 // self.chunk_y, x0 // self.chunk_x)
        out = np.empty((y1 - y0, x1 - x0), dtype=self.dtype)
        for cy in range(y0 // self.chunk_y, (y1 - 1) // self.chunk_y + 1):
            for cx in range(x0 // self.chunk_x, (x1 - 1) // self.chunk_x + 1):
                chunk = self._chunk(t, c, z, cy, cx)
                top, left = cy * self.chunk_y, cx * self.chunk_x
                ya, yb = max(y0, top), min(y1, top + self.chunk_y)
                xa, xb = max(x0, left), min(x1, left + self.chunk_x)
                out[ya - y0 : yb - y0, xa - x0 : xb - x0] = chunk[
                    ya - top : yb - top, xa - left : xb - left
                ]
        return out

    def _chunk(self, t: int, c: int, z: int, cy: int, cx: int) -> np.ndarray:
        return self._decode(self._stored(t, c, z, cy, cx), t, c, z, cy, cx)

    def _stored(self, t: int, c: int, z: int, cy: int, cx: int) -> bytes | None:
        """Return the stored bytes of one chunk, None when it is not stored."""
        key, slot = self._key(t, c, z, cy, cx)
        name = self._prefix + (key if os.sep == "/" else key.replace("/", os.sep))
        if not self.sharded:
            try:
                with open(name, "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            index = self._indexes.get(name)
            if index is None:
                tail = os.pread(fd, self.index_bytes, max(0, size - self.index_bytes))
                index = self._keep_index(name, tail, self._name(t, c, z, cy, cx))
            found = self._slot(index, slot)
            if found is None:
                return None
            if sum(found) > size:
                raise DamagedPixels(
                    f"{self._name(t, c, z, cy, cx)} points past the end of its shard"
                )
            return os.pread(fd, found[1], found[0])
        finally:
            os.close(fd)

    def _decode(self, raw: bytes | None, t: int, c: int, z: int, cy: int, cx: int) -> np.ndarray:
        """Return the chunk's pixels from its stored bytes (None: it is not stored)."""
        if raw is None:
            if self.dense:
                raise DamagedPixels(f"{self._name(t, c, z, cy, cx)} is missing") from None
            return np.full((self.chunk_y, self.chunk_x), self.fill, dtype=self.dtype)
        try:
            data = self.blosc.decode(raw) if self.blosc is not None else raw
            return np.frombuffer(data, dtype=self.dtype).reshape(self.chunk_y, self.chunk_x)
        except (RuntimeError, ValueError) as exc:  # numcodecs and numpy on damaged bytes
            raise DamagedPixels(f"{self._name(t, c, z, cy, cx)} does not decode ({exc})") from None

    def _name(self, t: int, c: int, z: int, cy: int, cx: int) -> str:
        return f"chunk {cy},{cx} of plane t={t} c={c} z={z} at level {self.level_name}"

    def read_planes(
        self, planes: Sequence[tuple[int, int, int]], y: slice, x: slice, height: int, width: int
    ) -> np.ndarray:
        """Return an (N, Y, X) array: the region of each (t, c, z) plane."""
        return np.stack([self.read(plane, y, x, height, width) for plane in planes])


class StoredChunks(DirectChunks):
    """Read the chunks of one of our own arrays from an object store: one GET per chunk.

    # PERF: every chunk a request needs is asked for at once, so a tile of three channels
    # waits for one round trip, not three; tensorstore's kvstore reuses its connections.
    """

    def __init__(self, kvstore: ts.KvStore, name: str, meta: dict[str, Any], dense: bool) -> None:
        super().__init__(Path(name), meta, dense)
        self.kvstore = kvstore

    def read_planes(
        self, planes: Sequence[tuple[int, int, int]], y: slice, x: slice, height: int, width: int
    ) -> np.ndarray:
        y0, y1, _ = y.indices(height)
        x0, x1, _ = x.indices(width)
        rows = range(y0 // self.chunk_y, (y1 - 1) // self.chunk_y + 1)
        columns = range(x0 // self.chunk_x, (x1 - 1) // self.chunk_x + 1)
        wanted = [(plane, cy, cx) for plane in planes for cy in rows for cx in columns]
        keys = [self._key(*plane, cy, cx) for plane, cy, cx in wanted]
        if self.sharded:
            self._fetch_indexes({key for key, _slot in keys})
        futures = [self._request(key, slot) for key, slot in keys]
        out = np.empty((len(planes), y1 - y0, x1 - x0), dtype=self.dtype)
        for number, ((plane, cy, cx), future) in enumerate(zip(wanted, futures, strict=True)):
            raw = None if future is None else answer(future, _PIXELS)
            chunk = self._decode(raw, *plane, cy, cx)
            top, left = cy * self.chunk_y, cx * self.chunk_x
            ya, yb = max(y0, top), min(y1, top + self.chunk_y)
            xa, xb = max(x0, left), min(x1, left + self.chunk_x)
            out[number // (len(rows) * len(columns)), ya - y0 : yb - y0, xa - x0 : xb - x0] = chunk[
                ya - top : yb - top, xa - left : xb - left
            ]
        return out

    def _fetch_indexes(self, keys: set[str]) -> None:
        """Read the index of every shard in ``keys`` not yet known, all at once."""
        missing = sorted(key for key in keys if key not in self._indexes)
        tail = slice(-self.index_bytes, None)
        reads = [self.kvstore.read(f"c/{key}", byte_range=tail) for key in missing]
        for key, future in zip(missing, reads, strict=True):
            found = answer(future, _PIXELS)
            if found is not None:
                self._keep_index(key, found, f"shard {key} at level {self.level_name}")

    def _request(self, key: str, slot: int) -> Any:
        """Start the read of one chunk; None when it is not stored."""
        if not self.sharded:
            return self.kvstore.read(f"c/{key}")
        index = self._indexes.get(key)
        found = None if index is None else self._slot(index, slot)
        if found is None:
            return None
        offset, length = found
        return self.kvstore.read(f"c/{key}", byte_range=slice(offset, offset + length))

    def _chunk(self, t: int, c: int, z: int, cy: int, cx: int) -> np.ndarray:
        return self.read_planes(
            [(t, c, z)],
            slice(cy * self.chunk_y, (cy + 1) * self.chunk_y),
            slice(cx * self.chunk_x, (cx + 1) * self.chunk_x),
            (cy + 1) * self.chunk_y,
            (cx + 1) * self.chunk_x,
        )[0]


class Pyramid:
    """An open pyramid; cheap to read from many times, so keep it open."""

    def __init__(self, path: Path | str, objects: ObjectStore | None = None) -> None:
        """Open the pyramid in the folder ``path``, or at the store URL ``path`` through ``objects``."""
        self.path = path
        self.remote = is_remote(path)
        zarr_format, attrs, dense = read_group(path, objects)
        source = _source(str(path), objects) if self.remote else None
        multiscales = attrs.get("multiscales")
        if not multiscales:
            raise PyramidError("no multiscales metadata")
        first = multiscales[0]
        names = axis_names(first)
        dims = tuple(names.index(a.lower()) if a.lower() in names else None for a in AXES)
        if dims[3] is None or dims[4] is None:
            raise PyramidError(f"multiscales axes {names} lack y or x")
        driver = "zarr3" if zarr_format == "3" else "zarr"
        self.levels: list[Level] = []
        datasets = first.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            raise PyramidError("multiscales metadata lists no datasets")
        for dataset in datasets:
            relative = dataset.get("path") if isinstance(dataset, dict) else None
            if source is not None:
                kvstore = source.kvstore(confined_key(str(path), relative))
            else:
                folder = confined(Path(path), relative)
                kvstore = {"driver": "file", "path": str(folder)}
            direct: DirectChunks | None = None
            try:
                array = ts.open(
                    {"driver": driver, "kvstore": kvstore, "open": True},
                    context=_CONTEXT,
                    read=True,
                ).result()
                if driver == "zarr3" and self.remote and array.kvstore is not None:
                    meta = json.loads(array.kvstore.read("zarr.json").result().value)
                    if DirectChunks.qualifies(meta):
                        direct = StoredChunks(array.kvstore, str(relative), meta, dense)
            except Exception:  # noqa: BLE001 - tensorstore raises ValueError and others
                if source is not None:
                    source.ping()  # a store that does not answer is 503, not a bad pyramid
                # SECURITY: tensorstore's message spells out the spec and absolute paths.
                raise PyramidError(
                    f"level {relative!r} is not a Zarr array this server reads"
                ) from None
            shape = array.shape
            if driver == "zarr3" and not self.remote:
                direct = DirectChunks.for_array(folder, dense)
            self.levels.append(Level(array, dims, int(shape[dims[3]]), int(shape[dims[4]]), direct))
        full = self.levels[0].array.shape
        self.shape = tuple(int(full[d]) if d is not None else 1 for d in dims)
        self.dtype = np.dtype(self.levels[0].array.dtype.numpy_dtype)

    @property
    def size_x(self) -> int:
        return self.shape[4]

    @property
    def size_y(self) -> int:
        return self.shape[3]

    def level_for(self, scale: float) -> int:
        """Return the coarsest level that still has at least ``scale`` × full resolution."""
        best = 0
        for index, level in enumerate(self.levels):
            if (
                level.width >= self.size_x * scale - 1e-9
                and level.height >= self.size_y * scale - 1e-9
            ):
                best = index
        return best

    def damage(self, limit: int = 20) -> list[str]:
        """Return what is damaged (at most ``limit`` findings): chunks missing or not decoding.

        In our own pyramids every chunk must be there; in a registered OME-Zarr a missing
        chunk is its fill value, so only what is stored is read.
        """
        found: list[str] = []
        size_t, size_c, size_z = self.shape[:3]
        planes = [(t, c, z) for t in range(size_t) for c in range(size_c) for z in range(size_z)]
        for number, lv in enumerate(self.levels):
            for plane in planes:
                for problem in _level_damage(lv, number, plane):
                    found.append(problem)
                    if len(found) >= limit:
                        return found
        return found

    def read(self, level: int, t: int, c: int, z: int, y: slice, x: slice) -> np.ndarray:
        """Return the (Y, X) pixels of plane (t, c, z) within rows ``y`` and columns ``x`` of ``level``."""
        return self.read_planes(level, [(t, c, z)], y, x)[0]

    def read_planes(
        self, level: int, planes: Sequence[tuple[int, int, int]], y: slice, x: slice
    ) -> np.ndarray:
        """Return an (N, Y, X) array: the region of each (t, c, z) plane, read concurrently."""
        lv = self.levels[level]
        if lv.chunks is not None:
            return lv.chunks.read_planes(planes, y, x, lv.height, lv.width)
        futures = []
        for plane in planes:
            index: list[Any] = [0] * lv.array.rank
            for value, dim in zip((*plane, y, x), lv.dims, strict=True):
                if dim is not None:
                    index[dim] = value
            futures.append(lv.array[tuple(index)].read())
        return np.stack([future.result() for future in futures])


def _level_damage(lv: Level, number: int, plane: tuple[int, int, int]) -> Iterator[str]:
    """Yield what is damaged in one plane of one level, band of chunks by band."""
    if lv.chunks is not None:
        chunks = lv.chunks
        for cy in range(-(-lv.height // chunks.chunk_y)):
            for cx in range(-(-lv.width // chunks.chunk_x)):
                try:
                    chunks._chunk(*plane, cy, cx)
                except DamagedPixels as exc:
                    yield str(exc)
        return
    dims = lv.dims
    rows = int(lv.array.chunk_layout.read_chunk.shape[dims[3]] or 256)  # type: ignore[index]
    for y0 in range(0, lv.height, rows):
        index: list[Any] = [0] * lv.array.rank
        band = slice(y0, min(y0 + rows, lv.height))  # the last band stops at the edge
        for value, dim in zip((*plane, band, slice(None)), dims, strict=True):
            if dim is not None:
                index[dim] = value
        try:
            lv.array[tuple(index)].read().result()
        except Exception:  # noqa: BLE001 - tensorstore raises ValueError and others
            t, c, z = plane
            yield f"rows {band.start}:{band.stop} of plane t={t} c={c} z={z} at level {number} do not read"
