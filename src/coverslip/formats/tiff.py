"""TIFF, BigTIFF and OME-TIFF: every series an image, read band by band, with its own levels.

Uncompressed data stored in one run (what tifffile, ImageJ and most OME writers produce)
is read straight from the file, a band of rows at a time. Everything else goes through
tifffile's Zarr view, which reads and decodes only the strips or tiles a band touches.
The file's own resolution levels (SubIFDs, reduced-resolution pages) are read the same way.
Metadata of the dialects tifffile parses comes from `tiff_meta`, OME-XML from `ome_tiff`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import (
    TIFF_MAGIC,
    ChannelMeta,
    Fileset,
    ImageMeta,
    check_pixel_type,
    read_stored_band,
)
from coverslip.formats import tiff_meta as dialects
from coverslip.formats.meta import RGB_CHANNELS, micrometres
from coverslip.formats.ome_tiff import (
    OmeImage,
    OmeSet,
    ome_color,
    parse_images,
    parse_ome_xml,
    resolve_companion,
    resolve_tiff,
)
from coverslip.formats.tiff_meta import Found
from coverslip.formats.tiles import tile_rows, tiled_page

__all__ = [
    "TiffReader",
    "page_chain_checked",
    "ome_color",
    "open_fileset",
    "parse_ome_xml",
    "plan_axes",
]

SUFFIXES: tuple[str, ...] = (".ome.tiff", ".ome.tif", ".ome.btf", ".companion.ome", ".tiff")
SUFFIXES += (".tif", ".btf", ".tf8", ".tf2", ".qptiff", ".lsm", ".stk")
# Pixel types stored in a wider type with no loss; the rest are refused by check_pixel_type.
WIDENED = {np.dtype(np.float16): np.dtype(np.float32)}
# What tifffile (or a QPTIFF page) calls the images a slide keeps beside the main one.
KINDS = {"thumbnail": "thumbnail", "overview": "overview", "macro": "macro", "label": "label"}
# tifffile logs, rather than raises, when the chain of pages breaks off (a truncated file
# whose last pages are gone): those log records make the file fail.
BROKEN_CHAIN = re.compile(r"invalid page offset|invalid offset to page|corrupted tag list")


class _ChainErrors(logging.Handler):
    """Collect tifffile's reports of a broken page chain made by this thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and BROKEN_CHAIN.search(message):
            self.found.append(re.sub(r"^<[^>]*>\s*", "", message))


@contextlib.contextmanager
def page_chain_checked() -> Iterator[None]:
    """Raise ImportFailed when tifffile reports a broken page chain within the block."""
    handler = _ChainErrors()
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
    if handler.found:
        raise ImportFailed(f"the TIFF is truncated or damaged: {handler.found[0]}")


@contextlib.contextmanager
def _tiff_errors() -> Iterator[None]:
    """Turn whatever a corrupt TIFF makes tifffile raise into ImportFailed."""
    try:
        with page_chain_checked():
            yield
    except ImportFailed:  # UnsupportedFormat too
        raise
    except MemoryError:
        raise ImportFailed("the TIFF structure is too large to read") from None
    except Exception as exc:  # noqa: BLE001 - corrupt TIFF structures fail in many ways
        raise ImportFailed(f"not a readable TIFF ({type(exc).__name__}: {exc})") from None


def _stem(name: str) -> str:
    """Return ``name`` without its TIFF extension(s)."""
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def plan_axes(axes: str, shape: tuple[int, ...]) -> dict[str, list[int]]:
    """Return which array axes make up T, C and Z (slowest first) for tifffile's ``axes``.

    Samples (S) are channels. Axes tifffile cannot name (Q, I, and the like) become Z when
    the series has no Z, else they are folded into T.
    """
    if "Y" not in axes or "X" not in axes:
        raise UnsupportedFormat(f"a TIFF series with axes {axes!r} has no Y and X")
    if axes.index("Y") > axes.index("X"):
        raise UnsupportedFormat(f"a TIFF series with axes {axes!r} stores columns before rows")
    groups: dict[str, list[int]] = {"T": [], "C": [], "Z": []}
    unknown: list[int] = []
    for index, axis in enumerate(axes):
        if axis in "TZ":
            groups[axis].append(index)
        elif axis in "CS":
            groups["C"].append(index)
        elif axis not in "YX":
            unknown.append(index)
    target = "T" if groups["Z"] else "Z"
    groups[target] = sorted(groups[target] + unknown)
    return groups


