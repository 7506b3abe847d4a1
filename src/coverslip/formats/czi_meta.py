"""What a CZI says besides its pixels: its subblock directory and its XML metadata.

The directory is read here, rather than through libCZI, to refuse a truncated file before
any pixel is imported and to learn where each dimension starts (pylibCZIrw reports sizes
only). The XML gives the channels, pixel sizes, objective, dates and the flattened keys.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta
from coverslip.formats.meta import capped, positive

# The order in which the top-level metadata sections fill original_metadata: what describes
# the image first, the acquisition set-up (often thousands of entries) last.
METADATA_ORDER = ("Information", "Scaling", "DisplaySetting", "CustomAttributes")
HEADER = struct.Struct("<16sqq")  # segment id, allocated size, used size


@dataclass
class Directory:
    """What the subblock directory says: pixel types per channel and where dimensions start."""

    pixel_types: dict[int, int] = field(default_factory=dict)  # C index -> libCZI pixel type
    starts: dict[str, int] = field(default_factory=dict)
    # How much the file's pyramid subblocks are minified (2, 4, 8… or 3, 9…): their logical
    # size over their stored size, in X and Y alike.
    factors: set[int] = field(default_factory=set)


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


def read_directory(path: Path) -> Directory:
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
        found = Directory()
        last = 0
        offset = 128
        for _ in range(count):
            if offset + 32 > len(data) or data[offset : offset + 2] != b"DV":
                raise ImportFailed("the CZI is damaged (its subblock directory is unreadable)")
            pixel_type, position = struct.unpack_from("<iq", data, offset + 2)
            (dims,) = struct.unpack_from("<i", data, offset + 28)
            offset += 32
            coords: dict[str, int] = {}
            minified: dict[str, float] = {}
            for _dim in range(dims):
                name, start, logical, _at, stored = struct.unpack_from("<4siifi", data, offset)
                axis = name.rstrip(b"\x00 ").decode("ascii", "replace")
                coords[axis] = start
                if axis in "XY" and 0 < stored < logical:
                    minified[axis] = logical / stored
                offset += 20
            factor = round(minified.get("X", 1.0))
            close = all(abs(value - factor) < 0.5 for value in minified.values())
            if factor > 1 and set(minified) == {"X", "Y"} and close:
                found.factors.add(factor)
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
class Metadata:
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


def parse_metadata(xml: str) -> Metadata:
    """Return channels, pixel sizes (µm), objective, date and flattened keys of a CZI's XML."""
    try:
        root = SafeET.fromstring(xml)
    except Exception:  # noqa: BLE001 - defusedxml refuses entities; broken XML is no metadata
        return Metadata()
    metadata = root.find("Metadata") if _local(root) == "ImageDocument" else root
    if metadata is None:
        return Metadata()
    distances = {d.get("Id"): d for d in metadata.findall("Scaling/Items/Distance")}
    psx, psy, psz = (
        None if (v := positive(_text(distances.get(axis), "Value"))) is None else v * 1e6
        for axis in "XYZ"
    )
    information = metadata.find("Information")
    return Metadata(
        channels=_channels(metadata),
        physical=(psx, psy if psy is not None else psx, psz),
        objective=_objective(information),
        acquired=_text(information, "Image/AcquisitionDateAndTime")
        or _text(information, "Document/CreationDate"),
        time_increment=_time_increment(information),
        original=_flatten(metadata),
    )
