"""Zeiss CZI through pylibCZIrw (libCZI): every scene an image, mosaics composited band by band.

libCZI composes the tiles of a mosaic into any rectangle, so a band of rows of a scene's
bounding box is one read: only the subblocks the band touches are decoded (compressed ones
stay in a bounded cache for the next band). The file's subblock directory is read here too,
to refuse a truncated file before any pixel is imported and to learn where each dimension
starts (pylibCZIrw reports sizes only).
"""

from __future__ import annotations

import contextlib
import math
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import numpy as np
from pylibCZIrw import czi as pyczi

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.meta import RGB_CHANNELS, capped, positive, reason

# libCZI's PixelType numbers: (name pylibCZIrw reads by, numpy type, samples per pixel).
PIXEL_TYPES: dict[int, tuple[str, str, int]] = {
    0: ("Gray8", "uint8", 1),
    1: ("Gray16", "uint16", 1),
    2: ("Gray32Float", "float32", 1),
    3: ("Bgr24", "uint8", 3),
    4: ("Bgr48", "uint16", 3),
    8: ("Bgr96Float", "float32", 3),
}
UNREADABLE_PIXEL_TYPES = {
    9: "Bgra32",
    10: "Gray64ComplexFloat",
    11: "Bgr192ComplexFloat",
    12: "Gray32",
    13: "Gray64Float",
}
# Plane dimensions besides T, C and Z that a CZI may have: rotation, illumination, phase,
# view, block. They are folded into Z when the file has no Z, else into T.
EXTRA_DIMS = ("R", "I", "H", "V", "B")
# PERF: libCZI keeps decoded compressed subblocks for the next band; bounded so an import
# stays within its memory budget.
CACHE_BYTES = 256 * 1024 * 1024
# The order in which the top-level metadata sections fill original_metadata: what describes
# the image first, the acquisition set-up (often thousands of entries) last.
METADATA_ORDER = ("Information", "Scaling", "DisplaySetting", "CustomAttributes")
HEADER = struct.Struct("<16sqq")  # segment id, allocated size, used size
SHORT_READ = "Not enough data read"  # what libCZI says when the file ends too soon


@dataclass
class _Directory:
    """What the subblock directory says: pixel types per channel and where dimensions start."""

    pixel_types: dict[int, int] = field(default_factory=dict)  # C index -> libCZI pixel type
    starts: dict[str, int] = field(default_factory=dict)


def _segment_end(handle: Any, position: int, size: int, ident: bytes, what: str) -> int:
    """Return where the segment ``ident`` at ``position`` ends, or raise ImportFailed."""
    if position < 0 or position + HEADER.size > size:
        raise ImportFailed(f"the CZI is truncated ({size} bytes; {what} starts at byte {position})")
    handle.seek(position)
    found, allocated, used = HEADER.unpack(handle.read(HEADER.size))
    if not found.startswith(ident):
        raise ImportFailed(f"the CZI is damaged ({what} at byte {position} is not there)")
    # NOTE: a used size of 0 means the whole allocated size is in use.
    end = position + HEADER.size + (used or allocated)
    if end > size:
        raise ImportFailed(f"the CZI is truncated ({size} bytes; {what} needs {end})")
    return end


