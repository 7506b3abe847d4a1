"""Zeiss CZI through pylibCZIrw (libCZI): every scene an image, mosaics composited band by band.

libCZI composes the tiles of a mosaic into any rectangle, so a band of rows of a scene's
bounding box is one read: only the subblocks the band touches are decoded (compressed ones
stay in a bounded cache for the next band). The file's subblock directory and its XML
metadata are read by `czi_meta`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pylibCZIrw import czi as pyczi

from coverslip.errors import ImportFailed, UnsupportedFormat
from coverslip.formats import ChannelMeta, Fileset, ImageMeta, Reader, check_pixel_type
from coverslip.formats.czi_meta import Directory, parse_metadata, read_directory
from coverslip.formats.meta import RGB_CHANNELS, reason

# libCZI's PixelType numbers: (name pylibCZIrw reads by, numpy type, samples per pixel).
PIXEL_TYPES: dict[int, tuple[str, str, int]] = {
    0: ("Gray8", "uint8", 1),
    1: ("Gray16", "uint16", 1),
    2: ("Gray32Float", "float32", 1),
    3: ("Bgr24", "uint8", 3),
    4: ("Bgr48", "uint16", 3),
    8: ("Bgr96Float", "float32", 3),
}
UNREADABLE_PIXEL_TYPES = {
    9: "Bgra32",
    10: "Gray64ComplexFloat",
    11: "Bgr192ComplexFloat",
    12: "Gray32",
    13: "Gray64Float",
}
# Plane dimensions besides T, C and Z that a CZI may have: rotation, illumination, phase,
# view, block. They are folded into Z when the file has no Z, else into T.
EXTRA_DIMS = ("R", "I", "H", "V", "B")
# PERF: libCZI keeps decoded compressed subblocks for the next band; bounded so an import
# stays within its memory budget.
CACHE_BYTES = 256 * 1024 * 1024
# PERF: libCZI reads every subblock a read touches in full, so 256-row bands of a mosaic of
# 2048² frames read each frame 8 times; reading this many bytes of rows at once and handing
# out the import's bands from them reads it once or twice (286 against 540 MB/s).
CHUNK_BYTES = 64 * 1024 * 1024
SHORT_READ = "Not enough data read"  # what libCZI says when the file ends too soon


class _Source(NamedTuple):
    """Where one channel of the image comes from."""

    czi_c: int  # the CZI channel, counted from its first
    pixel_type: str  # libCZI's name of its pixel type
    sample: int  # 0, 1, 2 for the red, green, blue of a colour channel; else 0
    rgb: bool


@dataclass(frozen=True)
class _Plan:
    """How the 5-D image of every scene maps onto the CZI's planes and samples."""

    sizes: dict[str, int]  # every plane dimension of the file with its size, T and Z first
    folded: dict[str, tuple[str, ...]]  # "T"/"Z" -> the dimensions that make it up
    channels: list[_Source]  # one per channel of the image
    dtype: np.dtype


def _plan(document: pyczi.CziReader, directory: Directory) -> _Plan:
    box = document.total_bounding_box
    sizes = {dim: hi - lo for dim, (lo, hi) in box.items() if dim not in "XY"}
    sizes.setdefault("T", 1)
    sizes.setdefault("Z", 1)
    extra = tuple(dim for dim in EXTRA_DIMS if sizes.get(dim, 1) > 1)
    target = "T" if sizes["Z"] > 1 else "Z"
    folded: dict[str, tuple[str, ...]] = {"T": ("T",), "Z": ("Z",)}
    folded[target] = (target, *extra)
    channels: list[_Source] = []
    dtypes = []
    for czi_c in range(sizes.get("C", 1)):
        code = directory.pixel_types.get(czi_c + directory.starts.get("C", 0), -1)
        if code not in PIXEL_TYPES:
            name = UNREADABLE_PIXEL_TYPES.get(code, f"number {code}")
            raise UnsupportedFormat(f"CZI pixel type {name} (channel {czi_c}) is not supported")
        name, dtype, samples = PIXEL_TYPES[code]
        dtypes.append(np.dtype(dtype))
        channels.extend(_Source(czi_c, name, sample, samples == 3) for sample in range(samples))
    return _Plan(sizes, folded, channels, np.result_type(*dtypes))


