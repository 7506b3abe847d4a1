"""OME-XML: what each OME Image says, and which files make up a multi-file OME-TIFF set.

The XML comes from files people upload, so it is parsed with defusedxml (no entities, no
DTDs). A multi-file set is opened through the OME-XML that names every member: a
``.companion.ome`` file, the full XML in one member, or the companion a ``BinaryOnly``
member points at. Every member must sit in the folder of the XML that names it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta
from coverslip.formats.meta import (
    MAX_KEYS,
    MAX_VALUE,
    RGB_CHANNELS,
    micrometres,
    nanometres,
    seconds,
)

MAX_COMPANION = 64 * 1024 * 1024  # bytes of a companion file read at most


@dataclass
class OmeImage:
    """What one OME Image element says."""

    name: str | None
    size_x: int
    size_y: int
    channels: list[ChannelMeta] = field(default_factory=list)
    physical: tuple[float | None, float | None, float | None] = (None, None, None)
    time_increment: float | None = None
    objective: str | None = None
    acquired: str | None = None
    original: dict[str, str] = field(default_factory=dict)


@dataclass
class OmeSet:
    """How to open an OME-TIFF: the TIFF to open, the XML to use in place of its own, the files."""

    tiff: Path
    omexml: str | None
    files: list[Path]  # the file the user named first, then the companion and the members


def _local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if _local(child) == name)


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    return None if element is None else next(_children(element, name), None)


def ome_color(value: str | None) -> str | None:
    """Return "RRGGBB" from OME's Color: a signed 32-bit integer holding RGBA."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 8:06X}"


def parse_root(text: str) -> ET.Element | None:
    """Return the root of an OME-XML, None when it is not well-formed XML.

    Raises ImportFailed when the XML declares entities or a DTD, which no OME writer does.
    """
    try:
        root: ET.Element = SafeET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    except DefusedXmlException as exc:
        # SECURITY: entity expansion and external references are refused, not resolved.
        raise ImportFailed(f"the OME-XML is refused ({type(exc).__name__})") from None
    except (ET.ParseError, ValueError):
        return None
    return root


def _objectives(root: ET.Element) -> dict[str, str]:
    """Return "Model 20x/0.8" for every Instrument/Objective, by ID."""
    found: dict[str, str] = {}
    for instrument in _children(root, "Instrument"):
        for objective in _children(instrument, "Objective"):
            a = objective.attrib
            text = a.get("Model") or a.get("Manufacturer") or ""
            magnification = a.get("NominalMagnification")
            if magnification:
                text += f" {float(magnification):g}x" if _is_number(magnification) else ""
            if a.get("LensNA") and _is_number(a["LensNA"]):
                text += f"/{float(a['LensNA']):g}"
            if text.strip():
                found[a.get("ID", "")] = text.strip()
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _original_metadata(root: ET.Element) -> dict[str, str]:
    """Return Bio-Formats' OriginalMetadata annotations and map annotations as key-values."""
    out: dict[str, str] = {}
    annotations = _child(root, "StructuredAnnotations")
    for annotation in annotations if annotations is not None else ():
        value = _child(annotation, "Value")
        if value is None:
            continue
        pairs: list[tuple[str, str]] = []
        for item in value:
            if _local(item) == "OriginalMetadata":
                key_el, value_el = _child(item, "Key"), _child(item, "Value")
                pairs.append(
                    (
                        "" if key_el is None else key_el.text or "",
                        "" if value_el is None else value_el.text or "",
                    )
                )
            elif _local(item) == "M":
                pairs.append((item.attrib.get("K", ""), item.text or ""))
        for key, text in pairs:
            if key and len(out) < MAX_KEYS:
                out.setdefault(key[:MAX_VALUE], text.strip()[:MAX_VALUE])
    return out


def _channels(pixels: ET.Element) -> list[ChannelMeta]:
    channels: list[ChannelMeta] = []
    for element in _children(pixels, "Channel"):
        ch = element.attrib
        try:
            samples = max(1, int(ch.get("SamplesPerPixel") or 1))
        except ValueError:
            samples = 1
        if samples == 3:
            channels.extend(ChannelMeta(name, color) for name, color in RGB_CHANNELS)
            continue
        emission = nanometres(ch.get("EmissionWavelength"), ch.get("EmissionWavelengthUnit"))
        excitation = nanometres(ch.get("ExcitationWavelength"), ch.get("ExcitationWavelengthUnit"))
        channels.extend(
            ChannelMeta(ch.get("Name", ""), ome_color(ch.get("Color")), emission, excitation)
            for _ in range(samples)
        )
    return channels


