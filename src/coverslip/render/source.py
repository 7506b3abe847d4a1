"""A slide's own JPEG tiles, sent as its file stores them when a request asks for one of them.

An 8-bit RGB slide imported from a TIFF of JPEG tiles keeps, at every level the file has, the
pixels those tiles decode to. A request for one such tile, at its level, unscaled and unturned,
with settings that change no pixel, would decode to the same pixels whether it is rendered and
encoded again or sent as the file stores it; sent as stored it costs one read and loses nothing
to a second encoding. Before any tile of a level is sent, its first and last tiles are decoded
and compared with the pyramid: a level that differs in any pixel is always rendered.

# PERF: a tile sent this way is one ``pread`` of the kept original (about 20 µs), or one
# ranged GET in an object store, against reading three chunks, rendering and encoding
# (about 1 ms for a 256² tile).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import imagecodecs
import numpy as np
import tifffile

from coverslip.errors import StoreUnavailable
from coverslip.formats.tiles import JpegLevel, jpeg_levels
from coverslip.model import Image
from coverslip.pixels import DamagedPixels, Pyramid
from coverslip.pixels.objects import READ_BLOCK, ObjectStore, RangedFile

# Originals kept open, one file each; past this many the oldest is let go.
MAX_OPEN = 64
log = logging.getLogger("coverslip.render")


class SourceTiles:
    """The levels of one image whose tiles are the original's JPEG streams, verified.

    ``read(offset, length)`` reads the original; ``file`` is the same bytes as a file object,
    for tifffile to find the tiles in.
    """

    def __init__(
        self, read: Callable[[int, int], bytes], file: BinaryIO, pyramid: Pyramid, tile: int
    ) -> None:
        self._read = read
        self.levels: dict[int, tuple[JpegLevel, bool]] = {}
        with tifffile.TiffFile(file) as tif:
            stored = jpeg_levels(tif)
        for index, level in enumerate(pyramid.levels):
            for candidate in stored:
                size = (candidate.height, candidate.width, candidate.tile)
                if size != (level.height, level.width, tile):
                    continue
                adobe = self._verified(candidate, pyramid, index)
                if adobe is not None:
                    self.levels[index] = (candidate, adobe)
                    break

    def _verified(self, stored: JpegLevel, pyramid: Pyramid, index: int) -> bool | None:
        """Return whether tiles of ``stored`` need the Adobe segment to decode to level ``index``
        of the pyramid (first and last tile compared), or None when they do not decode to it."""
        found: bool | None = None
        for number in sorted({0, len(stored.offsets) - 1}):
            raw = self._raw(stored, number)
            if raw is None:
                return None
            ty, tx = divmod(number, stored.across)
            rows = slice(ty * stored.tile, min(stored.height, (ty + 1) * stored.tile))
            columns = slice(tx * stored.tile, min(stored.width, (tx + 1) * stored.tile))
            pixels = np.stack([pyramid.read(index, 0, c, 0, rows, columns) for c in range(3)], -1)
            matches = [
                adobe
                for adobe in (False, True)
                if _decodes_to(stored.stream(raw, adobe), pixels, stored.tile)
            ]
            if not matches or (found is not None and found != matches[0]):
                return None
            found = matches[0]
        return found

    def _raw(self, stored: JpegLevel, number: int) -> bytes | None:
        if not 0 <= number < len(stored.offsets) or not stored.counts[number]:
            return None
        raw = self._read(stored.offsets[number], stored.counts[number])
        return raw if raw.startswith(b"\xff\xd8") else None

    def tile_size(self, level: int) -> int | None:
        """Return the side of the tiles of ``level`` that can be sent as stored, else None."""
        found = self.levels.get(level)
        return found[0].tile if found else None

    def read(self, level: int, tx: int, ty: int) -> bytes | None:
        """Return tile (tx, ty) of ``level`` as a JPEG stream, or None when it is not stored."""
        found = self.levels.get(level)
        if found is None:
            return None
        stored, adobe = found
        if not (0 <= tx < stored.across):
            return None
        raw = self._raw(stored, ty * stored.across + tx)
        return None if raw is None else stored.stream(raw, adobe)


def _decodes_to(stream: bytes, pixels: np.ndarray, tile: int) -> bool:
    try:
        decoded = imagecodecs.jpeg8_decode(stream)
    except imagecodecs.Jpeg8Error:
        return False
    if decoded.shape != (tile, tile, 3):
        return False
    height, width = pixels.shape[:2]
    return bool(np.array_equal(decoded[:height, :width], pixels))


class Sources:
    """The source tiles of every image this process has served, opened once per image version.

    # PERF: an original is opened on a thread of its own (its directory read, two tiles of each
    # level checked: 0.1 s from an object store on its own, over a second under load), and the
    # requests that come meanwhile are rendered, so no request waits for it.
    """

    def __init__(
        self, original: Callable[[Image], Path | str | None], objects: ObjectStore | None = None
    ) -> None:
        self.original = original
        self.objects = objects
        self._found: dict[tuple[int, object, str | None], SourceTiles | None] = {}
        self._opening: set[tuple[int, object, str | None]] = set()
        self._lock = threading.Lock()

    def of(self, image: Image, pyramid: Pyramid) -> SourceTiles | None:
        """Return the source tiles of ``image``; None when it has none (it is not a slide, or
        its original is still being opened)."""
        if image.pixel_type != "uint8" or image.size_c != 3 or image.size_z * image.size_t != 1:
            return None
        key = (image.id, image.updated, image.pyramid_path)
        try:
            return self._found[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._found and key not in self._opening:
                self._opening.add(key)
                _opener().submit(self._open_into, key, image, pyramid)
        return None

    def _open_into(
        self, key: tuple[int, object, str | None], image: Image, pyramid: Pyramid
    ) -> None:
        found = None
        try:
            found = self._open(image, pyramid)
        except Exception:  # noqa: BLE001 - never a reason to fail a request: tiles are rendered
            log.exception("image %s: its original's tiles cannot be sent as stored", image.id)
        with self._lock:
            self._found[key] = found
            self._opening.discard(key)
            while len(self._found) > MAX_OPEN:
                del self._found[next(iter(self._found))]

    def _open(self, image: Image, pyramid: Pyramid) -> SourceTiles | None:
        where = self.original(image)
        if where is None or PurePosixPath(str(where)).suffix.lower() not in _TIFF_SUFFIXES:
            return None
        try:
            if isinstance(where, Path):
                # NOTE: a file object, never closed by hand: a tile read on another thread
                # keeps it open, so no descriptor is read after it was closed and reused.
                kept = where.open("rb", buffering=0)
                found = SourceTiles(
                    lambda offset, length: os.pread(kept.fileno(), length, offset),
                    kept,
                    pyramid,
                    image.tile_size,
                )
            elif self.objects is not None:
                size = self.objects.size(where)
                if size is None:
                    return None
                read = self.objects.ranges(where)
                file = io.BufferedReader(RangedFile(read, size), READ_BLOCK)
                found = SourceTiles(read, file, pyramid, image.tile_size)
            else:
                return None
        except (OSError, ValueError, tifffile.TiffFileError, DamagedPixels, StoreUnavailable):
            return None
        return found if found.levels else None


_OPENER: list[tuple[int, ThreadPoolExecutor]] = []


def _opener() -> ThreadPoolExecutor:
    """Return this process's thread that opens originals (made after a fork, not inherited)."""
    if not _OPENER or _OPENER[0][0] != os.getpid():
        _OPENER[:] = [(os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="sources"))]
    return _OPENER[0][1]


# Files whose tiles may be sent as stored: the TIFF-based slides.
_TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs", ".scn", ".bif", ".qptiff", ".ptif"})
