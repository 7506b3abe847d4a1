"""Olympus FluoView OIB and OIF with oiffile: one image whose planes are small TIFF files.

An OIB is an OLE compound file holding the settings (an INI-like main file) and one TIFF per
plane, named by its indices (``s_C001Z002T003.tif``); an OIF keeps the same files in a
``<name>.oif.files`` folder beside it. Each band is cut from its plane, which is decoded
once and kept until another plane is asked for: memory is one plane, never the file.

Pixel sizes come from the main file's Reference Image Parameter (WidthConvertValue and
HeightConvertValue in WidthUnit/HeightUnit), the Z step from the Z axis's Interval, the
time step from the T axis's Interval; channel names are the dye names (else the channel
names such as "CH1"), with the emission and excitation wavelengths the settings give.
"""

from __future__ import annotations

import math
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import oiffile
import tifffile

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, check_pixel_type, single
from coverslip.formats.meta import capped, micrometres, positive, seconds

# What opening or reading a damaged compound file raises inside oiffile and tifffile.
BROKEN = (OSError, ValueError, KeyError, IndexError, EOFError, struct.error, tifffile.TiffFileError)


def _axis(settings: Any, code: str) -> dict[str, Any]:
    """Return the "Axis N Parameters Common" section whose AxisCode is ``code``, or {}."""
    for i in range(16):
        section = settings.get(f"Axis {i} Parameters Common")
        if isinstance(section, dict) and section.get("AxisCode") == code:
            return section
    return {}


def _step(axis: dict[str, Any], size: int) -> float | None:
    """Return an axis's Interval, else its range over ``size - 1`` steps, in its own unit."""
    interval = positive(axis.get("Interval"))
    if interval is None and size > 1:
        try:
            span = abs(float(axis["EndPosition"]) - float(axis["StartPosition"]))
        except (KeyError, TypeError, ValueError):
            return None
        interval = positive(span / (size - 1))
    return interval


def _flatten(settings: Any) -> dict[str, str]:
    return capped(
        (f"{section}|{key}", str(value))
        for section, values in settings.items()
        if isinstance(values, dict)
        for key, value in values.items()
    )


