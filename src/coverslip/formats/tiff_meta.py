"""What the TIFF dialects tifffile parses say about an image, beyond its pixels.

Each dialect function takes the metadata dict tifffile hands out (``imagej_metadata``,
``lsm_metadata``, ``stk_metadata``, ...) and returns a `Found`: channel names and colours,
physical sizes in µm, the time increment, the objective, the acquisition date and the
vendor's keys flattened to text. Nothing here opens a file, so each is tested on its own.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from coverslip.formats import ChannelMeta
from coverslip.formats.meta import (
    MAX_KEYS,
    MAX_VALUE,
    finite,
    micrometres,
    nanometres,
    seconds,
)

MAX_DEPTH = 24  # nesting followed when flattening
NIH_UNITS = ("nm", "µm", "mm", "cm", "m", "km", "in", "ft", "mi", "pixel", "other")


@dataclass
class Found:
    """What a file's metadata says about one image; None or empty where it says nothing."""

    channels: list[ChannelMeta] = field(default_factory=list)  # maybe fewer than the image has
    physical: tuple[float | None, float | None, float | None] = (None, None, None)  # x, y, z µm
    time_increment: float | None = None  # seconds
    objective: str | None = None
    acquired: str | None = None
    original: dict[str, str] = field(default_factory=dict)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def rgb_hex(red: Any, green: Any, blue: Any) -> str | None:
    """Return "RRGGBB" from three 0-255 components, or None when one is not a number."""
    try:
        parts = [int(float(v)) for v in (red, green, blue)]
    except (TypeError, ValueError):
        return None
    if any(not 0 <= v <= 255 for v in parts):
        return None
    return "".join(f"{v:02X}" for v in parts)


def iso_date(value: Any) -> str | None:
    """Return ISO 8601 text from a datetime, or from TIFF's "YYYY:MM:DD HH:MM:SS"."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]"))
    text = str(value or "").strip()
    match = re.fullmatch(r"(\d{4})[:\-](\d\d)[:\-](\d\d)[ T](\d\d:\d\d:\d\d)(.*)", text)
    if match:
        return f"{match[1]}-{match[2]}-{match[3]}T{match[4]}{match[5]}"
    return None


def _text(value: Any) -> str | None:
    """Return a scalar or a small array as text; None for binary blobs and missing values."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime.datetime | np.datetime64):
        return iso_date(value)
    if isinstance(value, np.ndarray):
        if value.size > 64:
            return f"array of {value.size} {value.dtype.name}"
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    return str(value).replace("\x00", "").strip()


def flatten(value: Any, prefix: str = "", out: dict[str, str] | None = None) -> dict[str, str]:
    """Return nested dicts and lists as "a|b #2" text keys with text values, capped in size."""
    out = {} if out is None else out
    _flatten(prefix, value, out, 0)
    return out


def _flatten(key: str, value: Any, out: dict[str, str], depth: int) -> None:
    if len(out) >= MAX_KEYS or depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            _flatten(f"{key}|{name}" if key else str(name), item, out, depth + 1)
        return
    if isinstance(value, list | tuple) and any(isinstance(v, Mapping | list) for v in value):
        for index, item in enumerate(value):
            _flatten(f"{key} #{index + 1}", item, out, depth + 1)
        return
    text = _text(value)
    if key and text is not None:
        out.setdefault(key[:MAX_VALUE], text[:MAX_VALUE])


