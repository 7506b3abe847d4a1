"""Whole-slide images: Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, Philips TIFF, MIRAX.

The TIFF-based slides are read with tifffile, band by band through its Zarr view of each
series and level, so the stored pixels and the file's own resolution levels come out exactly
as they are (OpenSlide would composite them to 8-bit RGBA). OpenSlide is asked only for the
vendor properties, which it knows for every scanner. MIRAX is not a TIFF: its tiles sit in
a folder beside the .mrxs file and are read through OpenSlide.

A slide's label, macro and thumbnail images become further images of the fileset, marked
with ``meta.kind``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.meta import RGB_CHANNELS, positive
from coverslip.formats.tiff import page_chain_checked, plan_axes
from coverslip.formats.tiles import tile_rows, tiled_page

# tifffile's names of a slide's associated images, and the kind each becomes.
ASSOCIATED = {"Label": "label", "Macro": "macro", "Thumbnail": "thumbnail"}
# Series that are neither the slide nor a picture of it (NDPI's focus map, Philips' and
# BIF's unnamed extras).
SKIPPED = {"Map", "Other", "Unknown"}
# NOTE: vendor properties can hold the whole XML of a slide (SCN, Philips: megabytes);
# such values are parsed here and left out of the key-value metadata.
MAX_VALUE = 4096


def _text(exc: BaseException) -> str:
    """Return an exception as one line without the file's location."""
    return re.sub(r"\s+", " ", f"{type(exc).__name__}: {exc}").strip()


def _objective(power: Any) -> str | None:
    """Return "20x" from an objective power such as "20" or "20.0"."""
    found = positive(power)
    return None if found is None else f"{found:g}x"


def openslide_properties(path: Path) -> dict[str, str]:
    """Return OpenSlide's vendor properties of ``path``, or {} when OpenSlide cannot open it."""
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as slide:
            return dict(slide.properties)
    except Exception:  # noqa: BLE001 - metadata only: tifffile decides whether the file reads
        return {}


def aperio_fields(description: str) -> dict[str, str]:
    """Return the ``key = value`` fields of an Aperio ImageDescription."""
    fields: dict[str, str] = {}
    for part in description.split("|")[1:]:
        key, sep, value = part.partition("=")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _aperio_date(fields: dict[str, str]) -> str | None:
    try:
        when = datetime.strptime(
            f"{fields['Date']} {fields.get('Time', '00:00:00')}", "%m/%d/%y %H:%M:%S"
        )
    except (KeyError, ValueError):
        return None
    return when.isoformat()


def _tiff_date(page: tifffile.TiffPage) -> str | None:
    value = page.tags.valueof("DateTime")
    try:
        return datetime.strptime(str(value), "%Y:%m:%d %H:%M:%S").isoformat() if value else None
    except ValueError:
        return None


def _resolution(page: tifffile.TiffPage) -> tuple[float | None, float | None]:
    """Return (x, y) µm per pixel from the resolution tags when they give a specimen's scale."""
    tags = page.tags
    try:
        xres, yres = (tags[t].value for t in ("XResolution", "YResolution"))
        per_x, per_y = xres[0] / xres[1], yres[0] / yres[1]
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        return None, None
    unit = int(tags.valueof("ResolutionUnit") or 2)
    if per_x <= 0 or per_y <= 0:
        return None, None
    if unit == 3:  # centimetre: NDPI
        return 1e4 / per_x, 1e4 / per_y
    if unit == 2 and per_x > 1000 and per_y > 1000:
        return 25400 / per_x, 25400 / per_y
    return None, None


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child) == name]


def _find(element: ET.Element, *names: str) -> ET.Element | None:
    found: ET.Element | None = element
    for name in names:
        if found is None:
            return None
        found = next(iter(_children(found, name)), None)
    return found


