"""NumPy .npy files, memory-mapped, with axes named by the caller (any subset and order of TCZYX)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ImageMeta, check_axes, check_pixel_type, to_tczyx


class NpyReader:
    """A .npy array seen as a 5-D image."""

    def __init__(self, path: Path, axes: str | None) -> None:
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ImportFailed(f"not a readable .npy file ({exc})") from None
        if self.array.dtype.fields is not None or self.array.dtype.kind in "bcOSUV":
            raise UnsupportedFormat(f"arrays of {self.array.dtype} cannot be imported")
        pixel_type = check_pixel_type(self.array.dtype)
        if axes is None:
            defaults = {2: "YX", 3: "ZYX"}
            if self.array.ndim not in defaults:
                raise UnsupportedFormat(f"a {self.array.ndim}-D array needs --axes (e.g. TCZYX)")
            axes = defaults[self.array.ndim]
        self.axes = check_axes(axes, self.array.ndim)
        t, c, z, y, x = to_tczyx(self.axes, self.array.shape)
        self.meta = ImageMeta(
            name=path.stem,
            format="npy",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=pixel_type,
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        where = {"T": t, "C": c, "Z": z, "Y": slice(y0, y1), "X": slice(None)}
        index: tuple[Any, ...] = tuple(where[axis] for axis in self.axes)
        band = self.array[index]
        if self.axes.index("Y") > self.axes.index("X"):
            band = band.T
        # NOTE: copying here turns a truncated file into an error now, not a crash later.
        return np.array(band, dtype=band.dtype.newbyteorder("="))

    def close(self) -> None:
        mmap = getattr(self.array, "_mmap", None)
        if mmap is not None:
            mmap.close()