def key_values(text: str, prefix: str = "") -> dict[str, str]:
    """Return "key = value" (or "key: value") lines of ``text`` as a dict, capped in size."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if not sep:
            key, sep, value = line.partition(": ")
        if sep and key.strip() and len(out) < MAX_KEYS:
            out.setdefault(f"{prefix}{key.strip()}"[:MAX_VALUE], value.strip()[:MAX_VALUE])
    return out


def merge(*parts: Mapping[str, str]) -> dict[str, str]:
    """Return the union of ``parts`` (earlier wins), capped at MAX_KEYS."""
    out: dict[str, str] = {}
    for part in parts:
        for key, value in part.items():
            if len(out) >= MAX_KEYS:
                return out
            out.setdefault(key, value)
    return out


# ImageJ ---------------------------------------------------------------------------------------

INFO_CHANNEL = re.compile(
    r"^Information\|Image\|Channel\|(Name|ExcitationWavelength|EmissionWavelength) #0*(\d+)$"
)


def imagej(md: Mapping[str, Any], size_c: int) -> Found:
    """Return channel names (slice labels, else Bio-Formats' Info), LUT colours and timing."""
    info = md.get("Info") if isinstance(md.get("Info"), str) else ""
    info_keys = key_values(info or "")
    plain = {
        k: v for k, v in md.items() if k not in ("Info", "Labels", "LUTs", "Ranges", "Properties")
    }
    properties = md.get("Properties") if isinstance(md.get("Properties"), Mapping) else {}
    found = Found(original=merge(flatten(plain), flatten(properties), info_keys))
    names = _slice_labels(md.get("Labels"), size_c)
    per_channel: dict[str, dict[int, str]] = {}
    for line in (info or "").splitlines():
        # NOTE: scanned apart from info_keys, which stop at MAX_KEYS long before these.
        key, _sep, value = line.partition(" = ")
        match = INFO_CHANNEL.match(key.strip())
        if match:
            per_channel.setdefault(match[1], {})[int(match[2]) - 1] = value.strip()
    if not any(names):
        names = [per_channel.get("Name", {}).get(c, "") for c in range(size_c)]
    colors = _lut_colors(md.get("LUTs"), size_c) if md.get("mode") != "grayscale" else []
    colors += [None] * (size_c - len(colors))
    found.channels = [
        ChannelMeta(
            names[c],
            colors[c],
            nanometres(per_channel.get("EmissionWavelength", {}).get(c)),
            nanometres(per_channel.get("ExcitationWavelength", {}).get(c)),
        )
        for c in range(size_c)
    ]
    found.time_increment = seconds(md.get("finterval"), str(md.get("tunit") or "s"))
    date = re.search(r"^Information\|Image\|AcquisitionDateAndTime = (.+)$", info or "", re.M)
    found.acquired = date[1].strip() if date else None
    return found


def _slice_labels(labels: Any, size_c: int) -> list[str]:
    """Return the labels of the first slice of each channel (C varies fastest in ImageJ)."""
    if not isinstance(labels, list | tuple):
        return [""] * size_c
    names = []
    for c in range(size_c):
        label = (
            str(labels[c]).strip().splitlines()[0].strip() if c < len(labels) and labels[c] else ""
        )
        # NOTE: ImageJ and Fiji number slices "1", "2", ... when they know no name.
        names.append("" if label.isdigit() else label[:200])
    return names


def _lut_colors(luts: Any, size_c: int) -> list[str | None]:
    """Return the colour each ImageJ LUT ramps to (its last entry), or None for other LUTs."""
    if not isinstance(luts, list | tuple) or len(luts) != size_c:
        return []
    return [palette_color(lut) for lut in luts]


def palette_color(lut: Any) -> str | None:
    """Return "RRGGBB" of a (3, N) LUT that ramps from black to one colour, else None."""
    array = np.asarray(lut)
    if array.ndim != 2 or array.shape[0] != 3 or array.shape[1] < 2:
        return None
    if array.dtype.itemsize > 1:
        array = array // 257 if int(array.max()) > 255 else array
    first, last = array[:, 0], array[:, -1]
    if first.any() or not last.any():
        return None
    return rgb_hex(*last.tolist())


# LSM, MetaMorph, QPTIFF, SIS, NIH, Micro-Manager ----------------------------------------------


def lsm(md: Mapping[str, Any], size_c: int) -> Found:
    """Return Zeiss LSM voxel sizes (metres in the file), channel names and colours."""
    found = Found(original=flatten({k: v for k, v in md.items() if k != "TimeStamps"}))
    found.physical = tuple(micrometres(md.get(f"VoxelSize{a}"), "m") for a in "XYZ")  # type: ignore[assignment]
    colors = _mapping(md.get("ChannelColors"))
    names = list(colors.get("ColorNames") or [])
    rgba = list(colors.get("Colors") or [])
    found.channels = [
        ChannelMeta(
            str(names[c]) if c < len(names) else "",
            rgb_hex(*rgba[c][:3]) if c < len(rgba) and len(rgba[c]) >= 3 else None,
        )
        for c in range(size_c)
    ]
    found.time_increment = seconds(md.get("TimeIntervall"))
    scan = _mapping(md.get("ScanInformation"))
    found.objective = str(scan.get("Objective") or "").strip() or None
    return found


def stk(md: Mapping[str, Any], size_c: int) -> Found:
    """Return MetaMorph calibration, the plane name and its illumination wavelength."""
    found = Found(original=flatten({k: v for k, v in md.items() if not k.startswith("_")}))
    if md.get("SpatialCalibration", 1):
        unit = str(md.get("CalibrationUnits") or "um")
        found.physical = (
            micrometres(md.get("XCalibration"), unit),
            micrometres(md.get("YCalibration"), unit),
            None,
        )
    waves = np.atleast_1d(np.asarray(md.get("wavelength", []), dtype=object)).tolist()
    if size_c == 1:
        # NOTE: MetaMorph's wavelength is the illumination's (Bio-Formats files it as the
        # light source's), so it is the excitation wavelength.
        excitation = nanometres(waves[0]) if waves else None
        found.channels = [ChannelMeta(str(md.get("Name") or "").strip(), None, None, excitation)]
    for prop in md.get("PlaneProperty") or []:
        if isinstance(prop, Mapping) and prop.get("name") == "_MagSetting_":
            found.objective = str(prop.get("value") or "").strip() or None
    found.acquired = iso_date(md.get("CreateTime"))
    return found


def _strip_declaration(text: str) -> str:
    # NOTE: tifffile hands the description over as text, so its "utf-16" declaration is
    # no longer true and the parser would refuse it.
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text)