class ScnImage:
    """What a Leica SCN's XML says about one of its images."""

    def __init__(self, image: ET.Element, collection: ET.Element) -> None:
        self.name = image.attrib.get("name") or None
        view = _find(image, "view")
        pixels = _find(image, "pixels")
        dims = [d for d in _children(pixels, "dimension")] if pixels is not None else []
        full = [d for d in dims if int(d.attrib.get("r", 0)) == 0]
        size = (view.attrib.get("sizeX"), view.attrib.get("sizeY")) if view is not None else None
        # NOTE: the macro image is the one that shows the whole collection (the slide).
        self.is_macro = size is not None and size == (
            collection.attrib.get("sizeX"),
            collection.attrib.get("sizeY"),
        )
        self.mpp: tuple[float | None, float | None] = (None, None)
        if view is not None and full:
            nm_x, nm_y = (positive(view.attrib.get(k)) for k in ("sizeX", "sizeY"))
            px_x, px_y = (positive(full[0].attrib.get(k)) for k in ("sizeX", "sizeY"))
            if nm_x and nm_y and px_x and px_y:
                self.mpp = (nm_x / px_x / 1000, nm_y / px_y / 1000)
        objective = _find(image, "scanSettings", "objectiveSettings", "objective")
        self.objective = _objective(objective.text) if objective is not None else None
        channels = _find(image, "scanSettings", "channelSettings")
        self.channels = (
            [c.attrib.get("name", "") for c in _children(channels, "channel")]
            if channels is not None
            else []
        )
        created = _find(image, "creationDate")
        self.acquired = created.text.strip() if created is not None and created.text else None
        self.has_pixels = bool(dims)


def scn_images(description: str) -> list[ScnImage]:
    """Return the images of a Leica SCN's XML that hold pixels, in tifffile's series order."""
    try:
        root = ET.fromstring(description)
    except ET.ParseError:
        return []
    found: list[ScnImage] = []
    for collection in _children(root, "collection"):
        for image in _children(collection, "image"):
            scn = ScnImage(image, collection)
            if scn.has_pixels:
                found.append(scn)
    return found


class _Level:
    """One stored resolution level of a series, read in bands of rows of one plane."""

    def __init__(self, series: tifffile.TiffPageSeries, level: int) -> None:
        stored = series.levels[level]
        self.axes = stored.axes.upper()
        self.shape = tuple(int(n) for n in stored.shape)
        if 0 in self.shape:
            raise ImportFailed(f"an image of the slide is empty (shape {self.shape})")
        self.groups = plan_axes(self.axes, self.shape)
        self.series = series
        self.level = level
        self.array: Any = None
        self.page = tiled_page(stored)  # decoded here, not through zarr, when it qualifies
        # PERF: the samples of a pixel (RGB) are decoded together; the last band is kept with
        # all of them, so reading its channels one after another decodes its tiles once.
        self._last: tuple[tuple[Any, ...], np.ndarray] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]

    def others(self) -> tuple[int, ...]:
        """Return the sizes of the axes other than Y and X (equal across a series' levels)."""
        return tuple(n for axis, n in zip(self.axes, self.shape, strict=True) if axis not in "YX")

    def _rows(self, index: tuple[Any, ...], y0: int, y1: int) -> np.ndarray:
        """Return the rows ``index`` selects (Y and X sliced, S whole when there is one)."""
        if self.page is not None:
            return tile_rows(self.page, y0, y1)
        if self.array is None:
            self.array = zarr.open_array(
                self.series.aszarr(level=self.level), mode="r", zarr_format=2
            )
        return np.asarray(self.array[index])

    def band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        index: list[int | slice] = [0] * len(self.shape)
        for target, value in (("T", t), ("C", c), ("Z", z)):
            axes = self.groups[target]
            if axes:
                found = np.unravel_index(value, [self.shape[i] for i in axes])
                for axis, position in zip(axes, found, strict=True):
                    index[axis] = int(position)
        index[self.axes.index("Y")] = slice(y0, y1)
        index[self.axes.index("X")] = slice(None)
        samples = self.axes.find("S")
        if samples < 0:
            return self._rows(tuple(index), y0, y1)
        sample = index[samples]
        assert isinstance(sample, int)  # S is a channel axis: set above
        index[samples] = slice(None)
        key = tuple((i.start, i.stop) if isinstance(i, slice) else i for i in index)
        if self._last is None or self._last[0] != key:
            self._last = None  # NOTE: free the old band before decoding the next
            self._last = (key, self._rows(tuple(index), y0, y1))
        # The band keeps the sliced axes (Y, X, S in the stored order); take the sample.
        kept = sum(isinstance(i, slice) for i in index[:samples])
        # PERF: a strided slice copies a full-width band 4 × faster than np.take does.
        return np.ascontiguousarray(self._last[1][(slice(None),) * kept + (sample,)])

    def close(self) -> None:
        self.array = None
        self._last = None


