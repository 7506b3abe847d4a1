"""The import pipeline: original → pyramid → statistics → thumbnail → catalog, with status.

An image runs queued → importing → active. Any failure removes what was written for it, so
no image is left active, and no half-written pyramid or original stays behind.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

from coverslip import formats
from coverslip.cache import RenderCache
from coverslip.catalog import Catalog, Channel, Image, ImageExtras
from coverslip.errors import (
    CoverslipError,
    Duplicate,
    ImportFailed,
    NoSpace,
    UnsupportedFormat,
    full_disk_is_no_space,
    is_no_space,
)
from coverslip.home import Home
from coverslip.metrics import metrics
from coverslip.pixels import Pyramid, PyramidError, PyramidWriter
from coverslip.pixels.durable import sync_tree
from coverslip.pixels.objects import SCHEME, ObjectStore, StoreUnavailable, check_key, join
from coverslip.render.settings import default_colors

RGB = ("FF0000", "00FF00", "0000FF")
COPY_BLOCK = 4 * 1024 * 1024
WRITEBACK = 64 * 1024 * 1024
READ_AHEAD = 1  # bands read ahead of the one being written (4 measured no faster)
HASH_BATCH = 4 * 1024 * 1024

T = TypeVar("T")
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
    # Told of every image the import creates, before its pixels are written (jobs keep them).
    on_image: Callable[[int], None] | None = None
    # Told of the fileset a received file makes, before anything goes into it (likewise).
    on_fileset: Callable[[int], None] | None = None


@dataclass
class Digest:
    """Size and checksums of an original, computed while it was copied.

    PERF: SHA-512 and MD5 take about 4 and 3 ms a megabyte here, one after the other more
    than an upload's receiving and writing. Blocks are gathered into batches that two shared
    threads hash, each checksum in its own, while the next batch arrives (hashlib lets go of
    the GIL for long inputs); at most one batch is hashed at a time, so memory stays at two.
    Blocks handed to ``update`` must not change afterwards. ``of_file`` hashes a file in a
    thread of its own, beside other work; its size and checksums are read once it is done.
    """

    _size: int = 0
    _sha512: Any = field(default_factory=hashlib.sha512)
    _md5: Any = field(default_factory=hashlib.md5)
    _batch: list[bytes] = field(default_factory=list)
    _batched: int = 0
    _running: list[Future[None]] = field(default_factory=list)
    _feeder: threading.Thread | None = None
    _failed: list[BaseException] = field(default_factory=list)

    @classmethod
    def of_file(cls, path: Path) -> Digest:
        """Start hashing the file at ``path`` (opened now: a later move or unlink is fine)."""
        digest = cls()
        handle = path.open("rb")

        def feed() -> None:
            try:
                with handle:
                    while block := handle.read(COPY_BLOCK):
                        digest.update(block)
            except BaseException as exc:  # noqa: BLE001 - raised where the digest is read
                digest._failed.append(exc)

        digest._feeder = threading.Thread(target=feed, name="hash-file", daemon=True)
        digest._feeder.start()
        return digest

    def update(self, block: bytes) -> None:
        self._size += len(block)
        self._batch.append(block)
        self._batched += len(block)
        if self._batched >= HASH_BATCH:
            self._send()

    @property
    def size(self) -> int:
        self._fed()
        return self._size

    @property
    def sha512(self) -> Any:
        self._finish()
        return self._sha512

    @property
    def md5(self) -> Any:
        self._finish()
        return self._md5

    def _fed(self) -> None:
        """Wait until the file of ``of_file`` is read; raise what reading it raised."""
        if self._feeder is not None and self._feeder is not threading.current_thread():
            self._feeder.join()
            self._feeder = None
        if self._failed:
            raise self._failed[0]

    def _send(self) -> None:
        data = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        self._batch, self._batched = [], 0
        self._wait()
        pool = _hash_pool()
        self._running = [
            pool.submit(self._sha512.update, data),
            pool.submit(self._md5.update, data),
        ]

    def _wait(self) -> None:
        for running in self._running:
            running.result()
        self._running = []

    def _finish(self) -> None:
        self._fed()
        if self._batch and not self._running:  # a small file: not worth the threads
            data = b"".join(self._batch)
            self._batch, self._batched = [], 0
            self._sha512.update(data)
            self._md5.update(data)
        elif self._batch:
            self._send()
        self._wait()


_POOL: list[tuple[int, ThreadPoolExecutor]] = []


def _hash_pool() -> ThreadPoolExecutor:
    """Return this process's two hashing threads (made after a fork, not inherited)."""
    if not _POOL or _POOL[0][0] != os.getpid():
        _POOL[:] = [(os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="hash"))]
    return _POOL[0][1]


