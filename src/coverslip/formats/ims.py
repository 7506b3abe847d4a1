"""Imaris IMS (HDF5) with h5py: one image with the resolution levels the file stores.

The pixels live in ``DataSet/ResolutionLevel L/TimePoint T/Channel C/Data`` as (Z, Y, X)
arrays padded to whole chunks; the true sizes are the ImageSizeX/Y/Z attributes (text
stored as arrays of single characters), and the padding is cropped. Descriptions live in
``DataSetInfo``: Image (X, Y, Z sizes, ExtMin/ExtMax extents in its Unit), Channel N
(Name, Color as "r g b" in 0..1, wavelengths) and TimeInfo (a date per time point).

Resolution levels after level 0 are offered as they are (``meta.levels``, read with
``read_level_band``) while they keep level 0's number of Z sections; Imaris also halves Z
in thick stacks, and such levels (and all coarser ones) are left for the importer to
compute, since a level of Coverslip's pyramid reduces only X and Y. Bands are read through
h5py, which decodes only the chunks a band touches.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, check_pixel_type, single
from coverslip.formats.meta import capped, micrometres

# What h5py raises on truncated files, damaged chunks and missing filters.
BROKEN = (OSError, KeyError, ValueError, RuntimeError, TypeError)


def attribute(node: Any, name: str) -> str | None:
    """Return an Imaris text attribute (an array of one-byte strings, or plain text), or None."""
    value = node.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            return b"".join(value.ravel().tolist()).decode("utf-8", "replace")
        return " ".join(str(v) for v in value.ravel().tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _int(node: Any, name: str) -> int | None:
    text = attribute(node, name)
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _float(node: Any, name: str) -> float | None:
    text = attribute(node, name)
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _colour(text: str | None) -> str | None:
    """Return "RRGGBB" from Imaris's "r g b" (each 0..1), or None."""
    if not text:
        return None
    try:
        parts = [float(p) for p in text.split()]
    except ValueError:
        return None
    if len(parts) < 3 or not all(0 <= p <= 1 for p in parts[:3]):
        return None
    return "".join(f"{round(p * 255):02X}" for p in parts[:3])


def _numbered(group: Any, prefix: str) -> list[str]:
    """Return the members called "<prefix> N" in the order of N."""
    found = []
    for name in group:
        match = re.fullmatch(rf"{prefix} (\d+)", name)
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found)]


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), pattern)
        except ValueError:
            continue
    return None


def _flatten(info: Any) -> dict[str, str]:
    return capped(
        (f"{name}|{key}", attribute(group, key) or "")
        for name, group in info.items()
        if isinstance(group, h5py.Group)
        for key in group.attrs
    )