def _check_extent(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    """Raise ImportFailed when tiles of a series or of its levels lie past the end of the file."""
    size = tif.filehandle.size
    end = 0
    for level in (series, *series.levels[1:]):
        for page in level.pages:
            if page is None:
                raise ImportFailed("planes of the slide are missing")
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            if offsets.size:
                end = max(end, int((offsets + counts).max()))
    if end > size:
        raise ImportFailed(f"the file is truncated ({size} bytes, the slide needs {end})")


class TiffSlideReader:
    """One image of a TIFF-based slide: the main image with its own levels, or a label."""

    def __init__(self, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, meta: ImageMeta):
        self.tif = tif
        base = _Level(series, 0)
        self.levels = [base]
        for number in range(1, len(series.levels)):
            found = _Level(series, number)
            # NOTE: a level that is not smaller, or that has other planes than level 0
            # (an SVS whose focal planes differ per level), is left to be computed.
            if found.others() != base.others() or found.size >= self.levels[-1].size:
                break
            self.levels.append(found)
        meta.levels = [level.size for level in self.levels[1:]]
        self.meta = meta

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level} is not one of the slide's {len(self.levels)} levels")
        try:
            return self.levels[level].band(t, c, z, y0, y1)
        except MemoryError:
            raise ImportFailed("a band of the slide is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - codecs raise their own error types
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} at level {level} cannot be "
                f"decoded ({_text(exc)})"
            ) from None

    def close(self) -> None:
        for level in self.levels:
            level.close()


def _channels(series: tifffile.TiffPageSeries, size_c: int, names: list[str]) -> list[ChannelMeta]:
    photometric = series.keyframe.photometric
    rgb = "S" in series.axes.upper() and photometric in (
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.YCBCR,
    )
    if rgb and size_c == 3:
        return [ChannelMeta(n, c) for n, c in RGB_CHANNELS]
    found = [ChannelMeta(name) for name in names[:size_c]]
    return found + [ChannelMeta("") for _ in range(size_c - len(found))]


def _metadata(properties: dict[str, str], fields: dict[str, str]) -> dict[str, str]:
    found = {k: v for k, v in properties.items() if len(v) <= MAX_VALUE}
    if not found:
        found = {f"aperio.{k}": v for k, v in fields.items() if len(v) <= MAX_VALUE}
    return found


