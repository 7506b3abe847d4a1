"""An existing OME-Zarr image (0.4 on Zarr v2, 0.5 on Zarr v3), read from its full-resolution level."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, ImageMeta, check_pixel_type
from coverslip.pixels.pyramid import Pyramid, PyramidError, read_group

_UNITS_TO_UM = {
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "angstrom": 1e-4,
}


def _image_folder(path: Path) -> Path:
    """Return the image group: ``path`` itself, or ``path/0`` for a bioformats2raw layout."""
    try:
        _version, attrs = read_group(path)
    except PyramidError as exc:
        raise ImportFailed(str(exc)) from None
    if "multiscales" in attrs:
        return path
    if "bioformats2raw.layout" in attrs and (path / "0").is_dir():
        return path / "0"
    if "plate" in attrs or "well" in attrs:
        raise UnsupportedFormat("OME-Zarr plates are not supported; import one of its images")
    raise UnsupportedFormat("an OME-Zarr group without multiscales metadata")


def _physical_sizes(attrs: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    multiscale = attrs["multiscales"][0]
    axes = multiscale.get("axes", [])
    names = [a["name"].lower() if isinstance(a, dict) else str(a).lower() for a in axes]
    units = [(a.get("unit") if isinstance(a, dict) else None) for a in axes]
    scale: list[float] = []
    for transform in multiscale["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = list(transform.get("scale", []))
    sizes: list[float | None] = []
    for axis in "xyz":
        if axis not in names or len(scale) != len(names):
            sizes.append(None)
            continue
        value = float(scale[names.index(axis)])
        factor = _UNITS_TO_UM.get(units[names.index(axis)] or "micrometer")
        sizes.append(value * factor if factor and math.isfinite(value) and value > 0 else None)
    return sizes[0], sizes[1], sizes[2]


class OmeZarrReader:
    """An OME-Zarr image folder."""

    def __init__(self, path: Path) -> None:
        folder = _image_folder(path)
        try:
            self.pyramid = Pyramid(folder)
        except PyramidError as exc:
            raise ImportFailed(str(exc)) from None
        _version, attrs = read_group(folder)
        t, c, z, y, x = self.pyramid.shape
        omero = attrs.get("omero") or {}
        channels = [
            ChannelMeta(
                name=str(ch.get("label", "")),
                color=str(ch["color"]).upper() if ch.get("color") else None,
            )
            for ch in omero.get("channels", [])[:c]
        ]
        psx, psy, psz = _physical_sizes(attrs)
        self.meta = ImageMeta(
            name=attrs["multiscales"][0].get("name")
            or path.name.removesuffix(".zarr").removesuffix(".ome"),
            format="ome-zarr",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=check_pixel_type(self.pyramid.dtype),
            channels=channels,
            physical_size_x=psx,
            physical_size_y=psy,
            physical_size_z=psz,
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.pyramid.read(0, t, c, z, slice(y0, y1), slice(None))

    def close(self) -> None:
        pass