def copy_hashed(
    source: BinaryIO, target: BinaryIO, digest: Digest, progress: Progress | None = None
) -> None:
    """Copy ``source`` to ``target`` block by block, feeding ``digest``.

    # PERF: every WRITEBACK bytes the written pages are handed to the disk and dropped from
    # the page cache, so the fsync at the end finds little left and a 2 GB copy neither
    # stalls on dirty memory nor pushes the pyramids' pages out: 2 GB copied and flushed in
    # 1.3–2.1 s here, against 2.2–6.4 s for the same copy and one fsync.
    """
    try:
        fileno: int | None = target.fileno()
        written = flushed = target.tell()
    except (OSError, ValueError):  # not a file (io.UnsupportedOperation is both)
        fileno, written, flushed = None, 0, 0
    while block := source.read(COPY_BLOCK):
        target.write(block)
        written += len(block)
        digest.update(block)
        if fileno is not None and written - flushed >= WRITEBACK:
            target.flush()
            os.posix_fadvise(fileno, flushed, written - flushed, os.POSIX_FADV_DONTNEED)
            flushed = written
        if progress:
            progress(digest.size, 0)


def _registered(source: Path | str | None) -> str | None:
    """Return where an image registered in place is read: its URL (see ``register_url``),
    or its OME-Zarr folder resolved; None when ``source`` is neither."""
    if isinstance(source, str):
        return source
    return str(source.resolve()) if source is not None and source.is_dir() else None


def _tree_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def hash_tree(root: Path) -> Digest:
    """Return the digest of a folder: every file's relative path and bytes, in sorted order."""
    return hash_files(root, root, Digest())


def hash_file(path: Path, digest: Digest) -> Digest:
    """Feed the bytes of ``path`` to ``digest`` and return it."""
    with path.open("rb") as handle:
        while block := handle.read(COPY_BLOCK):
            digest.update(block)
    return digest


def hash_files(folder: Path, base: Path, digest: Digest) -> Digest:
    """Feed every file under ``folder`` (its path relative to ``base``, then its bytes) to ``digest``."""
    for path in _tree_files(folder):
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        hash_file(path, digest)
    return digest


