"""TIFF, BigTIFF and OME-TIFF, read lazily band by band through tifffile's Zarr view."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, ImageMeta, check_pixel_type

# Axes tifffile may report that are neither T, C, Z, Y nor X: they become Z (or T when there
# is a Z already), in the order they appear.
_FOLDABLE = set("IQRPLHAEVMB")
_UNITS_TO_UM = {
    "pm": 1e-6,
    "nm": 1e-3,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "Å": 1e-4,
}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif", ".btf", ".tf8", ".tf2"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def ome_color(value: str | None) -> str | None:
    """Return "RRGGBB" from OME's signed 32-bit RGBA colour integer."""
    if value is None:
        return None
    try:
        rgba = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 8:06X}"


def _micrometres(value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    factor = _UNITS_TO_UM.get((unit or "µm").strip())
    if factor is None or not math.isfinite(number) or number <= 0:
        return None
    return number * factor


def parse_ome_xml(
    text: str,
) -> tuple[str | None, list[ChannelMeta], tuple[float | None, float | None, float | None]]:
    """Return (image name, channels, (psx, psy, psz) in µm) of the first image of an OME-XML."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None, [], (None, None, None)
    image = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"), None)
    if image is None:
        return None, [], (None, None, None)
    pixels = next((el for el in image.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    channels: list[ChannelMeta] = []
    sizes: tuple[float | None, float | None, float | None] = (None, None, None)
    if pixels is not None:
        a = pixels.attrib
        sizes = (
            _micrometres(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit")),
            _micrometres(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit")),
            _micrometres(a.get("PhysicalSizeZ"), a.get("PhysicalSizeZUnit")),
        )
        for element in pixels:
            if element.tag.rsplit("}", 1)[-1] != "Channel":
                continue
            wave = element.attrib.get("EmissionWavelength")
            samples = int(element.attrib.get("SamplesPerPixel", "1") or 1)
            for _ in range(max(1, samples)):
                channels.append(
                    ChannelMeta(
                        name=element.attrib.get("Name", ""),
                        color=ome_color(element.attrib.get("Color")),
                        emission_wave=float(wave) if wave else None,
                    )
                )
    return image.attrib.get("Name") or None, channels, sizes


class TiffReader:
    """One TIFF file: its first series, level 0, as a 5-D image."""

    def __init__(self, path: Path) -> None:
        try:
            self.tif = tifffile.TiffFile(path)
            series = self.tif.series[0]
            axes, shape = series.axes.upper(), tuple(series.shape)
            self.array: Any = zarr.open(series.aszarr(level=0), mode="r")
        except (
            tifffile.TiffFileError,
            ValueError,
            OSError,
            IndexError,
            KeyError,
            TypeError,
        ) as exc:
            self._close_quietly()
            raise ImportFailed(f"not a readable TIFF ({exc})") from None
        try:
            pixel_type = check_pixel_type(series.dtype)
            self.plan = self._plan(axes, shape)
        except UnsupportedFormat:
            self._close_quietly()
            raise
        sizes = self.plan["sizes"]
        ome = self.tif.ome_metadata if self.tif.is_ome else None
        name, channels, (psx, psy, psz) = (
            parse_ome_xml(ome) if ome else (None, [], (None, None, None))
        )
        if not ome and sizes["C"] == 3 and "S" in axes:
            channels = [
                ChannelMeta("Red", "FF0000"),
                ChannelMeta("Green", "00FF00"),
                ChannelMeta("Blue", "0000FF"),
            ]
        if len(channels) != sizes["C"]:
            channels = channels[: sizes["C"]] + [
                ChannelMeta("") for _ in range(sizes["C"] - len(channels))
            ]
        if psx is None:
            psx, psy = self._resolution()
        self.meta = ImageMeta(
            name=name or _stem(path),
            format="ome-tiff" if ome else "tiff",
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=sizes["Y"],
            size_x=sizes["X"],
            pixel_type=pixel_type,
            channels=channels,
            physical_size_x=psx,
            physical_size_y=psy if psy is not None else psx,
            physical_size_z=psz,
        )

    @staticmethod
    def _plan(axes: str, shape: tuple[int, ...]) -> dict[str, Any]:
        """Map the series' axes onto T, C, Z, Y, X: which array axis each coordinate indexes."""
        if "Y" not in axes or "X" not in axes:
            raise UnsupportedFormat(f"TIFF series with axes {axes!r} has no Y and X")
        sizes = {"T": 1, "C": 1, "Z": 1, "Y": shape[axes.index("Y")], "X": shape[axes.index("X")]}
        role: list[str] = []
        folded_z: list[int] = []
        folded_t: list[int] = []
        for index, axis in enumerate(axes):
            if axis in "YX":
                role.append(axis)
            elif axis == "S" or axis == "C":
                if sizes["C"] > 1 and shape[index] > 1:
                    raise UnsupportedFormat(
                        f"TIFF series with axes {axes!r} has both channels and samples"
                    )
                sizes["C"] = max(sizes["C"], shape[index])
                role.append("C")
            elif axis in "TZ":
                sizes[axis] = shape[index]
                role.append(axis)
            elif axis in _FOLDABLE:
                role.append("fold")
            else:
                raise UnsupportedFormat(
                    f"TIFF series with axes {axes!r}: axis {axis} is not supported"
                )
        # Unknown stacking axes become Z, or T when there is a Z already.
        for index, axis in enumerate(role):
            if axis == "fold":
                target = "Z" if sizes["Z"] == 1 and not folded_z and "Z" not in role else "T"
                (folded_z if target == "Z" else folded_t).append(index)
        for target, folded in (("Z", folded_z), ("T", folded_t)):
            if folded:
                sizes[target] = int(np.prod([shape[i] for i in folded]))
        return {
            "role": role,
            "shape": shape,
            "sizes": sizes,
            "fold": {"Z": folded_z, "T": folded_t},
        }

    def _resolution(self) -> tuple[float | None, float | None]:
        """Return the pixel size in µm from the TIFF resolution tags, when they give one."""
        page = self.tif.pages.first
        unit = page.tags.get("ResolutionUnit")
        factor = {2: 25400.0, 3: 10000.0}.get(int(unit.value) if unit else 0)
        if factor is None:
            return None, None
        values = []
        for tag in ("XResolution", "YResolution"):
            found = page.tags.get(tag)
            if not found:
                return None, None
            numerator, denominator = found.value
            values.append(factor * denominator / numerator if numerator else None)
        return values[0], values[1]

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        plan = self.plan
        coordinates = {"T": t, "C": c, "Z": z}
        index: list[Any] = []
        unravelled: dict[int, int] = {}
        for target, folded in plan["fold"].items():
            if folded:
                sizes = [plan["shape"][i] for i in folded]
                for axis, value in zip(
                    folded, np.unravel_index(coordinates[target], sizes), strict=True
                ):
                    unravelled[axis] = int(value)
        for axis, role in enumerate(plan["role"]):
            if role == "Y":
                index.append(slice(y0, y1))
            elif role == "X":
                index.append(slice(None))
            elif role == "fold":
                index.append(unravelled[axis])
            else:
                index.append(coordinates[role] if plan["shape"][axis] > 1 else 0)
        return np.asarray(self.array[tuple(index)])

    def _close_quietly(self) -> None:
        tif = getattr(self, "tif", None)
        if tif is not None:
            tif.close()

    def close(self) -> None:
        self._close_quietly()