class OifReader:
    """An Olympus OIB/OIF image, planes decoded one at a time."""

    def __init__(self, path: Path) -> None:
        try:
            self.oif = oiffile.OifFile(path)
        except BROKEN as exc:
            raise ImportFailed(
                f"not a readable Olympus file ({type(exc).__name__}: {exc}; truncated or damaged?)"
            ) from None
        self.lock = threading.Lock()
        self.plane: tuple[str, np.ndarray] | None = None
        try:
            self._open(path)
        except ImportFailed:
            self.close()
            raise
        except BROKEN as exc:
            self.close()
            raise ImportFailed(
                f"the Olympus file cannot be read ({type(exc).__name__}: {exc}; "
                "truncated or damaged?)"
            ) from None

    def _open(self, path: Path) -> None:
        if not self.oif.series:
            raise ImportFailed("the Olympus file holds no image planes")
        sequence = self.oif.series[0]
        dims = [str(d).upper() for d in sequence.dims]
        indices = [tuple(int(i) for i in index) for index in sequence.indices]
        shape = tuple(max(index[i] for index in indices) + 1 for i in range(len(dims)))
        self.files = {index: sequence[n] for n, index in enumerate(indices)}
        if len(self.files) != math.prod(shape):
            raise ImportFailed(
                f"planes of the Olympus file are missing ({len(self.files)} of "
                f"{math.prod(shape)} for {dict(zip(dims, shape, strict=True))})"
            )
        unknown = [d for d in dims if d not in "CZT"]
        target = "T" if "Z" in dims else "Z"
        self.groups = {
            axis: [i for i, d in enumerate(dims) if d == axis or (axis == target and d in unknown)]
            for axis in "TCZ"
        }
        self.shape = shape
        first = self._decode(sequence[0])
        sizes = {axis: math.prod(shape[i] for i in group) for axis, group in self.groups.items()}
        settings = self.oif.mainfile
        reference = settings.get("Reference Image Parameter", {})
        z_axis, t_axis = _axis(settings, "Z"), _axis(settings, "T")
        z_step = _step(z_axis, sizes["Z"]) if sizes["Z"] > 1 else None
        t_step = _step(t_axis, sizes["T"]) if sizes["T"] > 1 else None
        t_unit = str(t_axis.get("UnitName", "ms")).strip()
        channels = []
        for c in range(sizes["C"]):
            section = settings.get(f"Channel {c + 1} Parameters", {})
            dye = str(section.get("DyeName", "")).strip()
            name = dye if dye and dye != "None" else str(section.get("CH Name", "")).strip()
            channels.append(
                ChannelMeta(
                    name,
                    None,
                    positive(section.get("EmissionWavelength")),
                    positive(section.get("ExcitationWavelength")),
                )
            )
        date = str(settings.get("Acquisition Parameters Common", {}).get("ImageCaputreDate", ""))
        self.meta = ImageMeta(
            name=path.stem,
            format="oib",
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=int(first.shape[0]),
            size_x=int(first.shape[1]),
            pixel_type=check_pixel_type(first.dtype),
            channels=channels,
            physical_size_x=micrometres(
                reference.get("WidthConvertValue"), reference.get("WidthUnit")
            ),
            physical_size_y=micrometres(
                reference.get("HeightConvertValue"), reference.get("HeightUnit")
            ),
            physical_size_z=micrometres(z_step, str(z_axis.get("UnitName", "um"))),
            acquired=date.replace(" ", "T") if date.strip() else None,
            time_increment=seconds(t_step, t_unit) if t_unit else None,
            original_metadata=_flatten(settings),
        )

    def _decode(self, name: str) -> np.ndarray:
        """Return the plane stored in the TIFF file ``name`` inside the Olympus file."""
        if self.plane is not None and self.plane[0] == name:
            return self.plane[1]
        with self.lock:
            handle = self.oif.open_file(name)
            try:
                with tifffile.TiffFile(handle, name=name) as tif:
                    plane = tif.asarray()
            finally:
                handle.close()
        if plane.ndim != 2:
            raise UnsupportedFormat(f"an Olympus plane of shape {plane.shape} (not one grey plane)")
        plane = plane.astype(plane.dtype.newbyteorder("="), copy=False)
        self.plane = (name, plane)
        return plane

    def _file(self, t: int, c: int, z: int) -> str:
        index = [0] * len(self.shape)
        for axis, value in (("T", t), ("C", c), ("Z", z)):
            group = self.groups[axis]
            if group:
                positions = np.unravel_index(value, [self.shape[i] for i in group])
                for i, position in zip(group, positions, strict=True):
                    index[i] = int(position)
        return self.files[tuple(index)]

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        try:
            plane = self._decode(self._file(t, c, z))
        except ImportFailed:
            raise
        except BROKEN as exc:
            raise ImportFailed(
                f"plane t={t} c={c} z={z} cannot be read ({type(exc).__name__}: {exc}; "
                "truncated or damaged?)"
            ) from None
        if plane.shape != (self.meta.size_y, self.meta.size_x):
            raise ImportFailed(f"plane t={t} c={c} z={z} has shape {plane.shape}, not the first's")
        return plane[y0:y1]

    def close(self) -> None:
        self.plane = None
        self.oif.close()


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open an OIB, or an OIF with its ``.files`` folder."""
    OifReader(path).close()  # NOTE: a damaged compound file fails here, at once
    fileset = single(fmt, path, lambda: OifReader(path))
    storage = path.with_name(path.name + ".files")
    if path.suffix.lower() == ".oif" and storage.is_dir():
        fileset.files.append(storage)
    return fileset