@dataclass
class _Entry:
    """One image of the fileset: a tifffile series and what the fileset knows about it."""

    series: tifffile.TiffPageSeries
    label: str | None  # ImageMeta.series
    kind: str
    ome: OmeImage | None
    name: str


def _resolution(
    page: Any, imagej: dict[str, Any]
) -> tuple[float | None, float | None, float | None]:
    """Return pixel sizes in µm from ImageJ metadata or the resolution tags of ``page``."""
    tags = page.tags
    try:
        xres, yres = (tags[t].value for t in ("XResolution", "YResolution"))
        per_x, per_y = xres[0] / xres[1], yres[0] / yres[1]
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        return None, None, None
    if per_x <= 0 or per_y <= 0:
        return None, None, None
    unit_tag = tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag else 2
    if imagej.get("unit"):
        # NOTE: ImageJ's unit "pixel" (an uncalibrated image) is no length: no physical size.
        factor = micrometres(1.0, str(imagej["unit"]))
        if factor is None:
            return None, None, None
        return (
            factor / per_x,
            factor / per_y,
            micrometres(imagej.get("spacing"), str(imagej["unit"])),
        )
    if unit == 3:  # centimetre
        return 1e4 / per_x, 1e4 / per_y, None
    if unit == 2 and per_x > 1000 and per_y > 1000:
        # NOTE: print resolutions (72 to 600 dpi) say nothing about a specimen; only
        # finer than 1000 dpi (25.4 µm) is taken as a microscope's pixel size.
        return 25400 / per_x, 25400 / per_y, None
    return None, None, None


def _dialect(tif: tifffile.TiffFile, entry: _Entry, size_c: int) -> Found:
    """Return what the dialect of ``tif`` says about ``entry``."""
    series = entry.series
    if tif.is_imagej and tif.imagej_metadata:
        return dialects.imagej(tif.imagej_metadata, size_c)
    if tif.is_lsm and tif.lsm_metadata:
        return dialects.lsm(tif.lsm_metadata, size_c)
    if tif.is_stk and tif.stk_metadata:
        return dialects.stk(tif.stk_metadata, size_c)
    if series.kind == "qpi" and entry.kind == "image":
        return dialects.qpi(p.description for p in series.pages if isinstance(p, tifffile.TiffPage))
    if tif.is_micromanager and tif.micromanager_metadata:
        return dialects.micromanager(tif.micromanager_metadata, size_c)
    if tif.is_nih and tif.nih_metadata:
        return dialects.nih(tif.nih_metadata)
    for page in tif.pages:
        # NOTE: Olympus SIS keeps its tag on the page it describes, not always the first.
        sis = page.tags.valueof(33560) if isinstance(page, tifffile.TiffPage) else None
        if isinstance(sis, dict) and page.shape[:2] == series.keyframe.shape[:2]:
            return dialects.sis(sis)
    return Found()