class TiffSlide:
    """A TIFF-based slide, opened once and shared by the images of its fileset."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.tif: tifffile.TiffFile | None = None
        try:
            with page_chain_checked():
                self.tif = tifffile.TiffFile(path)
                self.openers = self._plan()
        except ImportFailed:  # UnsupportedFormat too
            self.close()
            raise
        except MemoryError:
            self.close()
            raise ImportFailed("the slide's TIFF structure is too large to read") from None
        except Exception as exc:  # noqa: BLE001 - corrupt TIFF structures fail in many ways
            self.close()
            raise ImportFailed(f"not a readable slide ({_text(exc)})") from None

    def _plan(self) -> list[Callable[[], Reader]]:
        """Return an opener per image: the main images first, then the associated ones."""
        assert self.tif is not None
        first = self.tif.pages.first
        description = first.description or ""
        fields = aperio_fields(description) if self.fmt == "svs" else {}
        scn = scn_images(description) if self.fmt == "scn" else []
        properties = openslide_properties(self.path)
        every = list(self.tif.series)
        if scn and len(scn) != len(every):
            scn = []  # NOTE: the XML and tifffile disagree; keep the pixels, lose the names
        main: list[tuple[tifffile.TiffPageSeries, ScnImage | None]] = []
        associated: list[tuple[tifffile.TiffPageSeries, str]] = []
        for index, series in enumerate(every):
            info = scn[index] if scn else None
            if info is not None and info.is_macro:
                associated.append((series, "macro"))
            elif series.name in ASSOCIATED:
                associated.append((series, ASSOCIATED[series.name]))
            elif series.name not in SKIPPED:
                main.append((series, info))
        if not main:
            raise ImportFailed("the slide holds no main image")
        for series, _ in main:
            _check_extent(self.tif, series)
        for series, _ in associated:
            _check_extent(self.tif, series)

        stem = self.path.stem
        metadata = _metadata(properties, fields)
        openers: list[Callable[[], Reader]] = []
        for number, (series, info) in enumerate(main):
            meta = self._meta(series, stem, properties, fields, info)
            if len(main) > 1:
                meta.series = (info.name if info and info.name else None) or f"image {number + 1}"
                meta.name = f"{stem} [{meta.series}]"
            meta.original_metadata = metadata
            openers.append(self._opener(series, meta))
        for series, kind in associated:
            meta = self._meta(series, f"{stem} {kind}", {}, {}, None)
            meta.kind = meta.series = kind
            meta.physical_size_x = meta.physical_size_y = None
            meta.objective = None
            openers.append(self._opener(series, meta))
        return openers

    def _meta(
        self,
        series: tifffile.TiffPageSeries,
        name: str,
        properties: dict[str, str],
        fields: dict[str, str],
        scn: ScnImage | None,
    ) -> ImageMeta:
        axes, shape = series.axes.upper(), tuple(int(n) for n in series.shape)
        groups = plan_axes(axes, shape)
        sizes = {target: math.prod(shape[i] for i in found) for target, found in groups.items()}
        keyframe = series.keyframe
        if sizes["C"] == 4 and "S" in axes and keyframe.photometric == tifffile.PHOTOMETRIC.RGB:
            sizes["C"] = 3  # NOTE: alpha is dropped, as for PNG and TIFF
        pixel_type = check_pixel_type(np.dtype(series.dtype))
        mpp: tuple[float | None, float | None] = (None, None)
        objective: str | None = None
        acquired: str | None = None
        if scn is not None:
            mpp, objective, acquired = scn.mpp, scn.objective, scn.acquired
        elif fields:
            mpp = (positive(fields.get("MPP")),) * 2
            objective = _objective(fields.get("AppMag"))
            acquired = _aperio_date(fields)
        if mpp[0] is None:
            mpp = (positive(properties.get("openslide.mpp-x")), None)
            mpp = (mpp[0], positive(properties.get("openslide.mpp-y")) or mpp[0])
        if mpp[0] is None:
            mpp = _resolution(keyframe)
        objective = objective or _objective(properties.get("openslide.objective-power"))
        return ImageMeta(
            name=name,
            format=self.fmt,
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=shape[axes.index("Y")],
            size_x=shape[axes.index("X")],
            pixel_type=pixel_type,
            channels=_channels(series, sizes["C"], scn.channels if scn else []),
            physical_size_x=mpp[0],
            physical_size_y=mpp[1] if mpp[1] is not None else mpp[0],
            objective=objective,
            acquired=acquired or _tiff_date(keyframe),
        )

    def _opener(self, series: tifffile.TiffPageSeries, meta: ImageMeta) -> Callable[[], Reader]:
        def open_image() -> Reader:
            if self.tif is None:
                raise ImportFailed("the slide was closed")
            return TiffSlideReader(self.tif, series, meta)

        return open_image

    def close(self) -> None:
        if self.tif is not None:
            self.tif.close()
            self.tif = None


def _composite(rgba: np.ndarray) -> np.ndarray:
    """Return RGB from OpenSlide's (unpremultiplied) RGBA, over white where it is transparent."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    # NOTE: alpha is 255 inside scanned tiles and 0 between them; only edges blend.
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


