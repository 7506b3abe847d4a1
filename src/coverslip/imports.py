"""The import pipeline: original → pyramid → statistics → thumbnail → catalog, with status.

An image runs queued → importing → active. Any failure removes what was written for it, so
no image is left active, and no half-written pyramid or original stays behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from coverslip import formats
from coverslip.cache import RenderCache
from coverslip.catalog import Catalog, Channel, Image
from coverslip.errors import CoverslipError, Duplicate, ImportFailed
from coverslip.home import Home
from coverslip.pixels import Pyramid, PyramidError, PyramidWriter

DEFAULT_COLORS = ("FF0000", "00FF00", "0000FF", "FF00FF", "FFFF00", "00FFFF", "FFFFFF")
COPY_BLOCK = 4 * 1024 * 1024

Progress = Callable[[int, int], None]  # (pixel bytes done, pixel bytes in all)
Thumbnailer = Callable[[Pyramid, Image], None]


@dataclass
class ImportOptions:
    """How to import one file."""

    name: str | None = None
    dataset_id: int | None = None
    owner_id: int | None = None
    group_id: int | None = None
    axes: str | None = None
    in_place: bool = False
    allow_duplicate: bool = False
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Digest:
    """Size and checksums of an original, computed while it was copied."""

    size: int = 0
    sha512: Any = field(default_factory=hashlib.sha512)
    md5: Any = field(default_factory=hashlib.md5)

    def update(self, block: bytes) -> None:
        self.size += len(block)
        self.sha512.update(block)
        self.md5.update(block)


def copy_hashed(
    source: BinaryIO, target: BinaryIO, digest: Digest, progress: Progress | None = None
) -> None:
    """Copy ``source`` to ``target`` block by block, feeding ``digest``."""
    while block := source.read(COPY_BLOCK):
        target.write(block)
        digest.update(block)
        if progress:
            progress(digest.size, 0)


def _tree_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def hash_tree(root: Path) -> Digest:
    """Return the digest of a folder: every file's relative path and bytes, in sorted order."""
    digest = Digest()
    for path in _tree_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(COPY_BLOCK):
                digest.update(block)
    return digest


def _stats_dtype(values: np.ndarray) -> tuple[float, float] | None:
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if not finite.size:
            return None
        return float(finite.min()), float(finite.max())
    return float(values.min()), float(values.max())


class ChannelStats:
    """Running min and max of each channel."""

    def __init__(self, size_c: int) -> None:
        self.low = [np.inf] * size_c
        self.high = [-np.inf] * size_c

    def add(self, c: int, values: np.ndarray) -> None:
        found = _stats_dtype(values)
        if found is not None:
            self.low[c] = min(self.low[c], found[0])
            self.high[c] = max(self.high[c], found[1])

    def channels(self, meta: formats.ImageMeta) -> list[Channel]:
        """Return the channels with names, colours, statistics and a default window.

        The window is the channel's min to max, except for 8-bit red/green/blue images (photos,
        RGB TIFFs): stretching each of their channels on its own would change the colours, so
        their window is the full 0 to 255.
        """
        result = []
        colors = [(ch.color or "").upper() for ch in meta.channels]
        photo = meta.pixel_type == "uint8" and colors == ["FF0000", "00FF00", "0000FF"]
        for c in range(meta.size_c):
            given = meta.channels[c] if c < len(meta.channels) else formats.ChannelMeta(name="")
            low, high = self.low[c], self.high[c]
            if not np.isfinite(low):
                low, high = 0.0, 1.0
            if meta.size_c == 1 and not given.color:
                color = "FFFFFF"
            else:
                color = (given.color or DEFAULT_COLORS[c % len(DEFAULT_COLORS)]).upper()
            result.append(
                Channel(
                    index=c,
                    name=given.name or f"Channel {c + 1}",
                    color=color,
                    min=low,
                    max=high,
                    window_start=0.0 if photo else low,
                    window_end=255.0 if photo else high,
                    emission_wave=given.emission_wave,
                )
            )
        return result