def _compose(
    document: pyczi.CziReader,
    roi: tuple[int, int, int, int],
    plane: dict[str, int],
    scene: int | None,
    pixel_type: str,
    zoom: float = 1.0,
) -> np.ndarray:
    """Return the ``roi`` of ``plane`` as libCZI composes it at ``zoom``, (rows, width, samples).

    # PERF: ``CziReader.read`` copies the whole composed bitmap once only to look at its
    # shape, then wraps it without copying: a third of the time of reading an uncompressed
    # CZI. The same calls without that copy, where this pylibCZIrw has them.
    """
    reader = getattr(document, "_czi_reader", None)
    steps = (
        "_create_plane_coords",
        "_format_roi",
        "_format_background_pixel",
        "_format_plane",
        "_format_pixel_type",
    )
    if reader is None or not all(hasattr(document, step) for step in steps):
        return document.read(roi=roi, plane=plane, scene=scene, zoom=zoom, pixel_type=pixel_type)
    bitmap = reader.GetSingleChannelScalingTileAccessorData(
        document._format_pixel_type(pixel_type),
        document._format_roi(pyczi.Rectangle(*roi)),
        document._format_background_pixel(pyczi.Color(0.0, 0.0, 0.0)),
        zoom,
        document._format_plane(document._create_plane_coords(plane)),
        "" if scene is None else str(scene),
    )
    return np.asarray(bitmap)