def _read_directory(path: Path) -> _Directory:
    """Return what the subblock directory of ``path`` says, or raise ImportFailed.

    Every segment the file header points to and the last subblock must lie within the file;
    the pixels of a file cut short are then found missing before any is imported.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(HEADER.size + 80)
        if len(head) < HEADER.size + 80 or not head.startswith(b"ZISRAWFILE"):
            raise ImportFailed("the CZI is truncated (its file header is incomplete)")
        directory_at, metadata_at = struct.unpack_from("<qq", head, HEADER.size + 52)
        (attachments_at,) = struct.unpack_from("<q", head, HEADER.size + 72)
        end = _segment_end(handle, directory_at, size, b"ZISRAWDIRECTORY", "its subblock directory")
        if metadata_at > 0:
            _segment_end(handle, metadata_at, size, b"ZISRAWMETADATA", "its metadata")
        if attachments_at > 0:
            _segment_end(handle, attachments_at, size, b"ZISRAWATTDIR", "its attachment directory")
        handle.seek(directory_at + HEADER.size)
        data = handle.read(end - directory_at - HEADER.size)
        (count,) = struct.unpack_from("<i", data, 0)
        found = _Directory()
        last = 0
        offset = 128
        for _ in range(count):
            if offset + 32 > len(data) or data[offset : offset + 2] != b"DV":
                raise ImportFailed("the CZI is damaged (its subblock directory is unreadable)")
            pixel_type, position = struct.unpack_from("<iq", data, offset + 2)
            (dims,) = struct.unpack_from("<i", data, offset + 28)
            offset += 32
            coords: dict[str, int] = {}
            for _dim in range(dims):
                name, start = struct.unpack_from("<4si", data, offset)
                coords[name.rstrip(b"\x00 ").decode("ascii", "replace")] = start
                offset += 20
            for name, start in coords.items():
                if name not in "XYMS":
                    found.starts[name] = min(start, found.starts.get(name, start))
            found.pixel_types.setdefault(coords.get("C", 0), pixel_type)
            last = max(last, position)
        if count:
            _segment_end(handle, last, size, b"ZISRAWSUBBLOCK", "its last subblock")
    return found


def _local(element: Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _text(element: Element | None, path: str) -> str | None:
    found = element.find(path) if element is not None else None
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def czi_color(text: str | None) -> str | None:
    """Return "RRGGBB" from a CZI colour, "#AARRGGBB" or "#RRGGBB"."""
    digits = (text or "").strip().lstrip("#")
    if len(digits) not in (6, 8) or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
        return None
    return digits[-6:].upper()


def _flatten(metadata: Element) -> dict[str, str]:
    """Return the metadata as "Information|Image|SizeX" keys, capped in count and length."""
    seen: set[str] = set()

    def walk(element: Element, prefix: str) -> Iterator[tuple[str, str]]:
        key = f"{prefix}|{_local(element)}" if prefix else _local(element)
        yield key, element.text or ""
        for name, value in element.attrib.items():
            yield f"{key}|{name}", value
        for child in element:
            yield from walk(child, key)

    def unique(pairs: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        for key, value in pairs:
            value = value.strip()
            if not value:
                continue
            name, n = key, 1
            while name in seen:
                n += 1
                name = f"{key} #{n}"
            seen.add(name)
            yield name, value

    sections = sorted(
        metadata,
        key=lambda el: (
            METADATA_ORDER.index(_local(el))
            if _local(el) in METADATA_ORDER
            else len(METADATA_ORDER)
        ),
    )
    return capped(unique(pair for section in sections for pair in walk(section, "")))


@dataclass
class _Metadata:
    """What the CZI's XML metadata says about its images."""

    channels: list[ChannelMeta] = field(default_factory=list)
    physical: tuple[float | None, float | None, float | None] = (None, None, None)
    objective: str | None = None
    acquired: str | None = None
    time_increment: float | None = None
    original: dict[str, str] = field(default_factory=dict)


def _channels(metadata: Element) -> list[ChannelMeta]:
    shown = {
        element.get("Id"): element
        for element in metadata.findall("DisplaySetting/Channels/Channel")
    }
    listed = metadata.findall("Information/Image/Dimensions/Channels/Channel")
    channels = []
    for element in listed or list(shown.values()):
        display = shown.get(element.get("Id"))
        name = element.get("Name") or (display.get("Name") if display is not None else None)
        color = czi_color(_text(element, "Color")) or czi_color(_text(display, "Color"))
        channels.append(
            ChannelMeta(
                name=name or "",
                color=color,
                emission_wave=positive(_text(element, "EmissionWavelength")),
                excitation_wave=positive(_text(element, "ExcitationWavelength")),
            )
        )
    return channels


def _objective(information: Element | None) -> str | None:
    if information is None:
        return None
    objectives = information.findall("Instrument/Objectives/Objective")
    ref = information.find("Image/ObjectiveSettings/ObjectiveRef")
    chosen = next((o for o in objectives if ref is not None and o.get("Id") == ref.get("Id")), None)
    chosen = chosen if chosen is not None else next(iter(objectives), None)
    if chosen is None:
        return None
    return chosen.get("Name") or _text(chosen, "Model") or _text(chosen, "Manufacturer/Model")


def _time_increment(information: Element | None) -> float | None:
    """Return seconds between time points from the T dimension's interval or offsets."""
    t = information.find("Image/Dimensions/T") if information is not None else None
    if t is None:
        return None
    increment = positive(_text(t, "Positions/Interval/Increment"))
    if increment is not None:
        return increment
    try:
        offsets = [float(v) for v in (_text(t, "Positions/List/Offsets") or "").split()]
    except ValueError:
        return None
    if len(offsets) < 2:
        return None
    return positive(str((offsets[-1] - offsets[0]) / (len(offsets) - 1)))


