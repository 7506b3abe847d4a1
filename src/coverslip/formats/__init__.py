"""Readers that stream images out of files, one horizontal band of one plane at a time.

A file (or a set of files that belong together) opens as a `Fileset`: the files it is made
of, and one or more images (series, scenes, positions, fields of a plate, a slide's label).
Every image is opened on demand as a `Reader`, which describes it (`ImageMeta`) and hands
out bands of rows of one (t, c, z) plane, so that an import never holds more than a band of
an image in memory. A reader whose file stores its own resolution levels lists them in
``meta.levels`` and reads them with ``read_level_band``, so they are copied as they are.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from coverslip.errors import ImportFailed, UnsupportedFormat

PIXEL_TYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
AXES = "TCZYX"


@dataclass
class ChannelMeta:
    """What a file says about one channel."""

    name: str
    color: str | None = None  # RRGGBB, upper case, or None to let the importer choose
    emission_wave: float | None = None  # nanometres
    excitation_wave: float | None = None  # nanometres


@dataclass
class ImageMeta:
    """What a file says about one image: 5-D sizes, pixel type, channels, physical sizes."""

    name: str
    format: str  # a name from FORMATS
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
    # The place of this image in its file ("scene 2", "position 3", "label"); None when
    # the file holds one image.
    series: str | None = None
    # "image", or what a slide keeps beside it: "label", "macro", "thumbnail", "overview".
    kind: str = "image"
    objective: str | None = None  # e.g. "Plan-Apochromat 20x/0.8"
    acquired: str | None = None  # ISO 8601 date and time of acquisition
    time_increment: float | None = None  # seconds between time points
    # The vendor's own metadata, flattened to text keys and values ("Scaling|X": "9.1e-08").
    original_metadata: dict[str, str] = field(default_factory=dict)
    # (height, width) of the file's own resolution levels after level 0, finest first;
    # empty when the file has none. Read them with Pyramidal.read_level_band.
    levels: list[tuple[int, int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # names of label images kept beside it

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.size_t, self.size_c, self.size_z, self.size_y, self.size_x)


class Reader(Protocol):
    """An open image."""

    meta: ImageMeta

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of plane (t, c, z) as a 2-D array of the pixel type.

        Raises ImportFailed when the file turns out to be truncated or corrupt.
        """
        ...

    def close(self) -> None:
        """Release what this image holds open."""
        ...


@runtime_checkable
class Pyramidal(Protocol):
    """A reader whose file stores resolution levels of its own (``meta.levels``)."""

    meta: ImageMeta

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray: ...

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of plane (t, c, z) of ``level`` (1 = first of meta.levels)."""
        ...

    def close(self) -> None: ...


@dataclass
class WellMeta:
    """One well of a plate: its row and column (0-based) and its fields, as image indices."""

    row: int
    column: int
    fields: list[int]  # indices into Fileset.images, field 0 first


@dataclass
class PlateMeta:
    """A plate of wells (HCS), as a file describes it."""

    name: str
    rows: list[str]  # row names, e.g. ["A", "B", ...]
    columns: list[str]  # column names, e.g. ["1", "2", ...]
    wells: list[WellMeta] = field(default_factory=list)
    acquisitions: list[str] = field(default_factory=list)


@dataclass
class Fileset:
    """What a file or a set of files holds: one or more images, maybe arranged as a plate."""

    format: str
    files: list[Path]  # every file or folder of the set; the one opened comes first
    images: list[Callable[[], Reader]]  # open image i; each reader is closed by its user
    plate: PlateMeta | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release what the images share (an open file, a library handle)."""
        while self.closers:
            self.closers.pop()()


@dataclass(frozen=True)
class Format:
    """A format Coverslip reads, the module that reads it and the library it uses."""

    name: str
    title: str
    module: str  # module under coverslip.formats with open_fileset(path) -> Fileset
    library: str  # the distribution that does the reading, for `coverslip formats`
    suffixes: tuple[str, ...] = ()


