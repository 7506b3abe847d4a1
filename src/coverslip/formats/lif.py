"""Leica LIF, LOF and XLIF: every image (series) of the file, read band by band with liffile.

A LIF image is described by its dimensions (X, Y, Z, T, and others such as a mosaic's tile
positions) and its channels, each with the byte distance between neighbours. Bands are read
straight from the file at those distances, so a band never costs more than its rows.

How Leica's dimensions become T, C, Z, Y, X:

- X is X. The rows of a plane are the scanned dimension stored next to X: Y for an XY image,
  Z for an XZ image. So an XZ scan ("xz", "xzt") is a 2-D picture of Z rows by X columns,
  whose physical Y size is the Z step; an XZ image stacked along Y ("xzy") keeps Z as its
  rows and has Y as its Z. Without Y or Z (a line scan, "xt"), each plane is one row.
- T is T. Every ChannelDescription is a channel (RGB samples too, each with its colour).
- Other dimensions (tile positions, emission or excitation wavelength, rotation, loops) go
  to Z when the image has no Z, else to T, slowest first: they are kept, not stitched.

Channel names are the dye (else detector) names of the active detectors when the settings
list one per channel, else the LUT names; colours come from the LUT names. FLIM histogram
images are refused. XLIF files whose frames live in other files (LOF, TIFF) are read a
whole frame at a time through liffile, which keeps one frame in memory.
"""

from __future__ import annotations

import math
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import liffile
import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.meta import LENGTH_UNITS, capped

# liffile's DimID codes; 0 is never a dimension (channels are described separately).
DIMENSION_ID = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "λ", 6: "A", 7: "N", 8: "Q", 9: "Λ", 10: "M"}
LUT_COLOURS = {
    "red": "FF0000",
    "green": "00FF00",
    "blue": "0000FF",
    "cyan": "00FFFF",
    "magenta": "FF00FF",
    "yellow": "FFFF00",
    "gray": "FFFFFF",
    "grey": "FFFFFF",
    "white": "FFFFFF",
}
CHANNEL_TAG_COLOURS = {1: "FF0000", 2: "00FF00", 3: "0000FF"}
# PERF: a band whose rows lie far apart is read row by row rather than as one span.
MAX_SPAN_FACTOR = 4


@dataclass(frozen=True)
class Dimension:
    """One DimensionDescription: its label, size, byte stride, physical length and unit."""

    label: str
    size: int
    stride: int
    length: float
    unit: str

    def step(self) -> float | None:
        """Return the distance between neighbours in µm (seconds for T), or None."""
        if self.size < 2 or not math.isfinite(self.length) or self.length <= 0:
            return None
        factor = 1.0 if self.label == "T" else LENGTH_UNITS.get(self.unit.strip())
        if factor is None or (self.label == "T" and self.unit.strip() != "s"):
            return None
        return self.length / (self.size - 1) * factor


def _dimensions(element: ET.Element) -> list[Dimension]:
    found = []
    for i, dim in enumerate(element.iterfind("./Data/Image/ImageDescription/Dimensions/*")):
        a = dim.attrib
        code = int(a.get("DimID", "0"))
        found.append(
            Dimension(
                DIMENSION_ID.get(code, f"?{i}"),
                int(a.get("NumberOfElements", "1")),
                int(a.get("BytesInc", "0")),
                float(a.get("Length", "0")),
                a.get("Unit", ""),
            )
        )
    return found


def _channel_names(element: ET.Element, count: int) -> list[tuple[str, float | None]]:
    """Return (name, emission nm) of each active detector, or [] unless there is one a channel."""
    found: list[tuple[str, float | None]] = []
    for setting in element.iter("ATLConfocalSettingDefinition"):
        bands = {band.get("Channel"): band for band in setting.iter("MultiBand")}
        for detector in setting.iter("Detector"):
            if detector.get("IsActive") != "1":
                continue
            band = bands.get(detector.get("Channel"))
            dye = (band.get("DyeName", "") if band is not None else "").removeprefix("Leica/")
            wave = None
            if band is not None:
                try:
                    begin = float(band.get("TargetWaveLengthBegin", ""))
                    end = float(band.get("TargetWaveLengthEnd", ""))
                    wave = round((begin + end) / 2, 1) if 0 < begin <= end else None
                except ValueError:
                    wave = None
            found.append((dye or detector.get("Name", ""), wave))
    return found if len(found) == count else []


def _flatten(element: ET.Element) -> dict[str, str]:
    """Return the attributes under ``element`` as "Tag|Tag|attribute" keys, capped."""

    def walk(node: ET.Element, prefix: str) -> Iterator[tuple[str, str]]:
        for name, value in node.attrib.items():
            yield f"{prefix}{name}", value
        counts: dict[str, int] = {}
        for child in node:
            counts[child.tag] = counts.get(child.tag, 0) + 1
        seen: dict[str, int] = {}
        for child in node:
            seen[child.tag] = seen.get(child.tag, 0) + 1
            tag = child.tag if counts[child.tag] == 1 else f"{child.tag}[{seen[child.tag]}]"
            yield from walk(child, f"{prefix}{tag}|")

    return capped(
        (key.removeprefix("Data|Image|"), value)
        for key, value in walk(element, "")
        if not key.startswith("Data|Image|TimeStampList")
    )


