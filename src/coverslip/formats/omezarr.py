"""OME-Zarr (0.4 on Zarr v2, 0.5 on Zarr v3): images with their own levels and labels,
bioformats2raw layouts (each series an image) and HCS plates (each field an image)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type, single
from coverslip.formats.omezarr_arrays import (
    AXES,
    attributes,
    inside,
    is_group,
    open_levels,
    own_levels,
)
from coverslip.formats.omezarr_labels import listed_labels
from coverslip.formats.omezarr_xml import OmeImage, OmeXml, read_ome_xml
from coverslip.pixels.pyramid import axis_names, escaping_links

# The UDUNITS-2 length names OME-Zarr allows, in micrometres.
LENGTH_UNITS = {
    "angstrom": 1e-4,
    "picometer": 1e-6,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}
HEX_COLOR = re.compile(r"^[0-9A-Fa-f]{6}$")


def _scale(transforms: list[dict[str, Any]] | None, rank: int) -> list[float]:
    for transform in transforms or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == rank:
            return [float(v) for v in transform["scale"]]
    return [1.0] * rank


def physical_sizes(
    multiscale: dict[str, Any], names: list[str]
) -> tuple[float | None, float | None, float | None]:
    """Return (x, y, z) pixel sizes of level 0 in µm, from its scale and the axes' units.

    An axis without a unit has no physical size: a scale of 1 then means "one pixel".
    Metadata that does not parse gives no sizes at all.
    """
    try:
        return _physical_sizes(multiscale, names)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None, None, None


def _physical_sizes(
    multiscale: dict[str, Any], names: list[str]
) -> tuple[float | None, float | None, float | None]:
    axes = multiscale.get("axes") or []
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    units += [None] * (len(names) - len(units))
    rank = len(names)
    level0 = _scale(multiscale["datasets"][0].get("coordinateTransformations"), rank)
    overall = _scale(multiscale.get("coordinateTransformations"), rank)
    sizes: list[float | None] = []
    for axis in "xyz":
        if axis not in names or not units[names.index(axis)]:
            sizes.append(None)
            continue
        i = names.index(axis)
        value = level0[i] * overall[i]
        factor = LENGTH_UNITS.get(str(units[i]).lower())
        ok = factor is not None and math.isfinite(value) and value > 0
        sizes.append(value * factor if ok and factor is not None else None)
    return sizes[0], sizes[1], sizes[2]


def omero_channels(attrs: dict[str, Any], count: int) -> list[ChannelMeta]:
    """Return the channels that the ``omero`` block names, at most ``count``."""
    found = []
    omero = attrs.get("omero")
    if not isinstance(omero, dict):
        omero = {}
    for channel in (omero.get("channels") or [])[:count]:
        channel = channel if isinstance(channel, dict) else {}
        color = str(channel.get("color") or "")
        label = channel.get("label")
        found.append(
            ChannelMeta(
                # NOTE: some writers label channels with integers (0, 1, 2): keep them as text.
                name="" if label is None else str(label),
                color=color.upper() if HEX_COLOR.match(color) else None,
            )
        )
    return found


def merge_channels(
    zarr_channels: list[ChannelMeta], xml_channels: list[ChannelMeta], count: int
) -> list[ChannelMeta]:
    """Return ``count`` channels: the OME-XML's names, colours and waves, else the omero block's."""
    if not xml_channels:
        return zarr_channels
    merged = []
    for index in range(count):
        base = zarr_channels[index] if index < len(zarr_channels) else ChannelMeta(name="")
        xml = xml_channels[index] if index < len(xml_channels) else ChannelMeta(name="")
        merged.append(
            ChannelMeta(
                name=xml.name or base.name,
                color=xml.color or base.color,
                emission_wave=xml.emission_wave,
                excitation_wave=xml.excitation_wave,
            )
        )
    return merged


def label_names(folder: Path) -> list[str]:
    """Return the names of the label images in the ``labels`` group of an image, as stored."""
    return listed_labels(folder / "labels")


class OmeZarrReader:
    """One OME-Zarr image group, with its own resolution levels and labels."""

    def __init__(
        self,
        folder: Path,
        name: str | None = None,
        series: str | None = None,
        default_name: str | None = None,
        ome: OmeImage | None = None,
        original_metadata: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder  # the image group: what an in-place registration serves
        if (folder / "zarr.json").is_file() or (folder / ".zattrs").is_file():
            attrs = attributes(folder)
        elif not folder.exists():
            raise ImportFailed("the image group is missing")
        else:
            raise ImportFailed("the image group has no multiscales metadata")
        multiscales = attrs.get("multiscales")
        if (
            not isinstance(multiscales, list)
            or not multiscales
            or not isinstance(multiscales[0], dict)
        ):
            raise ImportFailed("the image group has no multiscales metadata")
        multiscale = multiscales[0]
        datasets = multiscale.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            raise ImportFailed("multiscales metadata lists no datasets")
        names = axis_names(multiscale)
        if "y" not in names or "x" not in names:
            raise ImportFailed(f"multiscales axes {names} lack y or x")
        self.levels = open_levels(folder, datasets, names)
        level0 = self.levels[0]
        for axis, size in zip(names, level0.stored, strict=False):
            if axis not in AXES and size > 1:
                raise UnsupportedFormat(
                    f"OME-Zarr axis {axis!r} (size {size}) is not T, C, Z, Y or X"
                )
        if 0 in level0.shape:
            raise ImportFailed(f"the image is empty (shape {level0.shape})")
        self.levels = own_levels(self.levels)
        t, c, z, y, x = level0.shape
        psx, psy, psz = physical_sizes(multiscale, names)
        ome = ome or OmeImage()
        stored_name = str(multiscale.get("name") or "").strip("/")
        default_name = default_name or folder.name.removesuffix(".zarr").removesuffix(".ome")
        self.meta = ImageMeta(
            name=name or ome.name or stored_name or default_name,
            format="ome-zarr",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=check_pixel_type(level0.dtype),
            channels=merge_channels(omero_channels(attrs, c), ome.channels, c),
            physical_size_x=ome.physical_size_x or psx,
            physical_size_y=ome.physical_size_y or psy,
            physical_size_z=ome.physical_size_z or psz,
            series=series,
            kind=ome.kind,
            objective=ome.objective,
            acquired=ome.acquired,
            time_increment=ome.time_increment,
            original_metadata=dict(original_metadata or {}),
            levels=[(level.shape[3], level.shape[4]) for level in self.levels[1:]],
            labels=label_names(folder),
        )

    @property
    def labels_folder(self) -> Path | None:
        """The image's ``labels`` group, which the importer keeps beside the pixels; None
        when it has no label image."""
        return self.folder / "labels" if self.meta.labels else None

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of plane (t, c, z) of ``level`` as stored (0 = full size)."""
        if not 0 <= level < len(self.levels):
            raise IndexError(f"level {level} is not one of the {len(self.levels)} stored")
        try:
            band = self.levels[level].band(t, c, z, y0, y1)
        except MemoryError:
            raise ImportFailed("a band of the OME-Zarr is too large to read") from None
        except Exception:  # noqa: BLE001 - tensorstore and zarr report corrupt chunks as they can
            # SECURITY: tensorstore's message spells out absolute paths and its spec.
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} of level {level} cannot be read "
                "(corrupt or missing chunks)"
            ) from None
        return np.ascontiguousarray(band, dtype=self.levels[0].dtype.newbyteorder("="))

    def close(self) -> None:
        pass