class TiffReader:
    """One image of a TIFF: a series at full resolution, and the levels the file stores."""

    def __init__(self, tif: tifffile.TiffFile, entry: _Entry, fmt: str) -> None:
        self.tif: tifffile.TiffFile | None = tif
        self.series = entry.series
        self.arrays: dict[int, Any] = {}
        self.pages: dict[int, tifffile.TiffPage | None] = {}
        with _tiff_errors():
            self._open(entry, fmt)

    def _open(self, entry: _Entry, fmt: str) -> None:
        assert self.tif is not None
        series = self.series
        keyframe = series.keyframe
        self.axes, self.shape = series.axes.upper(), tuple(int(n) for n in series.shape)
        if 0 in self.shape:
            raise ImportFailed(f"the TIFF image is empty (shape {self.shape})")
        dtype = np.dtype(series.dtype)
        self.cast = WIDENED.get(dtype)
        pixel_type = check_pixel_type(self.cast or dtype)
        self.groups = plan_axes(self.axes, self.shape)
        sizes = {
            target: math.prod(self.shape[i] for i in axes) for target, axes in self.groups.items()
        }
        # NOTE: JPEG-compressed colour TIFFs say YCbCr; they decode to red, green and blue.
        colour = (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
        rgb = keyframe.photometric in colour and self.axes.count("S") == 1
        if rgb and sizes["C"] == 4 and self.groups["C"] == [self.axes.index("S")]:
            sizes["C"] = 3  # NOTE: alpha is dropped, as for PNG
        _check_extent(series)

        self.stored: tuple[int, np.dtype] | None = None
        if (
            series.dataoffset is not None
            and keyframe.compression == tifffile.COMPRESSION.NONE
            and keyframe.predictor == tifffile.PREDICTOR.NONE
            and keyframe.fillorder == 1
            and keyframe.bitspersample == dtype.itemsize * 8
            and series.transform is None
        ):
            # NOTE: tifffile writes an uncompressed plane as a single strip, which its Zarr
            # view reads whole for every band; reading just the band's rows keeps memory flat.
            self.stored = (int(series.dataoffset), dtype.newbyteorder(self.tif.byteorder))
        self.level_shapes = _levels(series, self.axes, self.shape)
        self.meta = self._meta(entry, fmt, sizes, pixel_type, rgb)

    def _meta(
        self, entry: _Entry, fmt: str, sizes: dict[str, int], pixel_type: str, rgb: bool
    ) -> ImageMeta:
        assert self.tif is not None
        found = _dialect(self.tif, entry, sizes["C"])
        ome = entry.ome
        channels = list(ome.channels if ome and ome.channels else found.channels)
        if not channels and rgb and sizes["C"] == 3:
            channels = [ChannelMeta(n, c) for n, c in RGB_CHANNELS]
        channels = channels[: sizes["C"]]
        channels += [ChannelMeta("") for _ in range(sizes["C"] - len(channels))]
        imagej = (self.tif.imagej_metadata or {}) if self.tif.is_imagej else {}
        tags = _resolution(self.series.keyframe, imagej)
        # NOTE: QPTIFF's ScanProfile holds the nominal pixel size; its resolution tags the
        # calibrated one, which wins.
        order = [tags, found.physical] if self.series.kind == "qpi" else [found.physical, tags]
        # NOTE: an OME-TIFF's sizes are its OME-XML's; Bio-Formats fills the resolution tags
        # with 1 µm when it knows none.
        candidates = [ome.physical] if ome else order
        psx, psy, psz = next((p for p in candidates if p[0] is not None), (None, None, None))
        acquired = (ome.acquired if ome else None) or found.acquired
        if acquired is None and self.series.kind == "qpi":
            acquired = dialects.iso_date(self.series.keyframe.tags.valueof("DateTime"))
        return ImageMeta(
            name=_stem(ome.name) if ome and ome.name else entry.name,
            format="ome-tiff" if ome else fmt,
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=self.shape[self.axes.index("Y")],
            size_x=self.shape[self.axes.index("X")],
            pixel_type=pixel_type,
            channels=channels,
            physical_size_x=psx,
            physical_size_y=psy if psy is not None else psx,
            physical_size_z=psz,
            series=entry.label,
            kind=entry.kind,
            objective=(ome.objective if ome else None) or found.objective,
            acquired=acquired,
            time_increment=(ome.time_increment if ome else None) or found.time_increment,
            original_metadata=dialects.merge(ome.original if ome else {}, found.original),
            levels=[
                (shape[self.axes.index("Y")], shape[self.axes.index("X")])
                for shape in self.level_shapes
            ],
        )

    def _index(
        self, shape: tuple[int, ...], t: int, c: int, z: int, y0: int, y1: int
    ) -> tuple[int | slice, ...]:
        index: list[int | slice] = [0] * len(shape)
        for target, value in (("T", t), ("C", c), ("Z", z)):
            axes = self.groups[target]
            if axes:
                found = np.unravel_index(value, [shape[i] for i in axes])
                for axis, position in zip(axes, found, strict=True):
                    index[axis] = int(position)
        index[self.axes.index("Y")] = slice(y0, y1)
        index[self.axes.index("X")] = slice(None)
        return tuple(index)

    def _array(self, level: int) -> Any:
        if level not in self.arrays:
            self.arrays[level] = zarr.open_array(
                self.series.aszarr(level=level), mode="r", zarr_format=2
            )
        return self.arrays[level]

    def _tiled_band(
        self, level: int, index: tuple[int | slice, ...], y0: int, y1: int
    ) -> np.ndarray:
        """Return the band ``index`` selects: tile rows decoded here when the level is one
        tiled page, else through tifffile's Zarr view."""
        if level not in self.pages:
            self.pages[level] = tiled_page(self.series.levels[level])
        page = self.pages[level]
        if page is None:
            return np.asarray(self._array(level)[index])
        rows = tile_rows(page, y0, y1)
        samples = self.axes.find("S")
        return rows if samples < 0 else np.ascontiguousarray(rows[:, :, index[samples]])

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of plane (t, c, z) of ``level`` (0 = full size, 1 = first of meta.levels)."""
        if self.tif is None:
            raise ImportFailed("the TIFF image is closed")
        if not 0 <= level <= len(self.level_shapes):
            raise ValueError(
                f"level {level} is not one of the file's (0 to {len(self.level_shapes)})"
            )
        shape = self.shape if level == 0 else self.level_shapes[level - 1]
        index = self._index(shape, t, c, z, y0, y1)
        try:
            if level == 0 and self.stored is not None:
                offset, dtype = self.stored
                with self.tif.filehandle.lock:
                    band = read_stored_band(self.tif.filehandle, offset, dtype, self.shape, index)
            else:
                band = self._tiled_band(level, index, y0, y1)
        except ImportFailed:
            raise
        except MemoryError:
            raise ImportFailed("a band of the TIFF is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - codecs raise their own error types
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} (level {level}) cannot be decoded "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return band.astype(self.cast) if self.cast is not None else band

    def close(self) -> None:
        # NOTE: the TiffFile is the fileset's, shared by its images; the fileset closes it.
        self.arrays.clear()
        self.pages.clear()
        self.tif = None


def _check_extent(series: tifffile.TiffPageSeries) -> None:
    """Raise ImportFailed when planes are missing or their data reaches past the end of a file."""
    if series.dataoffset is not None:
        assert series.parent is not None
        size = series.parent.filehandle.size
        end = int(series.dataoffset) + int(series.nbytes)
        if end > size:
            raise ImportFailed(f"the file is truncated ({size} bytes, the image needs {end})")
        return
    for page in series.pages:
        if page is None:
            raise ImportFailed("planes of the TIFF series are missing")
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        size = page.parent.filehandle.size
        end = int((offsets + counts).max()) if offsets.size else 0
        if end > size:
            name = page.parent.filehandle.name
            raise ImportFailed(f"{name} is truncated ({size} bytes, the image needs {end})")


def _levels(
    series: tifffile.TiffPageSeries, axes: str, shape: tuple[int, ...]
) -> list[tuple[int, ...]]:
    """Return the shapes of the file's own levels after level 0 that can be copied as they are."""
    found: list[tuple[int, ...]] = []
    previous = shape
    y, x = axes.index("Y"), axes.index("X")
    for level in series.levels[1:]:
        level_shape = tuple(int(n) for n in level.shape)
        same_planes = all(
            a == b
            for i, (a, b) in enumerate(zip(level_shape, shape, strict=False))
            if i not in (y, x)
        )
        if (
            level.axes.upper() != axes
            or len(level_shape) != len(shape)
            or not same_planes
            or not (0 < level_shape[y] <= previous[y] and 0 < level_shape[x] <= previous[x])
            or level_shape == previous
            or any(page is None for page in level.pages)
        ):
            break  # NOTE: a level that does not fit is computed instead, as are the rest
        _check_extent(level)
        found.append(level_shape)
        previous = level_shape
    return found


def _extra_qpi_pages(tif: tifffile.TiffFile) -> list[tifffile.TiffPageSeries]:
    """Return QPTIFF pages no series of tifffile holds (its overview and label), one series each."""
    used = {
        page.index
        for series in tif.series
        for level in series.levels
        for page in level.pages
        if isinstance(page, tifffile.TiffPage | tifffile.TiffFrame)
    }
    extra = []
    for page in tif.pages:
        if isinstance(page, tifffile.TiffPage) and page.index not in used:
            kind = dialects.qpi_kind(page.description)
            if kind != "image":
                extra.append(
                    tifffile.TiffPageSeries(
                        [page], page.shape, page.dtype, page.axes, name=kind.title(), kind="qpi"
                    )
                )
    return extra


def _kind(series: tifffile.TiffPageSeries) -> str:
    if series.kind == "ome":
        return "image"  # NOTE: an OME Image named "Label" is still an image
    first = series.pages[0] if series.pages else None
    if series.kind == "qpi" and isinstance(first, tifffile.TiffPage):
        found = dialects.qpi_kind(first.description)
        if found != "image":
            return found
    return KINDS.get((series.name or "").strip().lower(), "image")


def _match_ome(
    images: list[OmeImage], series: list[tifffile.TiffPageSeries]
) -> list[OmeImage | None]:
    """Pair tifffile's OME series with the Image elements they came from (it skips empty ones)."""
    paired: list[OmeImage | None] = []
    position = 0
    for one in series:
        width, height = one.keyframe.imagewidth, one.keyframe.imagelength
        for index in range(position, len(images)):
            if (images[index].size_x, images[index].size_y) == (width, height):
                paired.append(images[index])
                position = index + 1
                break
        else:
            paired.append(None)
    return paired


def _entries(tif: tifffile.TiffFile, path: Path) -> list[_Entry]:
    """Return the images of an open TIFF: every series (and a QPTIFF's overview and label)."""
    series = list(tif.series)
    if any(one.kind == "qpi" for one in series):
        series += _extra_qpi_pages(tif)
    ome_images: list[OmeImage | None] = [None] * len(series)
    if tif.is_ome and tif.ome_metadata and all(one.kind == "ome" for one in series):
        ome_images = _match_ome(parse_images(tif.ome_metadata), series)
    entries = []
    for index, one in enumerate(series):
        ome = ome_images[index]
        label = None
        if len(series) > 1:
            label = (ome.name if ome else None) or (
                one.name if one.name and one.kind != "ome" else None
            )
            label = label or f"series {index}"
        entries.append(_Entry(one, label, _kind(one), ome, _stem(path.name)))
    return entries


def _with_xml(ome_set: OmeSet) -> tifffile.TiffFile:
    # NOTE: the set's OME-XML must win over tifffile's own "shaped" description, which a
    # member written by tifffile carries and which tifffile would otherwise try first.
    return tifffile.TiffFile(ome_set.tiff, omexml=ome_set.omexml, is_shaped=False)


def _open_set(path: Path) -> tuple[tifffile.TiffFile, OmeSet]:
    """Open the TIFF to read for ``path``, through the OME-XML of its set when it has one."""
    with path.open("rb") as handle:
        tiff_magic = handle.read(4) in TIFF_MAGIC
    if not tiff_magic and path.name.lower().endswith(".companion.ome"):
        ome_set = resolve_companion(path)
        return _with_xml(ome_set), ome_set
    tif = tifffile.TiffFile(path)
    if not tif.is_ome or not tif.ome_metadata:
        return tif, OmeSet(tiff=path, omexml=None, files=[path])
    try:
        ome_set = resolve_tiff(path, tif.ome_metadata)
    except BaseException:
        tif.close()
        raise
    if ome_set.omexml is None:
        return tif, ome_set
    tif.close()
    return _with_xml(ome_set), ome_set


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a TIFF, an OME-TIFF (or any member or the companion of a multi-file set)."""
    tif: tifffile.TiffFile | None = None
    try:
        with _tiff_errors():
            tif, ome_set = _open_set(path)
            if not tif.series:
                raise ImportFailed("the TIFF holds no image")
            entries = _entries(tif, path)
            for entry in entries:
                _check_extent(entry.series)
    except BaseException:
        if tif is not None:
            tif.close()
        raise
    shared = tif
    kind = "ome-tiff" if ome_set.omexml is not None or fmt == "ome-tiff" else fmt
    return Fileset(
        format=kind,
        files=ome_set.files,
        images=[functools.partial(TiffReader, shared, entry, fmt) for entry in entries],
        closers=[shared.close],
    )