class Importer:
    """Import files into one instance home."""

    def __init__(
        self,
        home: Home,
        catalog: Catalog,
        tile: int = 256,
        codec: str = "lz4",
        thumbnailer: Thumbnailer | None = None,
        cache: RenderCache | None = None,
    ) -> None:
        self.home = home
        self.cache = cache
        self.catalog = catalog
        self.tile = tile
        self.codec = codec
        self.thumbnailer = thumbnailer

    def import_path(
        self, path: Path, options: ImportOptions, progress: Progress | None = None
    ) -> int:
        """Import ``path`` as a new image and return its id; on failure nothing is left behind."""
        path = Path(path)
        if not path.exists():
            raise ImportFailed(f"{path}: no such file")
        reader = self._open(path, options)
        owner_id, group_id = options.owner_id, options.group_id
        if owner_id is None or group_id is None:
            owner_id, group_id = self.catalog.ensure_local_admin()
        name = options.name or reader.meta.name or path.name
        image_id = self.catalog.create_image(
            name,
            owner_id,
            group_id,
            status="queued",
            format=reader.meta.format,
            original_name=path.name,
            properties=options.properties,
        )
        try:
            self._original(path, image_id, options, reader, progress)
        except BaseException:
            reader.close()
            self.discard(image_id)
            raise
        reader.close()
        if options.dataset_id is not None:
            self.catalog.add_to_dataset(options.dataset_id, [image_id])
        return image_id

    def _original(
        self,
        path: Path,
        image_id: int,
        options: ImportOptions,
        reader: formats.Reader,
        progress: Progress | None,
    ) -> Digest:
        """Keep (or, in place, hash) the original and build the pyramid; refuse duplicates."""

        def keep() -> Digest:
            if options.in_place:
                return hash_tree(path) if path.is_dir() else self._hash_file(path)
            return self._keep_original(path, image_id)

        def record(digest: Digest) -> None:
            self._check_duplicate(digest, options)
            self.catalog.update_image(
                image_id,
                sha512=digest.sha512.hexdigest(),
                md5=digest.md5.hexdigest(),
                original_size=digest.size,
            )

        size = path.stat().st_size if path.is_file() else None
        if options.allow_duplicate or size is None or not self.catalog.original_size_exists(size):
            # PERF: copying and hashing the original (I/O and hashlib, which release the GIL)
            # runs beside the pyramid build; only a file of a size seen before is hashed first.
            with ThreadPoolExecutor(1, thread_name_prefix="original") as pool:
                copying = pool.submit(keep)
                try:
                    self.build(image_id, reader, options, progress, source=path, activate=False)
                finally:
                    digest = copying.result()
            record(digest)
        else:
            digest = keep()
            record(digest)
            self.build(image_id, reader, options, progress, source=path, activate=False)
        self.catalog.set_status(image_id, "active", expect=["importing"])
        return digest

    def build(
        self,
        image_id: int,
        reader: formats.Reader,
        options: ImportOptions,
        progress: Progress | None = None,
        source: Path | None = None,
        activate: bool = True,
    ) -> None:
        """Turn an image whose original is kept into an active one: pyramid, stats, thumbnail.

        Raises ImportFailed on bad content; the caller decides what becomes of the image row.
        With ``activate`` False the image stays "importing" for the caller to finish.
        """
        self.catalog.set_status(image_id, "importing")
        meta = reader.meta
        target = self.home.pyramid(image_id)
        try:
            if options.in_place and source is not None and source.is_dir():
                stats = self._scan(reader, progress)
                pyramid = self._open_pyramid(source)
                pyramid_path: str | None = str(source.resolve())
                chunks = pyramid.levels[0].array.chunk_layout.read_chunk.shape
                tile = int(chunks[-1] or self.tile) if chunks else self.tile
            else:
                stats = self._write(target, reader, progress)
                pyramid = self._open_pyramid(target)
                pyramid_path = None
                tile = self.tile
            channels = stats.channels(meta)
            self.catalog.set_channels(image_id, channels)
            self.catalog.update_image(
                image_id,
                size_t=meta.size_t,
                size_c=meta.size_c,
                size_z=meta.size_z,
                size_y=meta.size_y,
                size_x=meta.size_x,
                pixel_type=meta.pixel_type,
                physical_size_x=meta.physical_size_x,
                physical_size_y=meta.physical_size_y,
                physical_size_z=meta.physical_size_z,
                levels=len(pyramid.levels),
                tile_size=int(tile),
                pyramid_path=pyramid_path,
                format=meta.format,
            )
            if self.thumbnailer is not None:
                self.thumbnailer(pyramid, self.catalog.get_image(image_id))
            if activate:
                self.catalog.set_status(image_id, "active", expect=["importing"])
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise ImportFailed(f"cannot write the pyramid: {exc.strerror or exc}") from None
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise

    def remove_files(self, image_id: int) -> None:
        """Remove the pyramid, the original and the cached renders of an image."""
        shutil.rmtree(self.home.pyramid(image_id), ignore_errors=True)
        shutil.rmtree(self.home.original_dir(image_id), ignore_errors=True)
        if self.cache is not None:
            self.cache.drop_image(image_id)

    def discard(self, image_id: int) -> None:
        """Remove an image and everything written for it."""
        self.remove_files(image_id)
        with contextlib.suppress(CoverslipError):
            self.catalog.delete_image(image_id)

    # -- steps --------------------------------------------------------------------------

    @staticmethod
    def _open(path: Path, options: ImportOptions) -> formats.Reader:
        if options.in_place and formats.detect(path) != "ome-zarr":
            raise ImportFailed(f"{path}: --in-place registers OME-Zarr folders only")
        try:
            return formats.open_reader(path, options.axes)
        except CoverslipError:
            raise
        except MemoryError:
            raise ImportFailed(f"{path}: too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - a reader failing in an unforeseen way
            raise ImportFailed(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _hash_file(path: Path) -> Digest:
        digest = Digest()
        with path.open("rb") as handle:
            while block := handle.read(COPY_BLOCK):
                digest.update(block)
        return digest

    def _keep_original(self, path: Path, image_id: int) -> Digest:
        folder = self.home.original_dir(image_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            if path.is_dir():
                shutil.copytree(path, folder / path.name)
                return hash_tree(folder / path.name)
            digest = Digest()
            with path.open("rb") as source, (folder / path.name).open("wb") as target:
                copy_hashed(source, target, digest)
            return digest
        except OSError as exc:
            raise ImportFailed(f"cannot keep the original: {exc.strerror or exc}") from None

    def _check_duplicate(self, digest: Digest, options: ImportOptions) -> None:
        if options.allow_duplicate:
            return
        existing = self.catalog.find_by_sha512(digest.sha512.hexdigest())
        if existing is not None:
            raise Duplicate(existing)

    def _bands(
        self, reader: formats.Reader, progress: Progress | None
    ) -> Iterator[tuple[int, int, int, np.ndarray, bool]]:
        meta = reader.meta
        height = meta.size_y
        band = self.tile
        total = (
            meta.size_t
            * meta.size_c
            * meta.size_z
            * height
            * meta.size_x
            * np.dtype(meta.pixel_type).itemsize
        )
        done = 0
        for t in range(meta.size_t):
            for c in range(meta.size_c):
                for z in range(meta.size_z):
                    for y0 in range(0, height, band):
                        y1 = min(height, y0 + band)
                        try:
                            rows = reader.read_band(t, c, z, y0, y1)
                        except CoverslipError:
                            raise
                        except MemoryError:
                            raise ImportFailed("too large to decode") from None
                        except Exception as exc:  # noqa: BLE001 - corrupt data fails in many ways
                            raise ImportFailed(
                                f"rows {y0}:{y1} of plane t={t} c={c} z={z} cannot be read ({exc})"
                            ) from None
                        if rows.shape != (y1 - y0, meta.size_x):
                            raise ImportFailed(
                                f"reader gave {rows.shape} for rows {y0}:{y1}, expected {(y1 - y0, meta.size_x)}"
                            )
                        yield t, c, z, rows, y1 == height
                        done += rows.nbytes
                        if progress:
                            progress(done, total)

    def _scan(self, reader: formats.Reader, progress: Progress | None) -> ChannelStats:
        stats = ChannelStats(reader.meta.size_c)
        for _t, c, _z, rows, _final in self._bands(reader, progress):
            stats.add(c, rows)
        return stats

    def _write(
        self, target: Path, reader: formats.Reader, progress: Progress | None
    ) -> ChannelStats:
        meta = reader.meta
        shutil.rmtree(target, ignore_errors=True)
        writer = PyramidWriter(
            target,
            meta.shape,
            meta.pixel_type,
            tile=self.tile,
            codec=self.codec,
            name=meta.name,
            scale=(meta.physical_size_x, meta.physical_size_y, meta.physical_size_z),
        )
        stats = ChannelStats(meta.size_c)
        try:
            for t, c, z, rows, final in self._bands(reader, progress):
                stats.add(c, rows)
                writer.write_band(t, c, z, rows, final)
            writer.finish([vars(ch) for ch in stats.channels(meta)])
        except BaseException:
            writer.abort()
            raise
        return stats

    @staticmethod
    def _open_pyramid(path: Path) -> Pyramid:
        try:
            return Pyramid(path)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