def opener(folder: Path, label: str | None, **kwargs: Any) -> Callable[[], Reader]:
    """Return a function that opens the image at ``folder``; its errors name ``label``."""

    def open_image() -> Reader:
        try:
            return OmeZarrReader(folder, **kwargs)
        except ImportFailed as exc:
            if label is None:
                raise
            raise type(exc)(f"{label}: {exc}") from None

    return open_image


def _series_paths(root: Path, xml: OmeXml | None) -> list[str]:
    """Return the paths of a bioformats2raw layout's series, in order."""
    ome = root / "OME"
    listed = attributes(ome).get("series") if is_group(ome) else None
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise ImportFailed("OME/: the series attribute is not a list of paths")
        return listed
    if xml is not None and xml.images:
        return [str(index) for index in range(len(xml.images))]
    found: list[str] = []
    while is_group(root / str(len(found))):
        found.append(str(len(found)))
    return found


def bioformats2raw(root: Path, fmt: str) -> Fileset:
    """Return the fileset of a bioformats2raw layout: every series is an image."""
    xml = read_ome_xml(root / "OME" / "METADATA.ome.xml")
    paths = _series_paths(root, xml)
    base = root.name.removesuffix(".zarr").removesuffix(".ome")
    images: list[Callable[[], Reader]] = []
    for index, relative in enumerate(paths):
        folder = inside(root, relative)  # SECURITY: every series stays inside the layout
        ome = xml.images[index] if xml is not None and index < len(xml.images) else OmeImage()
        kind = ome.kind
        name = f"{base} {kind}" if kind != "image" else None
        series = kind if kind != "image" else f"series {index}"
        original = xml.original_metadata if xml is not None and index == 0 else {}
        images.append(
            opener(
                folder,
                series,
                name=name,
                series=series,
                default_name=base if index == 0 else f"{base} series {index}",
                ome=ome,
                original_metadata=original,
            )
        )
    return Fileset(format=fmt, files=[root], images=images)


def _refuse_array(path: Path) -> None:
    v3 = path / "zarr.json"
    if v3.is_file() and not (path / ".zattrs").exists():
        try:
            node = json.loads(v3.read_text()).get("node_type")
        except (OSError, ValueError, AttributeError) as exc:
            raise ImportFailed(f"unreadable zarr.json ({exc})") from None
        if node == "array":
            raise UnsupportedFormat("a Zarr array, not an OME-Zarr image: import its parent folder")
    elif (path / ".zarray").is_file():
        raise UnsupportedFormat("a Zarr array, not an OME-Zarr image: import its parent folder")


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open an OME-Zarr folder: an image, a bioformats2raw layout, a plate or one well."""
    from coverslip.formats.omezarr_plate import plate_fileset, well_fileset

    links = escaping_links(path)
    if links:
        # SECURITY: a link out of the folder would import pixels the uploader cannot see.
        raise ImportFailed(f"the OME-Zarr links outside its folder ({', '.join(links[:3])})")
    _refuse_array(path)
    attrs = attributes(path)
    if "plate" in attrs:
        return plate_fileset(path, attrs["plate"], fmt)
    if "well" in attrs:
        return well_fileset(path, attrs["well"], fmt)
    if "multiscales" in attrs:
        return single(fmt, path, opener(path, None))
    if "bioformats2raw.layout" in attrs:
        return bioformats2raw(path, fmt)
    raise UnsupportedFormat("a Zarr group without OME-Zarr multiscales metadata")
