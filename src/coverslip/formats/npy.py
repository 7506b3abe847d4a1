"""NumPy .npy arrays, with axes named by the caller (any subset and order of TCZYX)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ImageMeta, check_axes, check_pixel_type, read_stored_band, to_tczyx

DEFAULT_AXES = {2: "YX", 3: "ZYX"}


def _header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Return (shape, Fortran order, dtype) from the header of a .npy file."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


class NpyReader:
    """A .npy array seen as a 5-D image."""

    def __init__(self, path: Path, axes: str | None) -> None:
        self.handle = path.open("rb")
        try:
            self._open(axes)
        except BaseException:
            self.handle.close()
            raise

    def _open(self, axes: str | None) -> None:
        try:
            shape, fortran, dtype = _header(self.handle)
        except Exception as exc:  # noqa: BLE001 - a damaged header fails to parse in many ways
            raise ImportFailed(
                f"not a readable .npy file ({type(exc).__name__}: {exc})".replace("\n", " ")
            ) from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind in "bcSUVMm":
            raise UnsupportedFormat(f"arrays of {dtype} cannot be imported")
        pixel_type = check_pixel_type(dtype)
        if axes is None:
            if len(shape) not in DEFAULT_AXES:
                raise UnsupportedFormat(
                    f"a {len(shape)}-D array needs --axes to say which axes are T, C, Z, Y, X "
                    "(for example --axes CYX)"
                )
            axes = DEFAULT_AXES[len(shape)]
        self.axes = check_axes(axes, len(shape))
        if 0 in shape:
            raise ImportFailed(f"the array is empty (shape {shape})")
        self.offset, self.dtype, self.shape = self.handle.tell(), dtype, tuple(shape)
        size = os.fstat(self.handle.fileno()).st_size
        needed = self.offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if size < needed:
            raise ImportFailed(f"the file is truncated ({size} bytes, the array needs {needed})")
        # PERF: a C-order array with rows before columns gives each band as one run of bytes,
        # read directly; other layouts go through a memory map whose pages are let go after
        # each band so that they do not pile up as resident memory.
        self.direct = not fortran and self.axes.index("Y") < self.axes.index("X")
        self.map: np.memmap | None = None
        if not self.direct:
            self.map = np.memmap(
                self.handle,
                dtype=dtype,
                mode="r",
                offset=self.offset,
                shape=self.shape,
                order="F" if fortran else "C",
            )
        t, c, z, y, x = to_tczyx(self.axes, shape)
        self.meta = ImageMeta(
            name=Path(self.handle.name).stem,
            format="npy",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=pixel_type,
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        where: dict[str, int | slice] = {
            "T": t,
            "C": c,
            "Z": z,
            "Y": slice(y0, y1),
            "X": slice(None),
        }
        index = tuple(where[axis] for axis in self.axes)
        if self.direct:
            return read_stored_band(self.handle, self.offset, self.dtype, self.shape, index)
        assert self.map is not None
        band = self.map[index]
        if self.axes.index("Y") > self.axes.index("X"):
            band = band.T
        result = np.ascontiguousarray(band, dtype=self.dtype.newbyteorder("="))
        self.map._mmap.madvise(mmap.MADV_DONTNEED)  # type: ignore[attr-defined]
        return result

    def close(self) -> None:
        if self.map is not None:
            self.map._mmap.close()  # type: ignore[attr-defined]
            self.map = None
        self.handle.close()