def _opened(path: Path, opener: Callable[[], T]) -> T:
    """Return what ``opener`` opens; a reader failing in an unforeseen way is an ImportFailed."""
    try:
        return opener()
    except CoverslipError:
        raise
    except MemoryError:
        raise ImportFailed(f"{path}: too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - a reader failing in an unforeseen way
        raise ImportFailed(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None


def _common_parent(files: list[Path]) -> Path | None:
    """Return the deepest folder holding every file of a set (None for one file)."""
    if len(files) == 1 and files[0].is_file():
        return None
    return Path(os.path.commonpath([str(f.resolve().parent) for f in files]))


def _member_names(path: Path, files: list[Path]) -> list[str]:
    """Return the files' paths relative to the folder a fileset keeps them in, ``path`` first."""
    members = [path, *(f for f in files if f.resolve() != path.resolve())]
    root = _common_parent(files)
    return [str(f.resolve().relative_to(root)) if root else f.name for f in members]


def extras_of(meta: formats.ImageMeta) -> ImageExtras:
    """Return what the catalog keeps of a file's metadata beyond sizes and channels."""
    return ImageExtras(
        series=meta.series,
        kind=meta.kind,
        objective=meta.objective,
        acquired=meta.acquired,
        time_increment=meta.time_increment,
        channels=[
            {"excitation_wave": ch.excitation_wave, "emission_wave": ch.emission_wave}
            for ch in meta.channels
        ],
        labels=list(meta.labels),
        original=dict(meta.original_metadata),
    )


def _ahead(
    read: Callable[[T], np.ndarray], steps: Iterable[T], depth: int = READ_AHEAD
) -> Iterator[tuple[T, np.ndarray]]:
    """Yield (step, ``read(step)``) for each step, reading up to ``depth`` steps ahead meanwhile.

    # PERF: decoders (libCZI, imagecodecs, zlib) release the GIL, so the next band is read
    # on the second core while this one is downsampled and written. One reading thread
    # calls the reader, in order; memory holds ``depth`` bands more.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="read") as pool:
        pending: collections.deque[tuple[T, Future[np.ndarray]]] = collections.deque()
        for step in steps:
            pending.append((step, pool.submit(read, step)))
            if len(pending) > depth:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _stats_dtype(values: np.ndarray) -> tuple[float, float] | None:
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if not finite.size:
            return None
        return float(finite.min()), float(finite.max())
    return float(values.min()), float(values.max())


def _is_rgb(meta: formats.ImageMeta) -> bool:
    """Return whether the file says its channels are the red, green and blue of one pixel."""
    return [(ch.color or "").upper() for ch in meta.channels] == list(RGB)


def _read_checked(
    read: Callable[[int, int, int, int, int], np.ndarray],
    plane: tuple[int, int, int],
    y0: int,
    y1: int,
    width: int,
    where: str,
) -> np.ndarray:
    """Return ``read``'s rows y0:y1 of ``plane``; a failure or a wrong shape is an ImportFailed."""
    t, c, z = plane
    try:
        rows = read(t, c, z, y0, y1)
    except CoverslipError:
        raise
    except MemoryError:
        raise ImportFailed("too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - corrupt data fails in many ways
        raise ImportFailed(
            f"rows {y0}:{y1}{where} of plane t={t} c={c} z={z} cannot be read ({exc})"
        ) from None
    if rows.shape != (y1 - y0, width):
        raise ImportFailed(
            f"reader gave {rows.shape} for rows {y0}:{y1}{where}, expected {(y1 - y0, width)}"
        )
    return rows


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
        photo = meta.pixel_type == "uint8" and _is_rgb(meta)
        given_all = [
            meta.channels[c] if c < len(meta.channels) else formats.ChannelMeta(name="")
            for c in range(meta.size_c)
        ]
        # OMERO's importer: the file's colour, else the emission (or excitation) wavelength's.
        colors = [color for color, _alpha in default_colors(given_all)]
        for c, given in enumerate(given_all):
            low, high = self.low[c], self.high[c]
            if not np.isfinite(low):
                low, high = 0.0, 1.0
            color = "FFFFFF" if meta.size_c == 1 and not given.color else colors[c].upper()
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
        objects: ObjectStore | None = None,
    ) -> None:
        self.home = home
        self.objects = objects  # where new pyramids and originals go; None: the home
        self.cache = cache
        self.catalog = catalog
        self.tile = tile
        self.codec = codec
        self.thumbnailer = thumbnailer

    def import_path(
        self, path: Path, options: ImportOptions, progress: Progress | None = None
    ) -> int:
        """Import ``path`` and return the id of its first image (see ``import_fileset``)."""
        return self.import_fileset(path, options, progress)[0]

    def import_fileset(
        self, path: Path, options: ImportOptions, progress: Progress | None = None
    ) -> list[int]:
        """Import every image of ``path`` (and the files it names); return their ids.

        The originals are kept once, in the fileset's folder; on any failure nothing of the
        fileset is left behind.
        """
        path = Path(path)
        if not path.exists():
            raise ImportFailed(f"{path}: no such file")
        fileset = self._open(path, options)
        try:
            with full_disk_is_no_space():
                return self._import(path, fileset, options, progress)
        finally:
            fileset.close()

    def register_url(
        self, url: str, options: ImportOptions, progress: Progress | None = None
    ) -> list[int]:
        """Register the OME-Zarr image at an s3:// or http(s):// URL where it is; return its id.

        Nothing is copied: the pixels are read from there whenever the image is shown (its
        channel statistics and thumbnail are made now, reading it once).
        """
        from coverslip.formats.omezarr_remote import RemoteOmeZarr

        url = url.rstrip("/")
        try:
            check_key(url)
        except ValueError as exc:
            raise ImportFailed(f"{url}: {exc}") from None
        if not options.in_place:
            raise ImportFailed(f"{url}: an OME-Zarr at a URL is registered in place (--in-place)")
        if url.startswith(SCHEME) and self.objects is None:
            raise ImportFailed(
                f"{url}: an s3:// image is read through the object store of pixels.store "
                "(its endpoint and credentials); set it, or register the image's https:// URL"
            )
        if self.objects is not None and f"{url}/".startswith(f"{self.objects.url}/"):
            raise ImportFailed(f"{url}: this is where the server keeps its own pyramids")
        if not options.allow_duplicate:
            existing = self.catalog.find_by_pyramid_path(url)
            if existing is not None:
                raise Duplicate(existing)
        owner_id, group_id = options.owner_id, options.group_id
        if owner_id is None or group_id is None:
            owner_id, group_id = self.catalog.ensure_local_admin()
        reader = RemoteOmeZarr(url, self.objects)
        fileset_id = self.catalog.create_fileset("ome-zarr", owner_id, group_id)
        image_id = self.catalog.create_image(
            (options.name or reader.meta.name)[:255],
            owner_id,
            group_id,
            format="ome-zarr",
            properties=options.properties,
        )
        try:
            self.catalog.add_to_fileset(fileset_id, image_id, 0, None, "image")
            self.build(image_id, reader, options, progress, source=url)
        except BaseException:
            self.discard(image_id)
            raise
        if options.dataset_id is not None:
            self.catalog.add_to_dataset(options.dataset_id, [image_id])
        return [image_id]

    def _import(
        self,
        path: Path,
        fileset: formats.Fileset,
        options: ImportOptions,
        progress: Progress | None,
    ) -> list[int]:
        owner_id, group_id = options.owner_id, options.group_id
        if owner_id is None or group_id is None:
            owner_id, group_id = self.catalog.ensure_local_admin()
        if options.in_place and len(fileset.images) != 1:
            raise ImportFailed(f"{path}: --in-place registers an OME-Zarr of one image")
        fileset_id = self.catalog.create_fileset(fileset.format, owner_id, group_id)
        image_ids: list[int] = []
        try:
            owner = (owner_id, group_id)
            build = functools.partial(
                self._build_all, path, fileset, fileset_id, image_ids, owner, options, progress
            )
            files = fileset.files or [path]
            digest = self._keep_and_build(path, files, fileset_id, options, build)
            self._check_duplicate(digest, options)
            members = _member_names(path, fileset.files or [path])
            self._finish(fileset, fileset_id, image_ids, owner, digest, members, path.name)
        except BaseException:
            # NOTE: a store that stopped answering keeps what it holds; `coverslip check` finds it.
            with contextlib.suppress(StoreUnavailable):
                for image_id in image_ids:
                    self.discard(image_id)
            with contextlib.suppress(StoreUnavailable):
                self._drop_fileset(fileset_id)
            raise
        if options.dataset_id is not None:
            self.catalog.add_to_dataset(options.dataset_id, image_ids)
        return image_ids

    def import_received(
        self,
        image_id: int,
        original: Path,
        digest: Digest,
        options: ImportOptions,
        source: Path | None = None,
        progress: Progress | None = None,
    ) -> list[int]:
        """Import every image of a file received for the queued image ``image_id``; return their ids.

        ``original`` is the file as received, in the image's originals folder; it moves (is not
        copied) into a new fileset's folder; ``source``, when given, is what is read instead (a
        zip's extracted folder). ``image_id`` becomes the fileset's first image and
        every further image a new one of ``options``' owner, group, dataset and properties. On
        failure nothing of the fileset is left, the file included, and ``image_id`` stays for
        the caller to put back.
        """
        if options.owner_id is None or options.group_id is None:
            raise ValueError("a received file is imported for the image's owner and group")
        owner = (options.owner_id, options.group_id)
        fmt = self.catalog.get_image(image_id).format or "unknown"
        fileset_id = self.catalog.create_fileset(fmt, *owner)
        if options.on_fileset is not None:
            options.on_fileset(fileset_id)
        image_ids: list[int] = []
        try:
            with full_disk_is_no_space():
                folder = self.home.fileset_dir(fileset_id)
                folder.mkdir(parents=True)
                path = folder / original.name
                os.replace(original, path)
                sync_tree(folder)
                read = source or path
                fileset = self._open(read, options)
                try:
                    self.catalog.update_fileset(fileset_id, format=fileset.format)
                    self._build_all(
                        read, fileset, fileset_id, image_ids, owner, options, progress, image_id
                    )
                    self._finish(
                        fileset, fileset_id, image_ids, owner, digest, [path.name], path.name
                    )
                finally:
                    fileset.close()
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                self.remove_files(image_id)
                for other in image_ids:
                    if other != image_id:
                        self.discard(other)
            with contextlib.suppress(StoreUnavailable):
                self._drop_fileset(fileset_id)
            raise
        if options.dataset_id is not None:
            self.catalog.add_to_dataset(options.dataset_id, image_ids)
        return image_ids

    def _finish(
        self,
        fileset: formats.Fileset,
        fileset_id: int,
        image_ids: list[int],
        owner: tuple[int, int],
        digest: Digest,
        members: list[str],
        name: str,
    ) -> None:
        """Record the kept originals on the fileset and its images, make the plate, activate."""
        self.catalog.update_fileset(
            fileset_id, sha512=digest.sha512.hexdigest(), size=digest.size, files=members
        )
        for image_id in image_ids:
            self.catalog.update_image(
                image_id,
                sha512=digest.sha512.hexdigest(),
                md5=digest.md5.hexdigest(),
                original_size=digest.size,
            )
        if fileset.plate is not None:
            self._plate(fileset.plate, fileset_id, image_ids, *owner, name)
        self._store_originals(fileset_id, image_ids)
        for image_id in image_ids:
            self.catalog.set_status(image_id, "active", expect=["importing"])

    def _store_originals(self, fileset_id: int, image_ids: list[int]) -> None:
        """Move the kept originals into the object store, when there is one.

        Every file is stored before the local copy goes, so an image is active only once its
        originals are where the other nodes read them.
        """
        folder = self.home.fileset_dir(fileset_id)
        if self.objects is None or not folder.is_dir():
            return
        self.objects.store_tree(self.objects.fileset(fileset_id), folder)
        self.drop_local_originals(fileset_id, image_ids)

    def drop_local_originals(self, fileset_id: int, image_ids: Iterable[int]) -> None:
        """Remove a fileset's originals folder and its images' links to it from the home."""
        for image_id in image_ids:
            link = self.home.original_dir(image_id)
            if link.is_symlink():
                link.unlink()
        shutil.rmtree(self.home.fileset_dir(fileset_id), ignore_errors=True)

    def _keep_and_build(
        self,
        path: Path,
        files: list[Path],
        fileset_id: int,
        options: ImportOptions,
        build: Callable[[], None],
    ) -> Digest:
        """Keep (or, in place, hash) the originals of ``files`` and ``build`` every pyramid."""

        def keep() -> Digest:
            if options.in_place:
                return hash_tree(path) if path.is_dir() else hash_file(path, Digest())
            return self._keep_originals(files, fileset_id)

        early = (
            not options.allow_duplicate
            and all(f.is_file() for f in files)
            and self.catalog.original_size_exists(sum(f.stat().st_size for f in files))
        )
        if early:
            digest = keep()
            self._check_duplicate(digest, options)
            build()
            return digest
        # PERF: copying and hashing the originals (I/O and hashlib, which release the GIL)
        # runs beside the pyramid builds; only files of a size seen before are hashed first.
        with ThreadPoolExecutor(1, thread_name_prefix="original") as pool:
            copying = pool.submit(keep)
            try:
                build()
            finally:
                digest = copying.result()
        return digest

    def _build_all(
        self,
        path: Path,
        fileset: formats.Fileset,
        fileset_id: int,
        image_ids: list[int],
        owner: tuple[int, int],
        options: ImportOptions,
        progress: Progress | None,
        first_id: int | None = None,
    ) -> None:
        """Build every readable image of ``fileset``; the first is ``first_id`` when given."""
        many = len(fileset.images) > 1
        original_name = _member_names(path, fileset.files or [path])[0]
        skipped: list[str] = []
        for index, opener in enumerate(fileset.images):
            try:
                reader = self._open_image(path, opener)
            except UnsupportedFormat as exc:
                # NOTE: a file may hold series of a kind no reader takes (a LIF's FLIM data);
                # the others still import, and with none left the file fails.
                if not many:
                    raise
                skipped.append(str(exc))
                continue
            try:
                meta = reader.meta
                base = options.name or meta.name or path.name
                name = f"{base} [{meta.series}]" if many and meta.series else base
                if many and not meta.series:
                    name = f"{base} [{index + 1}]"
                if first_id is not None and not image_ids:
                    image_id = first_id
                    self.catalog.update_image(
                        image_id, format=meta.format, original_name=original_name
                    )
                else:
                    image_id = self.catalog.create_image(
                        name[:255],
                        *owner,
                        status="queued",
                        format=meta.format,
                        original_name=original_name,
                        properties=options.properties,
                    )
                image_ids.append(image_id)
                if options.on_image is not None:
                    options.on_image(image_id)
                self.catalog.add_to_fileset(fileset_id, image_id, index, meta.series, meta.kind)
                self._link_original(image_id, fileset_id, options)
                self.build(image_id, reader, options, progress, source=path, activate=False)
            finally:
                reader.close()
        if not image_ids:
            raise UnsupportedFormat(f"{path.name}: no image in it can be read ({skipped[0]})")

    def _link_original(self, image_id: int, fileset_id: int, options: ImportOptions) -> None:
        """Point the image's originals folder at its fileset's, where the files are kept once."""
        if options.in_place:
            return
        folder = self.home.original_dir(image_id)
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(self.home.fileset_dir(fileset_id).name, target_is_directory=True)

    def _plate(
        self,
        plate: formats.PlateMeta,
        fileset_id: int,
        image_ids: list[int],
        owner_id: int,
        group_id: int,
        file_name: str,
    ) -> None:
        wells = []
        for well in plate.wells:
            fields = [image_ids[i] for i in well.fields if 0 <= i < len(image_ids)]
            wells.append((well.row, well.column, fields))
        self.catalog.create_plate(
            plate.name or file_name,
            fileset_id,
            owner_id,
            group_id,
            plate.rows,
            plate.columns,
            wells,
        )

    def _drop_fileset(self, fileset_id: int) -> None:
        self.remove_fileset_files(fileset_id)
        with contextlib.suppress(CoverslipError):
            self.catalog.delete_fileset(fileset_id)

    def remove_fileset_files(self, fileset_id: int) -> None:
        """Remove the kept originals of a fileset, in the home and in the object store."""
        shutil.rmtree(self.home.fileset_dir(fileset_id), ignore_errors=True)
        if self.objects is not None:
            self.objects.delete_tree(self.objects.fileset(fileset_id))

    def pyramid_target(self, image_id: int) -> Path | str:
        """Return where the pyramid of ``image_id`` is written: the store, else the home."""
        return self.objects.pyramid(image_id) if self.objects else self.home.pyramid(image_id)

    def _keep_labels(self, reader: formats.Reader, target: Path | str) -> None:
        """Keep an OME-Zarr's label images inside its pyramid, where OME-Zarr puts them."""
        folder = getattr(reader, "labels_folder", None)
        if folder is None:
            return
        # SECURITY: the OME-Zarr was refused if any link led out of it (open_fileset).
        if isinstance(target, str):
            if self.objects is not None:
                self.objects.store_tree(join(target, "labels"), folder)
        else:
            shutil.copytree(folder, target / "labels", dirs_exist_ok=True)
            sync_tree(target / "labels")

    def _remove_pyramid(self, image_id: int) -> None:
        shutil.rmtree(self.home.pyramid(image_id), ignore_errors=True)
        if self.objects is not None:
            self.objects.delete_tree(self.objects.pyramid(image_id))

    def build(
        self,
        image_id: int,
        reader: formats.Reader,
        options: ImportOptions,
        progress: Progress | None = None,
        source: Path | str | None = None,
        activate: bool = True,
    ) -> None:
        """Turn an image whose original is kept into an active one: pyramid, stats, thumbnail.

        Raises ImportFailed on bad content; the caller decides what becomes of the image row.
        With ``activate`` False the image stays "importing" for the caller to finish.
        """
        self.catalog.set_status(image_id, "importing")
        meta = reader.meta
        target = self.pyramid_target(image_id)
        try:
            registered = _registered(source) if options.in_place else None
            if registered is not None:
                stats = self._scan(reader, progress)
                pyramid = self._open_pyramid(registered)
                pyramid_path: str | None = registered
                chunks = pyramid.levels[0].array.chunk_layout.read_chunk.shape
                tile = int(chunks[-1] or self.tile) if chunks else self.tile
            else:
                stats = self._write(target, reader, progress)
                self._keep_labels(reader, target)
                pyramid = self._open_pyramid(target)
                pyramid_path = target if isinstance(target, str) else None
                tile = self.tile
            channels = stats.channels(meta)
            self.catalog.set_channels(image_id, channels)
            self.catalog.set_extras(image_id, extras_of(meta))
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
        except BaseException as exc:
            with contextlib.suppress(StoreUnavailable):  # what a dead store holds stays there
                self._remove_pyramid(image_id)
            if is_no_space(exc):
                raise NoSpace() from exc
            if isinstance(exc, OSError):
                raise ImportFailed(f"cannot write the pyramid: {exc.strerror or exc}") from None
            raise

    def remove_files(self, image_id: int) -> None:
        """Remove the pyramid and cached renders of an image, and its link to the originals.

        The originals of a fileset stay until its last image goes (see ``discard``).
        """
        self._remove_pyramid(image_id)
        folder = self.home.original_dir(image_id)
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)
        if self.cache is not None:
            self.cache.drop_image(image_id)

    def undo_received(self, image_id: int, filesets: Iterable[int] = ()) -> None:
        """Remove what an interrupted ``import_received`` of ``image_id`` left; keep the image.

        A worker killed in the middle leaves the fileset (``filesets`` names those earlier
        attempts made, which the image may not have joined yet), its kept file, the further
        images and part of the pyramids; the next attempt starts from the received bytes.
        """
        found = {*filesets, self.catalog.fileset_of(image_id)} - {None}
        self.remove_files(image_id)
        for fileset_id in found:
            assert fileset_id is not None
            with contextlib.suppress(CoverslipError):
                for other in self.catalog.get_fileset(fileset_id).image_ids:
                    if other != image_id:
                        self.discard(other)
            self._drop_fileset(fileset_id)

    def discard(self, image_id: int) -> None:
        """Remove an image and everything written for it; the last of a fileset takes its originals."""
        fileset_id = self.catalog.fileset_of(image_id)
        self.remove_files(image_id)
        with contextlib.suppress(CoverslipError):
            self.catalog.delete_image(image_id)
        if fileset_id is not None:
            with contextlib.suppress(CoverslipError):
                if not self.catalog.get_fileset(fileset_id).image_ids:
                    self._drop_fileset(fileset_id)

    # -- steps --------------------------------------------------------------------------

    @staticmethod
    def _open(path: Path, options: ImportOptions) -> formats.Fileset:
        if options.in_place and formats.detect(path) != "ome-zarr":
            raise ImportFailed(f"{path}: --in-place registers OME-Zarr folders only")
        return _opened(path, lambda: formats.open_fileset(path, options.axes))

    @staticmethod
    def _open_image(path: Path, opener: Callable[[], formats.Reader]) -> formats.Reader:
        try:
            return _opened(path, opener)
        except CoverslipError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise type(exc)(f"{path.name}: {exc}") from None

    def _keep_originals(self, files: list[Path], fileset_id: int) -> Digest:
        """Copy the files of a set into the fileset's folder, keeping their relative paths.

        The digest of one file is that file's; of several, it covers each member's relative
        path and bytes in sorted order, so the same set is the same digest whichever member
        was named.
        """
        folder = self.home.fileset_dir(fileset_id)
        folder.mkdir(parents=True, exist_ok=True)
        root = _common_parent(files)
        try:
            digest = Digest()
            if root is None:
                with files[0].open("rb") as source, (folder / files[0].name).open("wb") as target:
                    copy_hashed(source, target, digest)
            else:
                for member in sorted(files, key=lambda f: str(f.resolve())):
                    relative = member.resolve().relative_to(root)
                    target_path = folder / relative
                    target_path.parent.mkdir(parents=True, exist_ok=True)
                    if member.is_dir():
                        shutil.copytree(member, target_path)
                        hash_files(target_path, folder, digest)
                        continue
                    digest.update(str(relative).encode() + b"\0")
                    with member.open("rb") as source, target_path.open("wb") as target:
                        copy_hashed(source, target, digest)
            sync_tree(folder)
            return digest
        except OSError as exc:
            if is_no_space(exc):
                raise NoSpace() from exc
            raise ImportFailed(f"cannot keep the original: {exc.strerror or exc}") from None

    def _check_duplicate(self, digest: Digest, options: ImportOptions) -> None:
        if options.allow_duplicate:
            return
        existing = self.catalog.find_by_sha512(digest.sha512.hexdigest())
        if existing is not None:
            raise Duplicate(existing)

    def _bands(
        self,
        reader: formats.Reader,
        progress: Progress | None,
        level: int = 0,
        shape: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, int, int, np.ndarray, bool]]:
        """Yield (t, c, z, rows, last band) for every band of every plane of ``level``.

        Level 0 is the image; a further level is one the file stores (``read_level_band``),
        of ``shape`` (height, width).
        """
        meta = reader.meta
        height, width = shape or (meta.size_y, meta.size_x)
        read: Callable[[int, int, int, int, int], np.ndarray] = reader.read_band
        if level:
            assert isinstance(reader, formats.Pyramidal)
            read = functools.partial(reader.read_level_band, level)
        where = f" of level {level}" if level else ""
        band = self.tile
        itemsize = np.dtype(meta.pixel_type).itemsize
        total = meta.size_t * meta.size_c * meta.size_z * height * width * itemsize
        done = 0
        # PERF: the red, green and blue of a photo are samples of one stored pixel, decoded
        # together: their bands go channel after channel, so readers that keep the last band
        # (slides, RGB CZI) decode each tile once. Other channels are planes of their own and
        # go plane by plane, as readers that read ahead within a plane (CZI) want.
        size_c = meta.size_c
        imported = metrics().imported
        groups = [list(range(size_c))] if _is_rgb(meta) else [[c] for c in range(size_c)]
        plan = (
            (t, c, z, y0, min(height, y0 + band))
            for t in range(meta.size_t)
            for channels in groups
            for z in range(meta.size_z)
            for y0 in range(0, height, band)
            for c in channels
        )

        def rows_of(step: tuple[int, int, int, int, int]) -> np.ndarray:
            t, c, z, y0, y1 = step
            return _read_checked(read, (t, c, z), y0, y1, width, where)

        for (t, c, z, _y0, y1), rows in _ahead(rows_of, plan):
            yield t, c, z, rows, y1 == height
            done += rows.nbytes
            imported.inc(rows.nbytes)
            if progress:
                progress(done, total)

    def _scan(self, reader: formats.Reader, progress: Progress | None) -> ChannelStats:
        stats = ChannelStats(reader.meta.size_c)
        for _t, c, _z, rows, _final in self._bands(reader, progress):
            stats.add(c, rows)
        return stats

    def _write(
        self, target: Path | str, reader: formats.Reader, progress: Progress | None
    ) -> ChannelStats:
        meta = reader.meta
        if isinstance(target, Path):
            shutil.rmtree(target, ignore_errors=True)
        levels = meta.levels if isinstance(reader, formats.Pyramidal) else []
        writer = PyramidWriter(
            target,
            meta.shape,
            meta.pixel_type,
            tile=self.tile,
            codec=self.codec,
            name=meta.name,
            scale=(meta.physical_size_x, meta.physical_size_y, meta.physical_size_z),
            levels=levels,
            objects=self.objects,
        )
        stats = ChannelStats(meta.size_c)
        try:
            for t, c, z, rows, final in self._bands(reader, progress):
                stats.add(c, rows)
                writer.write_band(t, c, z, rows, final)
            for level in range(1, writer.copied):
                for t, c, z, rows, final in self._bands(reader, None, level, writer.shapes[level]):
                    writer.write_band(t, c, z, rows, final, level=level)
            writer.finish([vars(ch) for ch in stats.channels(meta)])
        except BaseException:
            writer.abort()
            raise
        return stats

    def _open_pyramid(self, path: Path | str) -> Pyramid:
        try:
            return Pyramid(path, self.objects)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
