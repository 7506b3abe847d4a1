"""TIFF, BigTIFF and OME-TIFF: the first series at full resolution, read band by band.

Uncompressed data stored in one run (what tifffile, ImageJ and most OME writers produce)
is read straight from the file, a band of rows at a time. Everything else goes through
tifffile's Zarr view, which reads and decodes only the strips or tiles a band touches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import (
    ChannelMeta,
    Fileset,
    ImageMeta,
    check_pixel_type,
    read_stored_band,
    single,
)

SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif", ".btf", ".tf8", ".tf2")

# OME's UnitsLength symbols (and ImageJ's spellings) in micrometres.
LENGTH_UNITS = {
    "pm": 1e-6,
    "Å": 1e-4,
    "nm": 1e-3,
    "µm": 1.0,  # MICRO SIGN
    "μm": 1.0,  # GREEK SMALL LETTER MU
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
# Pixel types stored in a wider type with no loss; the rest are refused by check_pixel_type.
WIDENED = {np.dtype(np.float16): np.dtype(np.float32)}
RGB_CHANNELS = (("Red", "FF0000"), ("Green", "00FF00"), ("Blue", "0000FF"))
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
def _page_chain_checked() -> Iterator[None]:
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


def _stem(name: str) -> str:
    """Return ``name`` without its TIFF extension(s)."""
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def ome_color(value: str | None) -> str | None:
    """Return "RRGGBB" from OME's Color: a signed 32-bit integer holding RGBA."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 8:06X}"


def micrometres(value: str | float | None, unit: str | None) -> float | None:
    """Return a positive length in µm from a value and a unit symbol (µm when absent)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    factor = LENGTH_UNITS.get((unit or "µm").strip())
    if factor is None or not math.isfinite(number) or number <= 0:
        return None
    return number * factor


def _nanometres(value: str | None, unit: str | None) -> float | None:
    found = micrometres(value, unit or "nm")
    return None if found is None else found * 1e3


def parse_ome_xml(
    text: str,
) -> tuple[str | None, list[ChannelMeta], tuple[float | None, float | None, float | None]]:
    """Return (name, channels, (x, y, z) pixel sizes in µm) of the first Image of an OME-XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, [], (None, None, None)
    image = next((el for el in root.iter() if _local(el) == "Image"), None)
    pixels = (
        next((el for el in image if _local(el) == "Pixels"), None) if image is not None else None
    )
    if image is None or pixels is None:
        return None, [], (None, None, None)
    a = pixels.attrib
    psx, psy, psz = (
        micrometres(a.get(f"PhysicalSize{axis}"), a.get(f"PhysicalSize{axis}Unit"))
        for axis in "XYZ"
    )
    channels: list[ChannelMeta] = []
    for element in pixels:
        if _local(element) != "Channel":
            continue
        ch = element.attrib
        try:
            samples = max(1, int(ch.get("SamplesPerPixel") or 1))
        except ValueError:
            samples = 1
        if samples == 3:
            channels.extend(ChannelMeta(name, color) for name, color in RGB_CHANNELS)
            continue
        wave = _nanometres(ch.get("EmissionWavelength"), ch.get("EmissionWavelengthUnit"))
        channels.extend(
            ChannelMeta(ch.get("Name", ""), ome_color(ch.get("Color")), wave)
            for _ in range(samples)
        )
    name = image.attrib.get("Name") or None
    # NOTE: writers that know no name fill in "Image0", "Image:0" and the like; the file
    # name says more.
    if name is not None and re.fullmatch(r"Image[:_ ]?\d*", name):
        name = None
    return name, channels, (psx, psy, psz)


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