def _fold(dims: list[Dimension], row: Dimension | None) -> dict[str, list[Dimension]]:
    """Return which Leica dimensions make up T and Z (slowest first)."""
    groups: dict[str, list[Dimension]] = {"T": [], "Z": []}
    other: list[Dimension] = []
    for dim in dims:
        if dim is row or dim.label == "X":
            continue
        if dim.label == "T":
            groups["T"].append(dim)
        elif dim.label in ("Y", "Z"):
            groups["Z"].append(dim)
        else:
            other.append(dim)
    groups["T" if groups["Z"] else "Z"].extend(other)
    for group in groups.values():
        group.sort(key=lambda d: d.stride, reverse=True)
    return groups


def _row_dimension(dims: list[Dimension]) -> Dimension | None:
    """Return the dimension stored as the rows of a plane: Y or Z, whichever is nearer X."""
    spatial = [d for d in dims if d.label in ("Y", "Z")]
    if not spatial:
        return None
    longer = [d for d in spatial if d.size > 1] or spatial
    return min(longer, key=lambda d: d.stride)


class LifReader:
    """One image of a Leica file, as TCZYX."""

    def __init__(self, lif: liffile.LifFile, index: int, lock: threading.Lock) -> None:
        self.lif = lif
        self.lock = lock
        image = lif.images[index]
        label = image.path or image.name
        if not isinstance(image, liffile.LifImage):
            raise UnsupportedFormat(f"series {label!r} is a FLIM histogram, which is not read")
        self.image = image
        element = image.xml_element
        dims = _dimensions(element)
        x = next((d for d in dims if d.label == "X"), None)
        if x is None:
            raise UnsupportedFormat(f"series {label!r} has no X dimension")
        descriptions = list(element.iterfind("./Data/Image/ImageDescription/Channels/*"))
        if not descriptions:
            raise ImportFailed(f"series {label!r} describes no channel")
        try:
            dtype = np.dtype(image.dtype)
        except ValueError as exc:
            raise UnsupportedFormat(f"series {label!r}: {exc}") from None
        pixel_type = check_pixel_type(dtype)
        self.dtype = dtype.newbyteorder("<")
        self.x = x
        self.row = _row_dimension(dims)
        self.groups = _fold(dims, self.row)
        self.channel_strides = [int(ch.get("BytesInc", "0")) for ch in descriptions]
        block = image.memory_block
        self.offset = int(block.offset)
        # NOTE: XLIF data lives in other files (LOF, TIFF, PNG): read whole frames via liffile.
        self.direct = not block.frames and self.offset >= 0
        self.frame: tuple[tuple[int, int, int], np.ndarray] | None = None

        names = _channel_names(element, len(descriptions))
        channels = []
        for i, ch in enumerate(descriptions):
            lut = ch.get("LUTName", "")
            colour = LUT_COLOURS.get(lut.strip().lower())
            if colour is None:
                colour = CHANNEL_TAG_COLOURS.get(int(ch.get("ChannelTag", "0") or 0))
            name, wave = names[i] if names else (lut, None)
            channels.append(ChannelMeta(name, colour, wave))
        z = next((d for d in self.groups["Z"] if d.label in ("Y", "Z")), None)
        t = next((d for d in self.groups["T"] if d.label == "T"), None)
        objective = next(
            (
                " ".join(s.get("ObjectiveName", "").split())
                for s in element.iter("ATLConfocalSettingDefinition")
            ),
            "",
        )
        stamps = image.timestamps
        self.meta = ImageMeta(
            name=image.name or label,
            format="lif",
            size_t=math.prod(d.size for d in self.groups["T"]),
            size_c=len(descriptions),
            size_z=math.prod(d.size for d in self.groups["Z"]),
            size_y=self.row.size if self.row is not None else 1,
            size_x=x.size,
            pixel_type=pixel_type,
            channels=channels,
            physical_size_x=x.step(),
            physical_size_y=self.row.step() if self.row is not None else None,
            physical_size_z=z.step() if z is not None else None,
            series=label,
            objective=objective or None,
            acquired=str(stamps[0]) if stamps is not None and len(stamps) else None,
            time_increment=t.step() if t is not None else None,
            original_metadata=_flatten(element),
        )

    def _offsets(self, t: int, z: int) -> int:
        """Return the byte distance of plane (t, z) from the start of the image data."""
        offset = 0
        for value, group in ((t, self.groups["T"]), (z, self.groups["Z"])):
            if group:
                positions = np.unravel_index(value, [d.size for d in group])
                offset += sum(int(p) * d.stride for p, d in zip(positions, group, strict=True))
        return offset

    def _read(self, start: int, size: int) -> bytes:
        handle = self.lif.filehandle
        handle.seek(start)
        data = handle.read(size)
        if len(data) != size:
            raise ImportFailed(
                f"the file ends inside the image data of series {self.meta.series!r} (truncated)"
            )
        return data

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if not self.direct:
            return self._read_frame(t, c, z)[y0:y1]
        rows, width, item = max(0, y1 - y0), self.x.size, self.dtype.itemsize
        out = np.empty((rows, width), dtype=self.dtype.newbyteorder("="))
        if not rows:
            return out
        row_stride = self.row.stride if self.row is not None else 0
        start = self.offset + self.channel_strides[c] + self._offsets(t, z) + y0 * row_stride
        row_span = (width - 1) * self.x.stride + item
        span = (rows - 1) * row_stride + row_span
        with self.lock:
            if span <= MAX_SPAN_FACTOR * out.nbytes + 65536:
                out[:] = np.ndarray(
                    (rows, width),
                    dtype=self.dtype,
                    buffer=self._read(start, span),
                    strides=(row_stride, self.x.stride),
                )
            else:
                for i in range(rows):
                    out[i] = np.ndarray(
                        (width,),
                        dtype=self.dtype,
                        buffer=self._read(start + i * row_stride, row_span),
                        strides=(self.x.stride,),
                    )
        return out

    def _read_frame(self, t: int, c: int, z: int) -> np.ndarray:
        """Return plane (t, c, z) read whole through liffile (XLIF with external frames)."""
        key = (t, c, z)
        if self.frame is not None and self.frame[0] == key:
            return self.frame[1]
        sizes = self.image.sizes
        indices: dict[str, int] = {"C": c} if "C" in sizes else {}
        for value, group in ((t, self.groups["T"]), (z, self.groups["Z"])):
            if group:
                positions = np.unravel_index(value, [d.size for d in group])
                indices.update(
                    (d.label, int(p))
                    for p, d in zip(positions, group, strict=True)
                    if d.label in sizes
                )
        try:
            with self.lock:
                read: Any = self.image.frame  # NOTE: liffile types **indices as its out= too
                plane = np.asarray(read(**indices))
        except (OSError, ValueError, KeyError, IndexError, NotImplementedError) as exc:
            raise ImportFailed(
                f"plane t={t} c={c} z={z} of series {self.meta.series!r} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ) from None
        plane = plane.reshape(self.meta.size_y, self.meta.size_x).astype(
            self.dtype.newbyteorder("="), copy=False
        )
        self.frame = (key, plane)
        return plane

    def close(self) -> None:
        self.frame = None


def _open(path: Path) -> liffile.LifFile:
    try:
        return liffile.LifFile(path)
    except (
        liffile.LifFileError,
        OSError,
        ValueError,
        KeyError,
        struct.error,
        ET.ParseError,
    ) as exc:
        raise ImportFailed(f"not a readable Leica file ({type(exc).__name__}: {exc})") from None


def _check_blocks(lif: liffile.LifFile, size: int) -> list[Path]:
    """Raise ImportFailed when an image's data is missing; return the files XLIF data lives in."""
    extra: list[Path] = []
    for image in lif.images:
        label = image.path or image.name
        try:
            block = image.memory_block
        except (KeyError, ValueError) as exc:
            raise ImportFailed(
                f"the data of series {label!r} is missing ({type(exc).__name__}: {exc}; "
                "the file is truncated or damaged)"
            ) from None
        if block.frames:
            for frame in block.frames:
                member = Path(lif.dirname) / frame.file
                if not member.exists():
                    raise ImportFailed(f"series {label!r} needs {frame.file}, which is missing")
                if member not in extra:
                    extra.append(member)
        elif block.offset + block.size > size:
            raise ImportFailed(
                f"the file is truncated ({size} bytes; series {label!r} needs "
                f"{block.offset + block.size})"
            )
    return extra


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a Leica file: each of its images is one image of the fileset."""
    lif = _open(path)
    try:
        extra = _check_blocks(lif, path.stat().st_size)
        count = len(lif.images)
    except BaseException:
        lif.close()
        raise
    lock = threading.Lock()

    def opener(index: int) -> Callable[[], Reader]:
        def open_image() -> Reader:
            try:
                return LifReader(lif, index, lock)
            except ImportFailed:
                raise
            except (ValueError, KeyError, IndexError, OSError) as exc:
                raise ImportFailed(
                    f"image {index} of the Leica file cannot be read ({type(exc).__name__}: {exc})"
                ) from None

        return open_image

    return Fileset(
        format=fmt,
        files=[path, *extra],
        images=[opener(i) for i in range(count)],
        closers=[lif.close],
    )