def parse_metadata(xml: str) -> _Metadata:
    """Return channels, pixel sizes (µm), objective, date and flattened keys of a CZI's XML."""
    try:
        root = SafeET.fromstring(xml)
    except Exception:  # noqa: BLE001 - defusedxml refuses entities; broken XML is no metadata
        return _Metadata()
    metadata = root.find("Metadata") if _local(root) == "ImageDocument" else root
    if metadata is None:
        return _Metadata()
    distances = {d.get("Id"): d for d in metadata.findall("Scaling/Items/Distance")}
    psx, psy, psz = (
        None if (v := positive(_text(distances.get(axis), "Value"))) is None else v * 1e6
        for axis in "XYZ"
    )
    information = metadata.find("Information")
    return _Metadata(
        channels=_channels(metadata),
        physical=(psx, psy if psy is not None else psx, psz),
        objective=_objective(information),
        acquired=_text(information, "Image/AcquisitionDateAndTime")
        or _text(information, "Document/CreationDate"),
        time_increment=_time_increment(information),
        original=_flatten(metadata),
    )


class _Source(NamedTuple):
    """Where one channel of the image comes from."""

    czi_c: int  # the CZI channel, counted from its first
    pixel_type: str  # libCZI's name of its pixel type
    sample: int  # 0, 1, 2 for the red, green, blue of a colour channel; else 0
    rgb: bool


@dataclass(frozen=True)
class _Plan:
    """How the 5-D image of every scene maps onto the CZI's planes and samples."""

    sizes: dict[str, int]  # every plane dimension of the file with its size, T and Z first
    folded: dict[str, tuple[str, ...]]  # "T"/"Z" -> the dimensions that make it up
    channels: list[_Source]  # one per channel of the image
    dtype: np.dtype


def _plan(document: pyczi.CziReader, directory: _Directory) -> _Plan:
    box = document.total_bounding_box
    sizes = {dim: hi - lo for dim, (lo, hi) in box.items() if dim not in "XY"}
    sizes.setdefault("T", 1)
    sizes.setdefault("Z", 1)
    extra = tuple(dim for dim in EXTRA_DIMS if sizes.get(dim, 1) > 1)
    target = "T" if sizes["Z"] > 1 else "Z"
    folded: dict[str, tuple[str, ...]] = {"T": ("T",), "Z": ("Z",)}
    folded[target] = (target, *extra)
    channels: list[_Source] = []
    dtypes = []
    for czi_c in range(sizes.get("C", 1)):
        code = directory.pixel_types.get(czi_c + directory.starts.get("C", 0), -1)
        if code not in PIXEL_TYPES:
            name = UNREADABLE_PIXEL_TYPES.get(code, f"number {code}")
            raise UnsupportedFormat(f"CZI pixel type {name} (channel {czi_c}) is not supported")
        name, dtype, samples = PIXEL_TYPES[code]
        dtypes.append(np.dtype(dtype))
        channels.extend(_Source(czi_c, name, sample, samples == 3) for sample in range(samples))
    return _Plan(sizes, folded, channels, np.result_type(*dtypes))


class CziScene:
    """One scene of an open CZI (or the whole file when it has none), read band by band."""

    def __init__(
        self,
        document: pyczi.CziReader,
        lock: threading.Lock,
        plan: _Plan,
        directory: _Directory,
        scene: int | None,
        rect: pyczi.Rectangle,
        meta: ImageMeta,
    ) -> None:
        self.document = document
        self.lock = lock
        self.plan = plan
        self.starts = directory.starts
        self.scene = scene
        self.rect = rect
        self.meta = meta
        # PERF: the three samples of an RGB pixel come out of one read; keep the last band.
        self._last: tuple[tuple[Any, ...], np.ndarray] | None = None

    def _coords(self, t: int, c: int, z: int) -> dict[str, int]:
        coords: dict[str, int] = {}
        for axis, value in (("T", t), ("Z", z)):
            dims = self.plan.folded[axis]
            shape = [self.plan.sizes.get(dim, 1) for dim in dims]
            for dim, index in zip(dims, np.unravel_index(value, shape), strict=True):
                coords[dim] = int(index)
        coords["C"] = self.plan.channels[c].czi_c
        return {dim: self.starts.get(dim, 0) + index for dim, index in coords.items()}

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        source = self.plan.channels[c]
        plane = self._coords(t, c, z)
        key = (tuple(sorted(plane.items())), y0, y1)
        if self._last is not None and self._last[0] == key:
            band = self._last[1]
        else:
            roi = (self.rect.x, self.rect.y + y0, self.rect.w, y1 - y0)
            try:
                with self.lock:
                    band = self.document.read(
                        roi=roi,
                        plane=plane,
                        scene=self.scene,
                        zoom=1.0,
                        pixel_type=source.pixel_type,
                    )
            except MemoryError:
                raise ImportFailed("a band of the CZI is too large to decode") from None
            except Exception as exc:  # noqa: BLE001 - libCZI raises RuntimeError, ValueError…
                where = f" of {self.meta.series}" if self.meta.series else ""
                why = "the CZI is truncated: " if SHORT_READ in str(exc) else ""
                raise ImportFailed(
                    f"rows {y0}:{y1} of plane t={t} c={c} z={z}{where} cannot be read "
                    f"({why}{' '.join(str(exc).split())})"
                ) from None
            self._last = (key, band)
        if band.shape[:2] != (y1 - y0, self.meta.size_x):
            raise ImportFailed(
                f"libCZI returned a band of shape {band.shape[:2]} for rows {y0}:{y1}"
            )
        # NOTE: libCZI stores colour as B, G, R; channel 0 of the image is red.
        index = 2 - source.sample if source.rgb else 0
        return np.ascontiguousarray(band[:, :, index], dtype=self.plan.dtype)

    def close(self) -> None:
        self._last = None