def parse_images(text: str) -> list[OmeImage]:
    """Return every Image of an OME-XML that has Pixels stored in TIFF planes, in order."""
    root = parse_root(text)
    if root is None:
        return []
    objectives = _objectives(root)
    original = _original_metadata(root)
    images: list[OmeImage] = []
    for image in _children(root, "Image"):
        pixels = _child(image, "Pixels")
        if pixels is None or _child(pixels, "TiffData") is None:
            continue
        a = pixels.attrib
        name = image.attrib.get("Name") or None
        # NOTE: writers that know no name fill in "Image0", "Image:0" and the like; the file
        # name says more.
        if name is not None and re.fullmatch(r"Image[:_ ]?\d*", name):
            name = None
        settings = _child(image, "ObjectiveSettings")
        date = _child(image, "AcquisitionDate")
        images.append(
            OmeImage(
                name=name,
                size_x=int(a.get("SizeX") or 0) if (a.get("SizeX") or "0").isdigit() else 0,
                size_y=int(a.get("SizeY") or 0) if (a.get("SizeY") or "0").isdigit() else 0,
                channels=_channels(pixels),
                physical=tuple(  # type: ignore[arg-type]
                    micrometres(a.get(f"PhysicalSize{axis}"), a.get(f"PhysicalSize{axis}Unit"))
                    for axis in "XYZ"
                ),
                time_increment=seconds(a.get("TimeIncrement"), a.get("TimeIncrementUnit")),
                objective=objectives.get(settings.attrib.get("ID", ""))
                if settings is not None
                else None,
                acquired=(date.text or "").strip() or None if date is not None else None,
                original=original,
            )
        )
    return images


def parse_ome_xml(
    text: str,
) -> tuple[str | None, list[ChannelMeta], tuple[float | None, float | None, float | None]]:
    """Return (name, channels, (x, y, z) pixel sizes in µm) of the first Image of an OME-XML."""
    images = parse_images(text)
    if not images:
        return None, [], (None, None, None)
    return images[0].name, images[0].channels, images[0].physical


def binary_only(root: ET.Element) -> str | None:
    """Return the MetadataFile a BinaryOnly OME-XML points at, else None."""
    element = _child(root, "BinaryOnly")
    return None if element is None else element.attrib.get("MetadataFile") or ""


def referenced_files(root: ET.Element, own: str | None) -> list[str]:
    """Return the FileNames the TiffData of an OME-XML name, other than ``own``, in order."""
    root_uuid = root.attrib.get("UUID")
    own_uuids = {root_uuid}
    names: list[str] = []
    for uuid in root.iter():
        if _local(uuid) != "UUID":
            continue
        filename = uuid.attrib.get("FileName")
        if own is not None and filename is not None and filename.lower() == own.lower():
            own_uuids.add(uuid.text)
    for uuid in root.iter():
        if _local(uuid) != "UUID" or uuid.text in own_uuids and own is not None:
            continue
        filename = uuid.attrib.get("FileName")
        if filename is None:
            raise ImportFailed(f"the OME-XML names a file by UUID only ({uuid.text})")
        if filename not in names:
            names.append(filename)
    return names


def _member(folder: Path, name: str, referrer: str) -> Path:
    """Return the file ``name`` in ``folder``, refusing names that leave it or are missing."""
    candidate = folder / name
    # SECURITY: an uploaded XML must not make the import read files elsewhere on the server.
    if Path(name).is_absolute() or not candidate.resolve().is_relative_to(folder.resolve()):
        raise ImportFailed(f"{referrer} names {name!r}, a file outside its folder")
    if not candidate.is_file():
        raise ImportFailed(f"{referrer}: the multi-file OME-TIFF member {name} is missing")
    return candidate


def _read_companion(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_COMPANION + 1)
    except OSError as exc:
        raise ImportFailed(f"{path.name} cannot be read ({exc.strerror})") from None
    if len(data) > MAX_COMPANION:
        raise ImportFailed(f"{path.name} is larger than {MAX_COMPANION >> 20} MB of OME-XML")
    return data.decode("utf-8", errors="replace")


def _companion_set(first: Path, companion: Path, text: str, root: ET.Element) -> OmeSet:
    folder = companion.parent
    members = [_member(folder, name, companion.name) for name in referenced_files(root, None)]
    if not members:
        raise ImportFailed(f"{companion.name} names no TIFF file")
    files = [first, *(p for p in [companion, *members] if p != first)]
    tiff = first if first in members else members[0]
    return OmeSet(tiff=tiff, omexml=text, files=files)


def resolve_companion(path: Path) -> OmeSet:
    """Return the set a ``.companion.ome`` file describes."""
    text = _read_companion(path)
    root = parse_root(text)
    if root is None:
        raise ImportFailed(f"{path.name} is not well-formed OME-XML")
    return _companion_set(path, path, text, root)


def resolve_tiff(path: Path, own_xml: str) -> OmeSet:
    """Return the set an OME-TIFF belongs to, from the OME-XML it carries."""
    root = parse_root(own_xml)
    if root is None:
        return OmeSet(tiff=path, omexml=None, files=[path])
    metadata_file = binary_only(root)
    if metadata_file is not None:
        if not metadata_file:
            raise ImportFailed("the OME-TIFF is BinaryOnly but names no metadata file")
        companion = _member(path.parent, metadata_file, path.name)
        text = _read_companion(companion)
        companion_root = parse_root(text)
        if companion_root is None:
            raise ImportFailed(f"{companion.name} is not well-formed OME-XML")
        return _companion_set(path, companion, text, companion_root)
    members = [_member(path.parent, name, path.name) for name in referenced_files(root, path.name)]
    return OmeSet(tiff=path, omexml=None, files=[path, *members])
