"""Readers that stream an image out of a file, one horizontal band of one plane at a time.

Every reader describes the image (`ImageMeta`) and hands out bands of rows of one
(t, c, z) plane, so that an import never holds more than a band of the image in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat

PIXEL_TYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
AXES = "TCZYX"


@dataclass
class ChannelMeta:
    """What a file says about one channel."""

    name: str
    color: str | None = None  # RRGGBB, upper case, or None to let the importer choose
    emission_wave: float | None = None


@dataclass
class ImageMeta:
    """What a file says about its image: 5-D sizes, pixel type, channels, physical sizes."""

    name: str
    format: str  # tiff | ome-tiff | png | jpeg | npy | ome-zarr
    size_t: int
    size_c: int
    size_z: int
    size_y: int
    size_x: int
    pixel_type: str
    channels: list[ChannelMeta] = field(default_factory=list)
    physical_size_x: float | None = None  # micrometres
    physical_size_y: float | None = None
    physical_size_z: float | None = None

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.size_t, self.size_c, self.size_z, self.size_y, self.size_x)


class Reader(Protocol):
    """An open image file."""

    meta: ImageMeta

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of plane (t, c, z) as a 2-D array of the pixel type.

        Raises ImportFailed when the file turns out to be truncated or corrupt.
        """
        ...

    def close(self) -> None:
        """Release the file."""
        ...


FORMATS = ("tiff", "ome-tiff", "png", "jpeg", "npy", "ome-zarr")


def detect(path: Path) -> str:
    """Return the format of ``path`` from its name and first bytes, or raise UnsupportedFormat."""
    name = path.name.lower()
    if path.is_dir():
        if (
            (path / "zarr.json").exists()
            or (path / ".zattrs").exists()
            or (path / ".zgroup").exists()
        ):
            return "ome-zarr"
        raise UnsupportedFormat(f"{path}: a folder that is not an OME-Zarr")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise UnsupportedFormat(f"{path}: cannot be read ({exc.strerror})") from None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "ome-tiff" if name.endswith((".ome.tif", ".ome.tiff", ".ome.btf")) else "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    raise UnsupportedFormat(
        f"{path}: not a format Coverslip reads (TIFF, OME-TIFF, PNG, JPEG, NPY, OME-Zarr)"
    )


def open_reader(path: Path, axes: str | None = None) -> Reader:
    """Open ``path`` with the reader of its format; ``axes`` names the axes of a .npy file."""
    fmt = detect(path)
    if fmt in ("tiff", "ome-tiff"):
        from coverslip.formats.tiff import TiffReader

        return TiffReader(path)
    if fmt in ("png", "jpeg"):
        from coverslip.formats.raster import RasterReader

        return RasterReader(path, fmt)
    if fmt == "npy":
        from coverslip.formats.npy import NpyReader

        return NpyReader(path, axes)
    from coverslip.formats.omezarr import OmeZarrReader

    return OmeZarrReader(path)


def check_axes(axes: str, ndim: int) -> str:
    """Return ``axes`` upper-cased after checking it names ``ndim`` distinct axes of TCZYX with Y and X."""
    upper = axes.upper()
    if len(upper) != ndim:
        raise UnsupportedFormat(f"--axes {axes!r} names {len(upper)} axes but the array has {ndim}")
    if set(upper) - set(AXES) or len(set(upper)) != len(upper):
        raise UnsupportedFormat(f"--axes {axes!r}: use each of T, C, Z, Y, X at most once")
    if "Y" not in upper or "X" not in upper:
        raise UnsupportedFormat(f"--axes {axes!r} must include Y and X")
    return upper


def to_tczyx(axes: Sequence[str], shape: Sequence[int]) -> tuple[int, int, int, int, int]:
    """Return the 5-D TCZYX shape of an array with ``axes`` and ``shape`` (missing axes are 1)."""
    sizes = dict(zip(axes, shape, strict=True))
    return tuple(sizes.get(axis, 1) for axis in AXES)  # type: ignore[return-value]


def check_pixel_type(dtype: np.dtype) -> str:
    """Return the pixel type name of ``dtype`` or raise UnsupportedFormat."""
    name = np.dtype(dtype).newbyteorder("=").name
    if name not in PIXEL_TYPES:
        raise UnsupportedFormat(
            f"pixel type {name} is not supported (use one of {', '.join(PIXEL_TYPES)})"
        )
    return name


class Seekable(Protocol):
    """A file opened for binary reading (a Python file or tifffile's FileHandle)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def readinto(self, buffer: Any, /) -> int | None: ...


def read_stored_band(
    handle: Seekable,
    offset: int,
    dtype: np.dtype,
    shape: Sequence[int],
    index: Sequence[int | slice],
) -> np.ndarray:
    """Return ``array[index]`` of a C-order array stored uncompressed at ``offset`` in ``handle``.

    ``index`` fixes every axis before the one that selects rows with a slice, so the band is
    one run of bytes: only those bytes are read (a memory map would leave the whole file
    resident). Axes after the rows are read whole and indexed in memory.
    """
    rows, wanted = next((i, item) for i, item in enumerate(index) if isinstance(item, slice))
    lead = [item for item in index[:rows] if isinstance(item, int)]
    if len(lead) != rows:
        raise ValueError(f"index {index} has a slice before the rows")
    y0, y1, _step = wanted.indices(shape[rows])
    y1 = max(y0, y1)
    row_items = math.prod(shape[rows + 1 :])
    first = int(np.ravel_multi_index((*lead, y0), tuple(shape[: rows + 1]))) if y1 > y0 else 0
    band = np.empty((y1 - y0) * row_items, dtype=dtype)
    handle.seek(offset + first * row_items * dtype.itemsize)
    got = handle.readinto(band.data.cast("B"))
    if got != band.nbytes:
        raise ImportFailed("the file ends inside its image data (truncated)")
    band = band.reshape(y1 - y0, *shape[rows + 1 :])[(slice(None), *index[rows + 1 :])]
    return np.ascontiguousarray(band, dtype=dtype.newbyteorder("="))