class OpenSlideReader:
    """An image OpenSlide reads: a MIRAX slide at its own levels, or one of its pictures."""

    def __init__(self, slide: Any, meta: ImageMeta, associated: str | None = None) -> None:
        self.slide = slide
        self.meta = meta
        self.associated = associated
        self.picture: np.ndarray | None = None
        self.cached: tuple[tuple[int, int, int], np.ndarray] | None = None
        if associated is None:
            sizes = slide.level_dimensions
            meta.levels = [(int(h), int(w)) for w, h in sizes[1:]]

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def _rgb(self, level: int, y0: int, y1: int) -> np.ndarray:
        if self.associated is not None:
            if self.picture is None:
                image = self.slide.associated_images[self.associated]
                self.picture = _composite(np.asarray(image.convert("RGBA")))
            return self.picture[y0:y1]
        # PERF: the three channels of a band come from one RGBA read, kept until the next band.
        key = (level, y0, y1)
        if self.cached is None or self.cached[0] != key:
            width = self.slide.level_dimensions[level][0]
            downsample = self.slide.level_downsamples[level]
            # NOTE: the location is in level-0 pixels; MIRAX downsamples are powers of two.
            location = (0, round(y0 * downsample))
            region = self.slide.read_region(location, level, (width, y1 - y0))
            self.cached = (key, _composite(np.asarray(region)))
        return self.cached[1]

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if not 0 <= level <= len(self.meta.levels) or c > 2:
            raise ValueError(f"no level {level} or channel {c} in this slide")
        try:
            return np.ascontiguousarray(self._rgb(level, y0, y1)[:, :, c])
        except Exception as exc:  # noqa: BLE001 - OpenSlide reports damage as OpenSlideError
            raise ImportFailed(
                f"rows {y0}:{y1} at level {level} cannot be read ({_text(exc)})"
            ) from None

    def close(self) -> None:
        self.picture = None
        self.cached = None


def open_mirax(path: Path) -> Fileset:
    """Open a MIRAX slide: the .mrxs file and the folder of the same name beside it."""
    import openslide

    folder = path.with_suffix("")
    if not folder.is_dir():
        raise ImportFailed(
            f"{path.name}: a MIRAX slide needs its data folder {folder.name}/ beside the .mrxs file"
        )
    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        raise UnsupportedFormat(f"{path.name}: not a MIRAX slide OpenSlide can read") from None
    except Exception as exc:  # noqa: BLE001 - OpenSlideError and OSError
        raise ImportFailed(f"{path.name}: not a readable MIRAX slide ({_text(exc)})") from None
    properties = dict(slide.properties)
    width, height = slide.dimensions
    mpp_x = positive(properties.get("openslide.mpp-x"))
    mpp_y = positive(properties.get("openslide.mpp-y")) or mpp_x

    def meta(name: str, size: tuple[int, int], kind: str = "image") -> ImageMeta:
        return ImageMeta(
            name=name,
            format="mrxs",
            size_t=1,
            size_c=3,
            size_z=1,
            size_y=int(size[1]),
            size_x=int(size[0]),
            pixel_type="uint8",
            channels=[ChannelMeta(n, c) for n, c in RGB_CHANNELS],
            series=None if kind == "image" else kind,
            kind=kind,
        )

    main = meta(path.stem, (width, height))
    main.physical_size_x, main.physical_size_y = mpp_x, mpp_y
    main.objective = _objective(properties.get("openslide.objective-power"))
    main.original_metadata = {k: v for k, v in properties.items() if len(v) <= MAX_VALUE}

    def opener(picture: ImageMeta, name: str | None) -> Callable[[], Reader]:
        return lambda: OpenSlideReader(slide, picture, name)

    images = [opener(main, None)]
    for name in slide.associated_images:
        # NOTE: OpenSlide names MIRAX's pictures "label", "macro" and "thumbnail".
        prefix = f"openslide.associated.{name}."
        size = (int(properties.get(prefix + "width", 0)), int(properties.get(prefix + "height", 0)))
        if name not in ASSOCIATED.values() or 0 in size:
            continue
        picture = meta(f"{path.stem} {name}", size, name)
        images.append(opener(picture, name))
    return Fileset(format="mrxs", files=[path, folder], images=images, closers=[slide.close])


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a whole-slide image: its main image(s), then its label, macro and thumbnail."""
    if fmt == "mrxs":
        return open_mirax(path)
    slide = TiffSlide(path, fmt)
    return Fileset(format=fmt, files=[path], images=slide.openers, closers=[slide.close])