def _channel_meta(plan: _Plan, described: list[ChannelMeta]) -> list[ChannelMeta]:
    """Return one ChannelMeta per image channel: RGB samples are Red, Green, Blue."""
    several = len({source.czi_c for source in plan.channels}) > 1
    out = []
    for source in plan.channels:
        given = described[source.czi_c] if source.czi_c < len(described) else ChannelMeta("")
        if source.rgb:
            name, color = RGB_CHANNELS[source.sample]
            out.append(
                ChannelMeta(f"{given.name} {name}" if several and given.name else name, color)
            )
        else:
            out.append(replace(given))
    return out


@contextlib.contextmanager
def _failing_cleanly(path: Path) -> Iterator[None]:
    """Turn what libCZI raises on a damaged file into ImportFailed naming the reason."""
    try:
        yield
    except ImportFailed:
        raise
    except MemoryError:
        raise ImportFailed("the CZI's structure is too large to read") from None
    except Exception as exc:  # noqa: BLE001 - libCZI raises RuntimeError, ValueError…
        if SHORT_READ in str(exc):
            raise ImportFailed(f"the CZI is truncated ({reason(exc, path)})") from None
        raise ImportFailed(f"not a readable CZI ({reason(exc, path)})") from None


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a CZI: one image per scene, or one image when the file has no scenes."""
    stack = contextlib.ExitStack()
    try:
        with _failing_cleanly(path):
            directory = _read_directory(path)
            cache = pyczi.CacheOptions(pyczi.CacheType.Standard, max_memory_usage=CACHE_BYTES)
            document = stack.enter_context(pyczi.open_czi(str(path), cache_options=cache))
            plan = _plan(document, directory)
            pixel_type = check_pixel_type(plan.dtype)
            scenes: dict[int | None, pyczi.Rectangle] = dict(
                document.scenes_bounding_rectangle_no_pyramid
            )
            if not scenes:
                scenes = {None: document.total_bounding_rectangle_no_pyramid}
            described = parse_metadata(document.raw_metadata)
    except BaseException:
        stack.close()
        raise
    lock = threading.Lock()
    base = ImageMeta(
        name=path.stem,
        format=fmt,
        size_t=math.prod(plan.sizes.get(dim, 1) for dim in plan.folded["T"]),
        size_c=len(plan.channels),
        size_z=math.prod(plan.sizes.get(dim, 1) for dim in plan.folded["Z"]),
        size_y=0,
        size_x=0,
        pixel_type=pixel_type,
        channels=_channel_meta(plan, described.channels),
        physical_size_x=described.physical[0],
        physical_size_y=described.physical[1],
        physical_size_z=described.physical[2],
        objective=described.objective,
        acquired=described.acquired,
        time_increment=described.time_increment,
        original_metadata=described.original,
    )
    openers: list[Callable[[], Reader]] = []
    for number, (scene, rect) in enumerate(sorted(scenes.items(), key=lambda kv: kv[0] or 0)):
        if rect.w <= 0 or rect.h <= 0:
            continue
        meta = replace(
            base,
            size_y=rect.h,
            size_x=rect.w,
            series=f"scene {number + 1}" if len(scenes) > 1 else None,
        )

        def opener(scene: int | None = scene, rect: Any = rect, meta: ImageMeta = meta) -> Reader:
            own = replace(
                meta,
                channels=[replace(ch) for ch in meta.channels],
                original_metadata=dict(meta.original_metadata),
            )
            return CziScene(document, lock, plan, directory, scene, rect, own)

        openers.append(opener)
    return Fileset(format=fmt, files=[path], images=openers, closers=[stack.close])