def qpi_page(description: str) -> dict[str, str]:
    """Return the top-level elements of a PerkinElmer QPI page description (nested ones flattened)."""
    try:
        root = SafeET.fromstring(_strip_declaration(description))
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return {}
    out: dict[str, str] = {}
    _walk(root, "", out, 0)
    return out


def _walk(element: Any, path: str, out: dict[str, str], depth: int) -> None:
    for child in element:
        if len(out) >= MAX_KEYS or depth > MAX_DEPTH:
            return
        key = f"{path}|{child.tag}" if path else str(child.tag)
        text = (child.text or "").strip()
        if len(child):
            _walk(child, key, out, depth + 1)
        elif text:
            out.setdefault(key[:MAX_VALUE], text[:MAX_VALUE])


def qpi(descriptions: Iterable[str]) -> Found:
    """Return QPTIFF channel names and colours ("r,g,b") from the pages' own XML."""
    found = Found()
    for index, description in enumerate(descriptions):
        page = qpi_page(description)
        if index == 0:
            found.original = dict(page)
            found.objective = page.get("Objective") or None
            pixel = micrometres(page.get("ScanProfile|root|ScanResolution|PixelSizeMicrons"), "µm")
            found.physical = (pixel, pixel, None)
        color = page.get("Color", "").split(",")
        found.channels.append(
            ChannelMeta(page.get("Name", ""), rgb_hex(*color) if len(color) == 3 else None)
        )
    return found


def qpi_kind(description: str) -> str:
    """Return "image", "thumbnail", "overview", "label" or "macro" from a QPI page's ImageType."""
    kind = qpi_page(description).get("ImageType", "").lower()
    return kind if kind in ("thumbnail", "overview", "label", "macro") else "image"


def sis(md: Mapping[str, Any]) -> Found:
    """Return Olympus SIS pixel sizes (metres in the file) and date."""
    found = Found(original=flatten(md))
    found.physical = (
        micrometres(md.get("pixelsizex"), "m"),
        micrometres(md.get("pixelsizey"), "m"),
        None,
    )
    found.acquired = iso_date(md.get("datetime"))
    return found


def nih(md: Mapping[str, Any]) -> Found:
    """Return NIH Image's spatial scale: XScale pixels per unit of UnitsID (or the UM text)."""
    found = Found(original=flatten(md))
    unit: Any = md.get("UnitsID")
    if isinstance(unit, int | np.integer) and 0 <= int(unit) < len(NIH_UNITS):
        unit = NIH_UNITS[int(unit)]
    elif isinstance(unit, enum.Enum):
        unit = unit.name
    unit = str(unit or md.get("UM") or "")
    scale = finite(md.get("XScale"))
    if scale and scale > 0:
        size = micrometres(1.0 / scale, unit) if unit.lower() not in ("pixel", "pixels") else None
        aspect = finite(md.get("AspectRatio")) or 1.0
        found.physical = (size, None if size is None else size * aspect, None)
    found.time_increment = seconds(md.get("FrameInterval"))
    return found


def micromanager(md: Mapping[str, Any], size_c: int) -> Found:
    """Return Micro-Manager's pixel size, z step, interval and channel names and colours."""
    summary = _mapping(md.get("Summary"))
    found = Found(original=flatten({"Summary": summary, "Comments": md.get("Comments")}))
    pixel = micrometres(summary.get("PixelSize_um"), "µm")
    found.physical = (pixel, pixel, micrometres(summary.get("z-step_um"), "µm"))
    found.time_increment = seconds(summary.get("Interval_ms"), "ms")
    names = list(summary.get("ChNames") or [])
    colors = list(summary.get("ChColors") or [])
    found.channels = [
        ChannelMeta(
            str(names[c]) if c < len(names) else "",
            _argb(colors[c]) if c < len(colors) else None,
        )
        for c in range(size_c)
    ]
    return found


def _argb(value: Any) -> str | None:
    """Return "RRGGBB" from Java's packed ARGB integer (Micro-Manager's ChColors)."""
    try:
        rgb = int(value) & 0xFFFFFF
    except (TypeError, ValueError):
        return None
    return f"{rgb:06X}"