class TiffReader:
    """One TIFF file: its first series, level 0, as a 5-D image."""

    def __init__(self, path: Path) -> None:
        self.tif: tifffile.TiffFile | None = None
        try:
            with _page_chain_checked():
                self.tif = tifffile.TiffFile(path)
                self._open(path)
        except ImportFailed:  # UnsupportedFormat too
            self.close()
            raise
        except MemoryError:
            self.close()
            raise ImportFailed("the TIFF structure is too large to read") from None
        except Exception as exc:  # noqa: BLE001 - corrupt TIFF structures fail in many ways
            self.close()
            raise ImportFailed(f"not a readable TIFF ({type(exc).__name__}: {exc})") from None

    def _open(self, path: Path) -> None:
        assert self.tif is not None
        if not self.tif.series:
            raise ImportFailed("the TIFF holds no image")
        series = self.tif.series[0]
        if series.is_multifile:
            raise UnsupportedFormat(
                "an OME-TIFF whose planes are spread over several files (import one file)"
            )
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
        rgb = keyframe.photometric == tifffile.PHOTOMETRIC.RGB and self.axes.count("S") == 1
        if rgb and sizes["C"] == 4 and self.groups["C"] == [self.axes.index("S")]:
            sizes["C"] = 3  # NOTE: alpha is dropped, as for PNG
        self._check_extent(series)

        self.stored: tuple[int, np.dtype] | None = None
        self.array: Any = None
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
        else:
            self.array = zarr.open_array(series.aszarr(level=0), mode="r", zarr_format=2)

        ome = self.tif.ome_metadata if self.tif.is_ome else None
        name, channels, (psx, psy, psz) = (
            parse_ome_xml(ome) if ome else (None, [], (None, None, None))
        )
        if not ome and rgb and sizes["C"] == 3:
            channels = [ChannelMeta(n, c) for n, c in RGB_CHANNELS]
        channels = channels[: sizes["C"]]
        channels += [ChannelMeta("") for _ in range(sizes["C"] - len(channels))]
        if psx is None and psy is None:
            psx, psy, psz = self._resolution()
        self.meta = ImageMeta(
            name=_stem(name) if name else _stem(path.name),
            format="ome-tiff" if ome else "tiff",
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
        )

    def _check_extent(self, series: tifffile.TiffPageSeries) -> None:
        """Raise ImportFailed when the image data reaches past the end of the file."""
        assert self.tif is not None
        size = self.tif.filehandle.size
        if series.dataoffset is not None:
            end = int(series.dataoffset) + int(series.nbytes)
        else:
            end = 0
            for page in series.pages:
                if page is None:
                    raise ImportFailed("planes of the TIFF series are missing")
                offsets = np.asarray(page.dataoffsets, dtype=np.int64)
                counts = np.asarray(page.databytecounts, dtype=np.int64)
                if offsets.size:
                    end = max(end, int((offsets + counts).max()))
        if end > size:
            raise ImportFailed(f"the file is truncated ({size} bytes, the image needs {end})")

    def _resolution(self) -> tuple[float | None, float | None, float | None]:
        """Return pixel sizes in µm from ImageJ metadata or the resolution tags."""
        assert self.tif is not None
        page = self.tif.pages.first
        tags = page.tags
        try:
            xres, yres = (tags[t].value for t in ("XResolution", "YResolution"))
            per_x, per_y = xres[0] / xres[1], yres[0] / yres[1]
        except (KeyError, ZeroDivisionError, TypeError, IndexError):
            return None, None, None
        if per_x <= 0 or per_y <= 0:
            return None, None, None
        imagej = self.tif.imagej_metadata or {}
        unit_tag = tags.get("ResolutionUnit")
        unit = int(unit_tag.value) if unit_tag else 2
        if imagej.get("unit"):
            factor = micrometres(1.0, str(imagej["unit"]).replace("\\u00B5", "µ"))
            if factor is None:
                return None, None, None
            z = micrometres(imagej.get("spacing"), str(imagej["unit"]).replace("\\u00B5", "µ"))
            return factor / per_x, factor / per_y, z
        if unit == 3:  # centimetre
            return 1e4 / per_x, 1e4 / per_y, None
        if unit == 2 and per_x > 1000 and per_y > 1000:
            # NOTE: print resolutions (72 to 600 dpi) say nothing about a specimen; only
            # finer than 1000 dpi (25.4 µm) is taken as a microscope's pixel size.
            return 25400 / per_x, 25400 / per_y, None
        return None, None, None

    def _index(self, t: int, c: int, z: int, y0: int, y1: int) -> tuple[int | slice, ...]:
        index: list[int | slice] = [0] * len(self.shape)
        for target, value in (("T", t), ("C", c), ("Z", z)):
            axes = self.groups[target]
            if axes:
                found = np.unravel_index(value, [self.shape[i] for i in axes])
                for axis, position in zip(axes, found, strict=True):
                    index[axis] = int(position)
        index[self.axes.index("Y")] = slice(y0, y1)
        index[self.axes.index("X")] = slice(None)
        return tuple(index)

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        index = self._index(t, c, z, y0, y1)
        try:
            if self.stored is not None:
                assert self.tif is not None
                offset, dtype = self.stored
                with self.tif.filehandle.lock:
                    band = read_stored_band(self.tif.filehandle, offset, dtype, self.shape, index)
            else:
                band = np.asarray(self.array[index])
        except ImportFailed:
            raise
        except MemoryError:
            raise ImportFailed("a band of the TIFF is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - codecs raise their own error types
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} cannot be decoded "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return band.astype(self.cast) if self.cast is not None else band

    def close(self) -> None:
        if self.tif is not None:
            self.tif.close()
            self.tif = None


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a TIFF or OME-TIFF."""
    return single(fmt, path, lambda: TiffReader(path))