FORMAT_LIST = (
    Format(
        "tiff",
        "TIFF, BigTIFF, ImageJ, LSM, MetaMorph STK, QPTIFF, SIS, NIH, Micro-Manager",
        "tiff",
        "tifffile",
        (".tif", ".tiff", ".btf", ".lsm", ".stk", ".qptiff"),
    ),
    Format(
        "ome-tiff",
        "OME-TIFF, single and multi-file (.companion.ome)",
        "tiff",
        "tifffile",
        (".ome.tif", ".ome.tiff", ".ome.btf", ".companion.ome"),
    ),
    Format("svs", "Aperio SVS", "slide", "tifffile", (".svs",)),
    Format("ndpi", "Hamamatsu NDPI", "slide", "tifffile", (".ndpi",)),
    Format("scn", "Leica SCN", "slide", "tifffile", (".scn",)),
    Format("bif", "Ventana BIF", "slide", "tifffile", (".bif",)),
    Format("philips-tiff", "Philips TIFF", "slide", "tifffile", (".tiff",)),
    Format("mrxs", "3DHISTECH MIRAX", "slide", "openslide-python", (".mrxs",)),
    Format("dicom", "DICOM whole-slide (VL WSI)", "dicom", "wsidicom", (".dcm",)),
    Format("czi", "Zeiss CZI", "czi", "pylibCZIrw", (".czi",)),
    Format("nd2", "Nikon ND2", "nd2", "nd2", (".nd2",)),
    Format("lif", "Leica LIF, LOF, XLIF", "lif", "liffile", (".lif", ".lof", ".xlif")),
    Format("dv", "DeltaVision DV", "mrc", "mrc", (".dv", ".r3d")),
    Format(
        "mrc", "MRC, CCP4 MAP", "mrc", "mrcfile", (".mrc", ".map", ".mrcs", ".rec", ".st", ".ali")
    ),
    Format("oib", "Olympus FluoView OIB, OIF", "oif", "oiffile", (".oib", ".oif")),
    Format("ims", "Imaris IMS", "ims", "h5py", (".ims",)),
    Format("png", "PNG", "raster", "Pillow", (".png",)),
    Format("jpeg", "JPEG", "raster", "Pillow", (".jpg", ".jpeg")),
    Format("npy", "NumPy NPY (--axes names the axes)", "npy", "numpy", (".npy",)),
    Format(
        "ome-zarr",
        "OME-Zarr 0.4 and 0.5: images, bioformats2raw layouts, plates",
        "omezarr",
        "zarr",
        (".zarr",),
    ),
)
BY_NAME = {fmt.name: fmt for fmt in FORMAT_LIST}
FORMATS = tuple(BY_NAME)
# Named in the error for a file no reader knows; derived so it cannot drift from the list.
READABLE = ", ".join(fmt.name.upper() for fmt in FORMAT_LIST)

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _tiff_dialect(path: Path, name: str) -> str:
    """Return the slide format tifffile recognises in a TIFF, else tiff or ome-tiff."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            for flag, fmt in (
                ("is_svs", "svs"),
                ("is_ndpi", "ndpi"),
                ("is_scn", "scn"),
                ("is_bif", "bif"),
                ("is_philips", "philips-tiff"),
            ):
                if getattr(tif, flag, False):
                    return fmt
    except Exception:  # noqa: BLE001, S110 - a damaged TIFF fails later with its reason
        pass
    return "ome-tiff" if name.endswith((".ome.tif", ".ome.tiff", ".ome.btf")) else "tiff"


def _detect_folder(path: Path) -> str:
    if any((path / marker).exists() for marker in ("zarr.json", ".zattrs", ".zgroup")):
        return "ome-zarr"
    entries = sorted(p for p in path.iterdir() if p.is_file())
    if any(_head(p, 132)[128:132] == b"DICM" for p in entries[:64]):
        return "dicom"
    raise UnsupportedFormat(
        f"{path.name}: a folder that is neither an OME-Zarr nor a DICOM series "
        f"(Coverslip reads {READABLE})"
    )


def _head(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise UnsupportedFormat(f"{path.name}: cannot be read ({exc.strerror})") from None


def detect(path: Path) -> str:
    """Return the format of ``path`` from its name and first bytes, or raise UnsupportedFormat."""
    name = path.name.lower()
    if path.is_dir():
        return _detect_folder(path)
    head = _head(path, 256)
    if head[:4] in TIFF_MAGIC:
        return _tiff_dialect(path, name)
    if name.endswith(".companion.ome"):
        return "ome-tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:10] == b"ZISRAWFILE":
        return "czi"
    if head[:4] == b"\xda\xce\xbe\x0a" or (name.endswith(".nd2") and head[4:8] == b"jP  "):
        return "nd2"
    if head[:4] == b"\x70\x00\x00\x00" and head[8:9] == b"\x2a" or name.endswith((".lof", ".xlif")):
        return "lif"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[96:98] in (b"\xa0\xc0", b"\xc0\xa0") and name.endswith((".dv", ".r3d")):
        return "dv"
    if head[208:212] == b"MAP " or name.endswith(BY_NAME["mrc"].suffixes) and len(head) >= 224:
        return "mrc"
    if head[:8] == OLE2_MAGIC and name.endswith(".oib") or name.endswith(".oif"):
        return "oib"
    if head[:8] == HDF5_MAGIC and name.endswith(".ims"):
        return "ims"
    if name.endswith(".mrxs"):
        return "mrxs"
    raise UnsupportedFormat(f"{path.name}: not a format Coverslip reads ({READABLE})")


def single(fmt: str, path: Path, opener: Callable[[], Reader]) -> Fileset:
    """Return the fileset of a file that holds one image."""
    return Fileset(format=fmt, files=[path], images=[opener])


def open_fileset(path: Path, axes: str | None = None) -> Fileset:
    """Open ``path`` with the reader of its format; ``axes`` names the axes of a .npy file."""
    fmt = detect(path)
    if fmt == "npy":
        from coverslip.formats.npy import NpyReader

        return single(fmt, path, lambda: NpyReader(path, axes))
    module = importlib.import_module(f"coverslip.formats.{BY_NAME[fmt].module}")
    fileset: Fileset = module.open_fileset(path, fmt)
    if not fileset.images:
        fileset.close()
        raise ImportFailed(f"{path.name}: the file holds no image")
    return fileset


def open_reader(path: Path, axes: str | None = None) -> Reader:
    """Open the first image of ``path`` (for callers that take one image per file)."""
    fileset = open_fileset(path, axes)
    try:
        reader = fileset.images[0]()
    except BaseException:
        fileset.close()
        raise
    closing = reader.close

    def close() -> None:
        closing()
        fileset.close()

    reader.close = close  # type: ignore[method-assign]
    return reader


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