class CziScene:
    """One scene of an open CZI (or the whole file when it has none), read band by band."""

    def __init__(
        self,
        document: pyczi.CziReader,
        lock: threading.Lock,
        plan: _Plan,
        directory: Directory,
        scene: int | None,
        rect: pyczi.Rectangle,
        meta: ImageMeta,
    ) -> None:
        self.document = document
        self.lock = lock
        self.plan = plan
        self.starts = directory.starts
        self.scene = scene
        self.rect = rect
        # The file's own pyramid layers, least minified first, as levels after level 0.
        self.factors = [f for f in sorted(directory.factors) if rect.h // f and rect.w // f]
        self.meta = replace(meta, levels=[(rect.h // f, rect.w // f) for f in self.factors])
        samples = 3 if any(source.rgb for source in plan.channels) else 1
        # Rows read at once; the bands asked for are sliced out of them.
        self.rows = max(1, CHUNK_BYTES // max(1, rect.w * samples * plan.dtype.itemsize))
        # PERF: kept for the next bands, and for the other samples of an RGB pixel.
        self._last: tuple[tuple[Any, ...], int, np.ndarray] | None = None

    def _coords(self, t: int, c: int, z: int) -> dict[str, int]:
        coords: dict[str, int] = {}
        for axis, value in (("T", t), ("Z", z)):
            dims = self.plan.folded[axis]
            shape = [self.plan.sizes.get(dim, 1) for dim in dims]
            for dim, index in zip(dims, np.unravel_index(value, shape), strict=True):
                coords[dim] = int(index)
        coords["C"] = self.plan.channels[c].czi_c
        return {dim: self.starts.get(dim, 0) + index for dim, index in coords.items()}

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        source = self.plan.channels[c]
        plane = self._coords(t, c, z)
        key = tuple(sorted(plane.items()))
        last = self._last
        if last is None or last[0] != key or not last[1] <= y0 < y1 <= last[1] + len(last[2]):
            bottom = min(self.meta.size_y, max(y1, y0 + self.rows))
            last = self._last = (key, y0, self._read(plane, source, (t, c, z), y0, bottom))
        return self._sample(last[2][y0 - last[1] : y1 - last[1]], source)

    def read_level_band(self, level: int, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        """Return rows ``y0:y1`` of the file's own pyramid layer ``level`` (1 = least minified).

        libCZI composes the layer's subblocks at their own scale (zoom 1/factor, over a
        region that is a whole number of layer pixels), so their pixels come as stored.
        """
        if not 1 <= level <= len(self.factors):
            raise ValueError(f"level {level} is not one of the file's (1 to {len(self.factors)})")
        source = self.plan.channels[c]
        plane = self._coords(t, c, z)
        band = self._read(plane, source, (t, c, z), y0, y1, level)
        return self._sample(band, source)

    def _sample(self, band: np.ndarray, source: _Source) -> np.ndarray:
        # NOTE: libCZI stores colour as B, G, R; channel 0 of the image is red.
        index = 2 - source.sample if source.rgb else 0
        return np.ascontiguousarray(band[:, :, index], dtype=self.plan.dtype)

    def _read(
        self,
        plane: dict[str, int],
        source: _Source,
        tcz: tuple[int, int, int],
        y0: int,
        y1: int,
        level: int = 0,
    ) -> np.ndarray:
        """Return rows y0:y1 of a plane of ``level`` as libCZI composes them, (rows, width, samples)."""
        factor = self.factors[level - 1] if level else 1
        width = self.meta.levels[level - 1][1] if level else self.meta.size_x
        roi = (self.rect.x, self.rect.y + y0 * factor, width * factor, (y1 - y0) * factor)
        try:
            with self.lock:
                band = _compose(
                    self.document, roi, plane, self.scene, source.pixel_type, 1.0 / factor
                )
        except MemoryError:
            raise ImportFailed("a band of the CZI is too large to decode") from None
        except Exception as exc:  # noqa: BLE001 - libCZI raises RuntimeError, ValueError…
            t, c, z = tcz
            where = f" of {self.meta.series}" if self.meta.series else ""
            why = "the CZI is truncated: " if SHORT_READ in str(exc) else ""
            raise ImportFailed(
                f"rows {y0}:{y1} of plane t={t} c={c} z={z}{where} cannot be read "
                f"({why}{' '.join(str(exc).split())})"
            ) from None
        if band.shape[:2] != (y1 - y0, width):
            raise ImportFailed(
                f"libCZI returned a band of shape {band.shape[:2]} for rows {y0}:{y1}"
                + (f" of level {level}" if level else "")
            )
        return band

    def close(self) -> None:
        self._last = None


def _channel_meta(plan: _Plan, described: list[ChannelMeta]) -> list[ChannelMeta]:
    """Return one ChannelMeta per image channel: RGB samples are Red, Green, Blue."""
    several = len({source.czi_c for source in plan.channels}) > 1
    out = []
    for source in plan.channels:
        given = described[source.czi_c] if source.czi_c < len(described) else ChannelMeta("")
        if source.rgb:
            name, color = RGB_CHANNELS[source.sample]
            out.append(
                ChannelMeta(f"{given.name} {name}" if several and given.name else name, color)
            )
        else:
            out.append(replace(given))
    return out


@contextlib.contextmanager
def _failing_cleanly(path: Path) -> Iterator[None]:
    """Turn what libCZI raises on a damaged file into ImportFailed naming the reason."""
    try:
        yield
    except ImportFailed:
        raise
    except MemoryError:
        raise ImportFailed("the CZI's structure is too large to read") from None
    except Exception as exc:  # noqa: BLE001 - libCZI raises RuntimeError, ValueError…
        if SHORT_READ in str(exc):
            raise ImportFailed(f"the CZI is truncated ({reason(exc, path)})") from None
        raise ImportFailed(f"not a readable CZI ({reason(exc, path)})") from None


def open_fileset(path: Path, fmt: str) -> Fileset:
    """Open a CZI: one image per scene, or one image when the file has no scenes."""
    stack = contextlib.ExitStack()
    try:
        with _failing_cleanly(path):
            directory = read_directory(path)
            cache = pyczi.CacheOptions(pyczi.CacheType.Standard, max_memory_usage=CACHE_BYTES)
            document = stack.enter_context(pyczi.open_czi(str(path), cache_options=cache))
            plan = _plan(document, directory)
            pixel_type = check_pixel_type(plan.dtype)
            scenes: dict[int | None, pyczi.Rectangle] = dict(
                document.scenes_bounding_rectangle_no_pyramid
            )
            if not scenes:
                scenes = {None: document.total_bounding_rectangle_no_pyramid}
            described = parse_metadata(document.raw_metadata)
    except BaseException:
        stack.close()
        raise
    lock = threading.Lock()
    base = ImageMeta(
        name=path.stem,
        format=fmt,
        size_t=math.prod(plan.sizes.get(dim, 1) for dim in plan.folded["T"]),
        size_c=len(plan.channels),
        size_z=math.prod(plan.sizes.get(dim, 1) for dim in plan.folded["Z"]),
        size_y=0,
        size_x=0,
        pixel_type=pixel_type,
        channels=_channel_meta(plan, described.channels),
        physical_size_x=described.physical[0],
        physical_size_y=described.physical[1],
        physical_size_z=described.physical[2],
        objective=described.objective,
        acquired=described.acquired,
        time_increment=described.time_increment,
        original_metadata=described.original,
    )
    openers: list[Callable[[], Reader]] = []
    for number, (scene, rect) in enumerate(sorted(scenes.items(), key=lambda kv: kv[0] or 0)):
        if rect.w <= 0 or rect.h <= 0:
            continue
        meta = replace(
            base,
            size_y=rect.h,
            size_x=rect.w,
            series=f"scene {number + 1}" if len(scenes) > 1 else None,
        )

        def opener(scene: int | None = scene, rect: Any = rect, meta: ImageMeta = meta) -> Reader:
            own = replace(
                meta,
                channels=[replace(ch) for ch in meta.channels],
                original_metadata=dict(meta.original_metadata),
            )
            return CziScene(document, lock, plan, directory, scene, rect, own)

        openers.append(opener)
    return Fileset(format=fmt, files=[path], images=openers, closers=[stack.close])
