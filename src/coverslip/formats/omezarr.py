"""An existing OME-Zarr image (0.4 on Zarr v2, 0.5 on Zarr v3), read from its full-resolution level."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, check_pixel_type, single
from coverslip.pixels.pyramid import Pyramid, PyramidError, confined, escaping_links, read_group

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


def _attributes(path: Path) -> dict[str, Any]:
    try:
        return read_group(path)[1]
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None


def _image_folder(path: Path) -> Path:
    """Return the image group: ``path`` itself, or ``path/0`` for a bioformats2raw layout."""
    v3 = path / "zarr.json"
    if v3.exists() and not (path / ".zattrs").exists():
        try:
            node = json.loads(v3.read_text()).get("node_type")
        except (OSError, ValueError) as exc:
            raise ImportFailed(f"unreadable zarr.json ({exc})") from None
        if node == "array":
            raise UnsupportedFormat("a Zarr array, not an OME-Zarr image: import its parent folder")
    attrs = _attributes(path)
    if "multiscales" in attrs:
        return path
    if "bioformats2raw.layout" in attrs:
        try:
            first = confined(path, "0")
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
        if "multiscales" in _attributes(first):
            return first
        raise UnsupportedFormat("a bioformats2raw folder whose image 0 has no multiscales")
    if "plate" in attrs:
        wells = attrs["plate"].get("wells") or [{}]
        example = f"{wells[0].get('path', 'A/1')}/0"
        raise UnsupportedFormat(
            f"an OME-Zarr plate: import one field of one well (for example {path.name}/{example})"
        )
    if "well" in attrs:
        raise UnsupportedFormat(
            f"an OME-Zarr well: import one of its fields (for example {path.name}/0)"
        )
    raise UnsupportedFormat("a Zarr group without OME-Zarr multiscales metadata")


def _scale(transforms: list[dict[str, Any]] | None, rank: int) -> list[float]:
    for transform in transforms or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == rank:
            return [float(v) for v in transform["scale"]]
    return [1.0] * rank


def physical_sizes(
    multiscale: dict[str, Any], names: list[str]
) -> tuple[float | None, float | None, float | None]:
    """Return (x, y, z) pixel sizes of level 0 in µm, from its scale and the axes' units."""
    axes = multiscale.get("axes") or []
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    units += [None] * (len(names) - len(units))
    rank = len(names)
    level0 = _scale(multiscale["datasets"][0].get("coordinateTransformations"), rank)
    overall = _scale(multiscale.get("coordinateTransformations"), rank)
    sizes: list[float | None] = []
    for axis in "xyz":
        if axis not in names:
            sizes.append(None)
            continue
        i = names.index(axis)
        value = level0[i] * overall[i]
        factor = LENGTH_UNITS.get(str(units[i] or "micrometer").lower())
        ok = factor is not None and math.isfinite(value) and value > 0
        sizes.append(value * factor if ok and factor is not None else None)
    return sizes[0], sizes[1], sizes[2]


def omero_channels(attrs: dict[str, Any], count: int) -> list[ChannelMeta]:
    """Return the channels that the ``omero`` block names, at most ``count``."""
    found = []
    for channel in ((attrs.get("omero") or {}).get("channels") or [])[:count]:
        color = str(channel.get("color") or "")
        found.append(
            ChannelMeta(
                name=str(channel.get("label") or ""),
                color=color.upper() if HEX_COLOR.match(color) else None,
            )
        )
    return found


class OmeZarrReader:
    """An OME-Zarr image folder."""

    def __init__(self, path: Path) -> None:
        links = escaping_links(path)
        if links:
            # SECURITY: a link out of the folder would import pixels the uploader cannot see.
            raise ImportFailed(f"the OME-Zarr links outside its folder ({', '.join(links[:3])})")
        folder = _image_folder(path)
        attrs = _attributes(folder)
        try:
            self.pyramid = Pyramid(folder)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ImportFailed(f"malformed multiscales metadata ({exc!r})") from None
        multiscale = attrs["multiscales"][0]
        names = [
            str(a.get("name") if isinstance(a, dict) else a).lower()
            for a in multiscale.get("axes") or ["t", "c", "z", "y", "x"]
        ]
        level0 = self.pyramid.levels[0].array
        for name, size in zip(names, level0.shape, strict=False):
            if name not in ("t", "c", "z", "y", "x") and size > 1:
                raise UnsupportedFormat(
                    f"OME-Zarr axis {name!r} (size {size}) is not T, C, Z, Y or X"
                )
        t, c, z, y, x = self.pyramid.shape
        if 0 in self.pyramid.shape:
            raise ImportFailed(f"the image is empty (shape {self.pyramid.shape})")
        psx, psy, psz = physical_sizes(multiscale, names)
        name = str(multiscale.get("name") or "").strip("/")
        self.meta = ImageMeta(
            name=name or path.name.removesuffix(".zarr").removesuffix(".ome"),
            format="ome-zarr",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=check_pixel_type(self.pyramid.dtype),
            channels=omero_channels(attrs, c),
            physical_size_x=psx,
            physical_size_y=psy,
            physical_size_z=psz,
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        try:
            return self.pyramid.read(0, t, c, z, slice(y0, y1), slice(None))
        except MemoryError:
            raise ImportFailed("a band of the OME-Zarr is too large to read") from None
        except Exception:  # noqa: BLE001 - tensorstore reports corrupt chunks as it can
            # SECURITY: tensorstore's message spells out absolute paths and its spec.
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z} cannot be read (corrupt or missing chunks)"
            ) from None

    def close(self) -> None:
        pass


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open an OME-Zarr image folder."""
    return single(fmt, path, lambda: OmeZarrReader(path))
