"""Decode whole rows of tiles of one tiled TIFF page, the tiles of a row on two threads.

# PERF: through tifffile's Zarr view every tile is decoded on zarr's one event-loop thread,
# so a JPEG slide imported at the speed of one core decoding. Here the tiles of the rows a
# band needs are read with tifffile's own segment reader and decoded by tifffile's own
# decoder, two at a time (imagecodecs releases the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

_POOL: list[tuple[int, ThreadPoolExecutor]] = []


def _pool() -> ThreadPoolExecutor:
    """Return this process's decoding threads (made after a fork, not inherited)."""
    if not _POOL or _POOL[0][0] != os.getpid():
        _POOL[:] = [(os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="tiles"))]
    return _POOL[0][1]


def tiled_page(series: tifffile.TiffPageSeries) -> tifffile.TiffPage | None:
    """Return the page of a series that is one tiled 2-D page (samples interleaved), else None."""
    pages = series.pages
    if len(pages) != 1 or not isinstance(pages[0], tifffile.TiffPage):
        return None
    page = pages[0]
    contiguous = page.samplesperpixel == 1 or page.planarconfig == 1
    if not page.is_tiled or page.imagedepth != 1 or page.tiledepth != 1 or not contiguous:
        return None
    if page.bitspersample not in (8, 16, 32, 64):  # packed bits stay with tifffile's view
        return None
    if series.axes.upper() not in ("YX", "YXS"):
        return None
    return page


def tile_rows(page: tifffile.TiffPage, y0: int, y1: int) -> np.ndarray:
    """Return rows ``y0:y1`` of a page from ``tiled_page``: (rows, width[, samples]).

    Tiles that are not stored are the page's fill value (0), as tifffile reads them.
    """
    height, width = page.tilelength, page.tilewidth
    across = -(-page.imagewidth // width)
    first, last = y0 // height, (y1 - 1) // height + 1
    numbers = list(range(first * across, last * across))
    samples = page.samplesperpixel
    out = np.zeros(((last - first) * height, across * width, samples), dtype=page.dtype)
    options: dict[str, Any] = {"_fullsize": True}
    if page.compression in {6, 7, 34892, 33007}:  # JPEG: tables shared by the tiles
        options["jpegtables"] = page.jpegtables
        options["jpegheader"] = page.jpegheader
    handle = page.parent.filehandle
    segments = handle.read_segments(
        [page.dataoffsets[n] for n in numbers],
        [page.databytecounts[n] for n in numbers],
        indices=numbers,
        sort=False,
        lock=handle.lock,
        flat=True,
    )

    def put(segment: tuple[bytes | None, int]) -> None:
        decoded, (_s, _d, top, left, _c), _shape = page.decode(*segment, **options)
        if decoded is not None:
            tile = decoded.reshape(height, width, samples)
            out[top - first * height : top - first * height + height, left : left + width] = tile

    for _done in _pool().map(put, segments):
        pass
    band = out[y0 - first * height : y1 - first * height, : page.imagewidth]
    return band if samples > 1 else band[:, :, 0]


# JPEG markers: start of image, and the Adobe segment that says the samples are RGB, not YCbCr.
_SOI = b"\xff\xd8"
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class JpegLevel:
    """One tiled page of 8-bit RGB JPEG tiles, each tile a JPEG stream as the file stores it."""

    height: int
    width: int
    tile: int
    offsets: tuple[int, ...]  # per tile, rows first
    counts: tuple[int, ...]
    tables: bytes  # the page's shared tables, spliced into every tile after its SOI

    @property
    def across(self) -> int:
        return -(-self.width // self.tile)

    def stream(self, raw: bytes, adobe: bool) -> bytes:
        """Return the tile ``raw`` (a JPEG stream from its SOI) as a JPEG a browser decodes on
        its own.

        With ``adobe`` it says that its samples are RGB, as a TIFF says by its photometric tag
        (some slide scanners' tiles), where a decoder would otherwise take them for YCbCr.
        """
        return _SOI + (_ADOBE_RGB if adobe else b"") + self.tables + raw[2:]


def jpeg_levels(tif: tifffile.TiffFile) -> list[JpegLevel]:
    """Return every page of the file that is one plane of 8-bit RGB JPEG tiles, square and whole.

    These are the tiles a server may send as they are: the level they are of was imported by
    decoding exactly these streams.
    """
    found = []
    for series in tif.series:
        for level in series.levels:
            page = tiled_page(level)
            if (
                page is None
                or page.compression != 7
                or page.samplesperpixel != 3
                or page.bitspersample != 8
                or page.tilewidth != page.tilelength
                or page.jpegheader is not None  # NDPI's tiles are not JPEG streams of their own
            ):
                continue
            tables = page.jpegtables or b""
            found.append(
                JpegLevel(
                    page.imagelength,
                    page.imagewidth,
                    page.tilewidth,
                    tuple(page.dataoffsets),
                    tuple(page.databytecounts),
                    tables[2:-2] if tables.startswith(_SOI) else b"",
                )
            )
    return found
