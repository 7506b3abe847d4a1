"""DeltaVision DV (with the mrc package) and MRC/CCP4 maps (with mrcfile), read band by band.

Both keep their pixels uncompressed in one run after the headers, so the libraries only
parse the headers and each band is read straight from the file (`read_stored_band`).

- DV: sections are ordered by the header's image sequence (ZTW, WZT or ZWT); the waves
  (emission wavelengths in nm) are the channels, named like "528 nm"; pixel sizes are µm.
- MRC: a volume is ZYX; an image stack (space group 0) is a Z stack of images; a volume
  stack (space group 401 and up) is T volumes of ``mz`` sections. Voxel sizes are in Å
  (1 Å = 1e-4 µm). Mode 12 (float16) is widened to float32; complex modes and 4-bit data are
  refused. A map whose axes are permuted (MAPC/MAPR/MAPS not 1, 2, 3) keeps its stored
  order, with each pixel size taken from the axis stored there.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import Any

import mrc as dvlib
import mrcfile
import mrcfile.utils
import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import (
    ChannelMeta,
    Fileset,
    ImageMeta,
    check_pixel_type,
    read_stored_band,
    single,
)
from coverslip.formats.meta import MAX_VALUE

HEADER_BYTES = 1024
ANGSTROM = 1e-4  # µm
COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}


class BandFile:
    """Pixels stored as one C-order array at ``offset``: read a band of rows at a time."""

    def __init__(
        self, path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...], cast: Any = None
    ) -> None:
        size = path.stat().st_size
        need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if need > size:
            raise ImportFailed(f"the file is truncated ({size} bytes, the image needs {need})")
        self.handle: io.BufferedReader | None = path.open("rb")
        self.lock = threading.Lock()
        self.offset, self.dtype, self.shape, self.cast = offset, dtype, shape, cast

    def read(self, index: tuple[int | slice, ...]) -> np.ndarray:
        if self.handle is None:
            raise ImportFailed("the image was closed")
        try:
            with self.lock:
                band = read_stored_band(self.handle, self.offset, self.dtype, self.shape, index)
        except OSError as exc:
            raise ImportFailed(f"the image data cannot be read ({exc.strerror})") from None
        return band.astype(self.cast) if self.cast is not None else band

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1").rstrip("\x00 ")
    return str(value)[:MAX_VALUE]


def _titles(raw: bytes, count: int | None = None) -> list[str]:
    """Return the non-empty 80-character labels of an MRC-style header."""
    labels = [raw[i : i + 80].decode("latin-1").strip("\x00 ") for i in range(0, len(raw), 80)]
    return [label for label in labels[:count] if label.isprintable() and label]


class DvHeader(dvlib.DVFile):
    """The headers of a DeltaVision file, without the memory map DVFile makes of its pixels."""

    def open(self) -> None:
        pass  # NOTE: bands are read from the file; a map would fail on a truncated file


class DvReader:
    """A DeltaVision file: C, T, Z sections of Y × X planes."""

    def __init__(self, path: Path) -> None:
        try:
            dv = DvHeader(path)
        except Exception as exc:  # noqa: BLE001 - struct.error and the like on a cut header
            raise ImportFailed(
                f"not a readable DeltaVision file ({type(exc).__name__}: {exc})"
            ) from None
        try:
            self._open(path, dv)
        finally:
            dv.close()

    def _open(self, path: Path, dv: Any) -> None:
        hdr = dv.hdr
        if hdr.pixel_type in COMPLEX_MODES:
            raise UnsupportedFormat(f"DeltaVision pixels of type {COMPLEX_MODES[hdr.pixel_type]}")
        try:
            dtype = np.dtype(dv.dtype)
        except KeyError:
            raise UnsupportedFormat(f"DeltaVision pixel type {hdr.pixel_type} is unknown") from None
        pixel_type = check_pixel_type(dtype)
        sizes = dict(dv.sizes)
        self.axes = str(dv.axes)
        shape = tuple(int(sizes[a]) for a in self.axes)
        if 0 in shape:
            raise ImportFailed(f"the DeltaVision image is empty ({sizes})")
        if sizes["C"] * sizes["T"] * sizes["Z"] != hdr.n_sections:
            raise ImportFailed(
                f"the header's {hdr.n_sections} sections are not {sizes['C']} waves × "
                f"{sizes['T']} time points × whole Z stacks"
            )
        self.band = BandFile(path, HEADER_BYTES + hdr.ext_hdr_len, dtype, shape)
        waves = [hdr.wave1, hdr.wave2, hdr.wave3, hdr.wave4, hdr.wave5][: sizes["C"]]
        channels = []
        for c in range(sizes["C"]):
            wave = float(waves[c]) if c < len(waves) and waves[c] > 0 else None
            excitation = None
            if dv.ext_hdr is not None:
                frame = dv.ext_hdr.frame(self._section(c, 0, 0, sizes))
                excitation = float(frame.exWavelen) if frame.exWavelen > 0 else None
                wave = wave or (float(frame.emWavelen) if frame.emWavelen > 0 else None)
            channels.append(
                ChannelMeta(
                    f"{wave:.0f} nm" if wave else f"Channel {c + 1}", None, wave, excitation
                )
            )
        increment = None
        if dv.ext_hdr is not None and sizes["T"] > 1:
            first, second = (dv.ext_hdr.frame(self._section(0, t, 0, sizes)) for t in (0, 1))
            step = second.timeStampSeconds - first.timeStampSeconds
            increment = float(step) if step > 0 else None
        metadata = {f"header|{k}": _text(v) for k, v in hdr._asdict().items() if k != "blank"}
        for i, title in enumerate(_titles(dv._title)):
            metadata[f"title|{i + 1}"] = title
        self.meta = ImageMeta(
            name=path.stem,
            format="dv",
            size_t=sizes["T"],
            size_c=sizes["C"],
            size_z=sizes["Z"],
            size_y=sizes["Y"],
            size_x=sizes["X"],
            pixel_type=pixel_type,
            channels=channels,
            physical_size_x=_positive(hdr.dx),
            physical_size_y=_positive(hdr.dy),
            physical_size_z=_positive(hdr.dz) if sizes["Z"] > 1 else None,
            objective=dv.lens or None,
            time_increment=increment,
            original_metadata=metadata,
        )

    def _section(self, c: int, t: int, z: int, sizes: dict[str, int]) -> int:
        """Return the section number of (c, t, z) in the file's image sequence."""
        order = self.axes[:3]
        position = {"C": c, "T": t, "Z": z}
        return int(
            np.ravel_multi_index(tuple(position[a] for a in order), tuple(sizes[a] for a in order))
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        position: dict[str, int | slice] = {
            "T": t,
            "C": c,
            "Z": z,
            "Y": slice(y0, y1),
            "X": slice(None),
        }
        return self.band.read(tuple(position[a] for a in self.axes))

    def close(self) -> None:
        self.band.close()


def _positive(value: float) -> float | None:
    """Return a positive header length to the 7 digits a float32 holds, else None."""
    number = float(f"{float(value):.7g}")
    return number if np.isfinite(number) and number > 0 else None


class MrcReader:
    """An MRC/CCP4 map: a volume, an image stack or a stack of volumes."""

    def __init__(self, path: Path) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NOTE: permissive mode warns of every oddity
                with mrcfile.open(path, permissive=True, header_only=True) as mrc:
                    header = mrc.header
                    voxel = mrc.voxel_size
                    if header is None:
                        raise ImportFailed("the MRC header is missing or too short")
                    header = header.copy()
                    voxel = (float(voxel.x), float(voxel.y), float(voxel.z))
        except ImportFailed:
            raise
        except (ValueError, OSError, EOFError) as exc:
            raise ImportFailed(f"not a readable MRC file ({type(exc).__name__}: {exc})") from None
        self._open(path, header, voxel)

    def _open(self, path: Path, header: Any, voxel: tuple[float, float, float]) -> None:
        mode = int(header.mode)
        if mode in COMPLEX_MODES:
            raise UnsupportedFormat(f"MRC mode {mode} ({COMPLEX_MODES[mode]}) is not an image")
        if mode == 101:
            raise UnsupportedFormat("MRC mode 101 (4-bit packed pixels) is not supported")
        try:
            dtype = np.dtype(mrcfile.utils.data_dtype_from_header(header))
        except ValueError as exc:
            raise UnsupportedFormat(f"MRC {exc}") from None
        cast = np.dtype(np.float32) if dtype.kind == "f" and dtype.itemsize == 2 else None
        pixel_type = check_pixel_type(cast or dtype)
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        if min(nx, ny, nz) < 1:
            raise ImportFailed(f"the MRC image is empty ({nx} × {ny} × {nz})")
        ispg, mz = int(header.ispg), int(header.mz)
        volumes = nz // mz if 401 <= ispg <= 630 and 0 < mz < nz and nz % mz == 0 else 1
        self.depth = nz // volumes
        offset = HEADER_BYTES + max(0, int(header.nsymbt))
        self.band = BandFile(path, offset, dtype, (nz, ny, nx), cast)
        # NOTE: voxel_size is per X, Y, Z of the cell; the stored axes are MAPC, MAPR, MAPS.
        axes = (int(header.mapc), int(header.mapr), int(header.maps))
        if sorted(axes) != [1, 2, 3]:
            axes = (1, 2, 3)
        size_x, size_y, size_z = (_positive(voxel[a - 1] * ANGSTROM) for a in axes)
        metadata: dict[str, str] = {}
        for name in header.dtype.names or ():
            if name in ("label", "extra1", "extra2"):
                continue
            metadata[f"header|{name}"] = _text(header[name].tolist())
        nlabl = int(header.nlabl)
        for i, label in enumerate(_titles(b"".join(bytes(x) for x in header.label), nlabl)):
            metadata[f"label|{i + 1}"] = label
        self.meta = ImageMeta(
            name=path.stem,
            format="mrc",
            size_t=volumes,
            size_c=1,
            size_z=self.depth,
            size_y=ny,
            size_x=nx,
            pixel_type=pixel_type,
            channels=[ChannelMeta("")],
            physical_size_x=size_x,
            physical_size_y=size_y,
            physical_size_z=size_z if self.depth > 1 else None,
            original_metadata=metadata,
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.band.read((t * self.depth + z, slice(y0, y1), slice(None)))

    def close(self) -> None:
        self.band.close()


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a DeltaVision file (fmt "dv") or an MRC/CCP4 map (fmt "mrc")."""
    kind = DvReader if fmt == "dv" else MrcReader
    kind(path).close()  # NOTE: a damaged header or a truncated file fails here, at once
    return single(fmt, path, lambda: kind(path))
