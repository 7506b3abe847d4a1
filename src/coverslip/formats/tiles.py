"""Decode whole rows of tiles of one tiled TIFF page, the tiles of a row on two threads.

# PERF: through tifffile's Zarr view every tile is decoded on zarr's one event-loop thread,
# so a JPEG slide imported at the speed of one core decoding. Here the tiles of the rows a
# band needs are read with tifffile's own segment reader and decoded by tifffile's own
# decoder, two at a time (imagecodecs releases the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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