class ImsReader:
    """An Imaris file: T × C volumes at each of the file's resolution levels."""

    def __init__(self, path: Path) -> None:
        try:
            self.h5: h5py.File | None = h5py.File(path, "r")
        except BROKEN as exc:
            raise ImportFailed(
                f"not a readable HDF5 file ({type(exc).__name__}: {exc}; truncated or damaged?)"
            ) from None
        try:
            self._open(path)
        except ImportFailed:
            self.close()
            raise
        except BROKEN as exc:
            self.close()
            raise ImportFailed(
                f"the Imaris file is damaged ({type(exc).__name__}: {exc})"
            ) from None

    def _open(self, path: Path) -> None:
        assert self.h5 is not None
        if "DataSet" not in self.h5 or "DataSetInfo" not in self.h5:
            raise ImportFailed("not an Imaris file (no DataSet and DataSetInfo groups)")
        dataset, info = self.h5["DataSet"], self.h5["DataSetInfo"]
        levels = _numbered(dataset, "ResolutionLevel")
        if not levels:
            raise ImportFailed("the Imaris file holds no resolution level")
        base = dataset[levels[0]]
        self.times = _numbered(base, "TimePoint")
        if not self.times:
            raise ImportFailed("the Imaris file holds no time point")
        self.channels = _numbered(base[self.times[0]], "Channel")
        if not self.channels:
            raise ImportFailed("the Imaris file holds no channel")
        image = info.get("Image")
        self.levels: list[tuple[Any, tuple[int, int, int]]] = []
        for level in levels:
            shape = self._level_shape(dataset[level], image if level == levels[0] else None)
            if self.levels and shape[0] != self.levels[0][1][0]:
                break  # NOTE: a level that also halves Z does not fit a level of Coverslip's
            self.levels.append((dataset[level], shape))
        size_z, size_y, size_x = self.levels[0][1]
        data = self._data(0, 0, 0)
        dtype = np.dtype(data.dtype)
        pixel_type = check_pixel_type(dtype)
        self.dtype = dtype.newbyteorder("=")

        channels = []
        for c in range(len(self.channels)):
            group = info.get(f"Channel {c}")
            if group is None:
                channels.append(ChannelMeta(""))
                continue
            channels.append(
                ChannelMeta(
                    attribute(group, "Name") or "",
                    _colour(attribute(group, "Color")),
                    _float(group, "LSMEmissionWavelength") or None,
                    _float(group, "LSMExcitationWavelength") or None,
                )
            )
        physical: list[float | None] = [None, None, None]
        if image is not None:
            unit = (attribute(image, "Unit") or "um").strip()
            for axis, size in enumerate((size_x, size_y, size_z)):
                low, high = _float(image, f"ExtMin{axis}"), _float(image, f"ExtMax{axis}")
                if low is not None and high is not None and size > 0:
                    physical[axis] = micrometres(abs(high - low) / size, unit)
        times = info.get("TimeInfo")
        stamps = [
            _when(attribute(times, f"TimePoint{t + 1}")) if times is not None else None
            for t in range(min(2, len(self.times)))
        ]
        increment = None
        if len(stamps) == 2 and stamps[0] and stamps[1]:
            increment = (stamps[1] - stamps[0]).total_seconds() or None
        recorded = _when(attribute(image, "RecordingDate")) if image is not None else None
        acquired = recorded or stamps[0]
        self.meta = ImageMeta(
            name=path.stem,
            format="ims",
            size_t=len(self.times),
            size_c=len(self.channels),
            size_z=size_z,
            size_y=size_y,
            size_x=size_x,
            pixel_type=pixel_type,
            channels=channels,
            physical_size_x=physical[0],
            physical_size_y=physical[1],
            physical_size_z=physical[2] if size_z > 1 else None,
            acquired=acquired.isoformat() if acquired else None,
            time_increment=increment,
            original_metadata=_flatten(info),
            levels=[(shape[1], shape[2]) for _, shape in self.levels[1:]],
        )

    def _level_shape(self, level: Any, image: Any) -> tuple[int, int, int]:
        """Return (Z, Y, X) of a level from its attributes (DataSetInfo/Image for level 0)."""
        channel = level[self.times[0]][self.channels[0]]
        sizes = []
        for axis in "ZYX":
            size = _int(channel, f"ImageSize{axis}")
            if size is None and image is not None:
                size = _int(image, axis)
            if size is None:
                size = int(channel["Data"].shape["ZYX".index(axis)])
            sizes.append(size)
        if min(sizes) < 1:
            raise ImportFailed(f"the Imaris image is empty (Z, Y, X = {tuple(sizes)})")
        return sizes[0], sizes[1], sizes[2]

    def _data(self, level: int, t: int, c: int) -> Any:
        group, shape = self.levels[level]
        try:
            data = group[self.times[t]][self.channels[c]]["Data"]
        except KeyError:
            raise ImportFailed(
                f"level {level}, time point {t}, channel {c} has no data in the Imaris file"
            ) from None
        if data.ndim != 3 or any(s < n for s, n in zip(data.shape, shape, strict=True)):
            raise ImportFailed(
                f"level {level} data of shape {data.shape} is smaller than its size {shape}"
            )
        return data

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        if not 0 <= level < len(self.levels):
            raise ImportFailed(f"the Imaris file has no level {level}")
        _depth, height, width = self.levels[level][1]
        try:
            # NOTE: the stored array is padded to whole chunks: crop to the level's size.
            band = self._data(level, t, c)[z, y0 : min(y1, height), :width]
        except ImportFailed:
            raise
        except BROKEN as exc:
            raise ImportFailed(
                f"rows {y0}:{y1} of level {level} plane t={t} c={c} z={z} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ) from None
        if isinstance(band, np.ndarray) and band.dtype.kind not in "uif":
            raise UnsupportedFormat(f"Imaris pixels of type {band.dtype}")
        return np.ascontiguousarray(band, dtype=self.dtype)

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.read_level_band(0, t, c, z, y0, y1)

    def close(self) -> None:
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open an Imaris file."""
    ImsReader(path).close()  # NOTE: a truncated or damaged file fails here, at once
    return single(fmt, path, lambda: ImsReader(path))
