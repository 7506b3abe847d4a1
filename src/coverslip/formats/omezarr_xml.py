"""The OME-XML that bioformats2raw writes beside its series (``OME/METADATA.ome.xml``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defusedxml import ElementTree

from coverslip.errors import ImportFailed
from coverslip.formats import ChannelMeta
from coverslip.formats.meta import micrometres, nanometres, seconds

# NOTE: a plate converted by bioformats2raw can carry hundreds of MB of OME-XML; beyond this
# size the series are still read, with the metadata that their Zarr attributes hold.
MAX_XML_BYTES = 64 * 1024 * 1024

ASSOCIATED = re.compile(r"^(label|macro|thumbnail|overview)(?: image)?(?:\s+\d+x\d+)?$")


@dataclass
class OmeImage:
    """What the OME-XML says about one series."""

    name: str = ""
    description: str = ""
    physical_size_x: float | None = None  # micrometres
    physical_size_y: float | None = None
    physical_size_z: float | None = None
    channels: list[ChannelMeta] = field(default_factory=list)
    acquired: str | None = None
    objective: str | None = None
    time_increment: float | None = None  # seconds

    @property
    def kind(self) -> str:
        """Return "label", "macro", "thumbnail" or "overview" for a slide's associated image."""
        # NOTE: Aperio's own description ("label 387x463") comes first: Bio-Formats 6 swaps
        # the names of the label and the macro of an SVS.
        for text in (self.description, self.name):
            found = ASSOCIATED.match(text.strip().lower())
            if found:
                return found.group(1)
        return "image"


@dataclass
class OmeXml:
    """The series of an OME-XML document, in order, and the file's original metadata."""

    images: list[OmeImage]
    original_metadata: dict[str, str]


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _children(element: Any, name: str) -> list[Any]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: Any, name: str) -> Any | None:
    found = _children(element, name)
    return found[0] if found else None


def _converted(
    element: Any, name: str, convert: Callable[[Any, str | None], float | None]
) -> float | None:
    """Return attribute ``name`` converted by its ``<name>Unit`` attribute, or None."""
    return convert(element.get(name), element.get(f"{name}Unit"))


def ome_color(value: str | None) -> str | None:
    """Return RRGGBB of an OME colour (a signed 32-bit RGBA integer), or None."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 8:06X}"


def _channel(element: Any) -> ChannelMeta:
    return ChannelMeta(
        name=element.get("Name") or "",
        color=ome_color(element.get("Color")),
        emission_wave=_converted(element, "EmissionWavelength", nanometres),
        excitation_wave=_converted(element, "ExcitationWavelength", nanometres),
    )


def _objectives(root: Any) -> dict[str, str]:
    """Return a description of every objective of every instrument, by ID."""
    found = {}
    for instrument in _children(root, "Instrument"):
        for objective in _children(instrument, "Objective"):
            magnification = objective.get("NominalMagnification")
            text = objective.get("Model") or ""
            if not text and magnification:
                text = f"{float(magnification):g}x"
                if objective.get("LensNA"):
                    text += f"/{objective.get('LensNA')}"
            if text:
                found[objective.get("ID", "")] = text
    return found


def _image(element: Any, objectives: dict[str, str]) -> OmeImage:
    image = OmeImage(name=element.get("Name") or "")
    description = _child(element, "Description")
    image.description = (description.text or "") if description is not None else ""
    acquired = _child(element, "AcquisitionDate")
    image.acquired = (acquired.text or None) if acquired is not None else None
    settings = _child(element, "ObjectiveSettings")
    if settings is not None:
        image.objective = objectives.get(settings.get("ID", ""))
    pixels = _child(element, "Pixels")
    if pixels is not None:
        image.physical_size_x = _converted(pixels, "PhysicalSizeX", micrometres)
        image.physical_size_y = _converted(pixels, "PhysicalSizeY", micrometres)
        image.physical_size_z = _converted(pixels, "PhysicalSizeZ", micrometres)
        image.time_increment = _converted(pixels, "TimeIncrement", seconds)
        image.channels = [_channel(channel) for channel in _children(pixels, "Channel")]
    return image


def _original_metadata(root: Any) -> dict[str, str]:
    """Return the key–value pairs of the openmicroscopy.org/OriginalMetadata annotations."""
    found: dict[str, str] = {}
    annotations = _child(root, "StructuredAnnotations")
    for annotation in _children(annotations, "XMLAnnotation") if annotations is not None else []:
        if annotation.get("Namespace") != "openmicroscopy.org/OriginalMetadata":
            continue
        for element in annotation.iter():
            if _local(element.tag) == "OriginalMetadata":
                key, value = _child(element, "Key"), _child(element, "Value")
                if key is not None and key.text:
                    found[key.text] = (value.text or "") if value is not None else ""
    return found


def read_ome_xml(path: Path) -> OmeXml | None:
    """Return what the OME-XML at ``path`` says, or None when there is none to read."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_XML_BYTES:
            return None
        # SECURITY: defusedxml refuses entity expansion and external entities.
        root = ElementTree.parse(path).getroot()
    except OSError:
        return None
    except Exception as exc:  # noqa: BLE001 - ParseError and defusedxml's refusals
        raise ImportFailed(f"OME/{path.name} is not readable OME-XML ({exc})") from None
    objectives = _objectives(root)
    try:
        images = [_image(element, objectives) for element in _children(root, "Image")]
    except ValueError as exc:
        raise ImportFailed(f"OME/{path.name} holds a malformed value ({exc})") from None
    return OmeXml(images, _original_metadata(root))
