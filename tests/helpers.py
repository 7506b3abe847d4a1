"""Independent reference computations the tests compare Coverslip's output against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from coverslip.catalog import Catalog
    from coverslip.formats import Reader
    from coverslip.web.app import CoverslipApp

# The instrument samples shared beside the repository; tests skip those that are absent.
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


@contextmanager
def opened(path: Path) -> Iterator[Reader]:
    """Open the one image of ``path``; close it and its fileset afterwards."""
    from coverslip.formats import open_fileset

    fileset = open_fileset(path)
    assert len(fileset.images) == 1
    reader = fileset.images[0]()
    try:
        yield reader
    finally:
        reader.close()
        fileset.close()


def read_plane(reader: Reader, t: int, c: int, z: int, band: int, level: int = 0) -> np.ndarray:
    """Return plane (t, c, z) of ``level`` (0 = full size) read band by band like the importer,
    checking each band's shape and pixel type."""
    from coverslip.formats import Pyramidal

    meta = reader.meta
    height, width = (meta.size_y, meta.size_x) if level == 0 else meta.levels[level - 1]
    bands = []
    for y0 in range(0, height, band):
        y1 = min(height, y0 + band)
        if level == 0:
            rows = reader.read_band(t, c, z, y0, y1)
        else:
            assert isinstance(reader, Pyramidal)
            rows = reader.read_level_band(level, t, c, z, y0, y1)
        assert rows.shape == (y1 - y0, width)
        assert rows.dtype == np.dtype(meta.pixel_type)
        bands.append(rows)
    return np.concatenate(bands)


def mean2x2(a: np.ndarray) -> np.ndarray:
    """Return the 2×2 mean of a 2-D array the slow, obvious way: each output pixel averages
    the input pixels it covers (1, 2 or 4 of them), integers rounded half up."""
    h, w = a.shape
    values = a.astype(np.float64)
    out = np.empty(((h + 1) // 2, (w + 1) // 2))
    for y in range(out.shape[0]):
        rows = values[2 * y : 2 * y + 2]
        for x in range(out.shape[1]):
            out[y, x] = rows[:, 2 * x : 2 * x + 2].mean()
    if a.dtype.kind == "f":
        return out.astype(a.dtype)
    return np.floor(out + 0.5).astype(a.dtype)


def pyramid_levels(a: np.ndarray, count: int) -> list[np.ndarray]:
    """Return ``count`` levels of the 2×2-mean pyramid of a 2-D array, level 0 first."""
    levels = [a]
    for _ in range(count - 1):
        levels.append(mean2x2(levels[-1]))
    return levels


class ArrayReader:
    """A reader over a 5-D TCZYX numpy array, to import images made in a test."""

    def __init__(
        self, data: np.ndarray, name: str = "array", channel_names: list[str] | None = None
    ) -> None:
        from coverslip.formats import ChannelMeta, ImageMeta

        self.data = data
        t, c, z, y, x = data.shape
        names = channel_names or []
        self.meta = ImageMeta(
            name=name,
            format="npy",
            size_t=t,
            size_c=c,
            size_z=z,
            size_y=y,
            size_x=x,
            pixel_type=data.dtype.name,
            channels=[ChannelMeta(name=n) for n in names],
        )

    def read_band(self, t: int, c: int, z: int, y0: int, y1: int) -> np.ndarray:
        return self.data[t, c, z, y0:y1]

    def close(self) -> None:
        pass


def quantize(
    values: np.ndarray,
    start: float,
    end: float,
    family: str = "linear",
    k: float = 1.0,
    inverted: bool = False,
) -> np.ndarray:
    """OMERO's quantization as its documentation states it, value by value, in plain Python.

    Below the window 0, at or above its end 255; inside, x = a·v − a·start with
    a = 255 / (end − start), then 255 · (f(x) − f(0)) / (f(255) − f(0)) rounded half up,
    with f(x) = x**k (linear, polynomial), exp(x**k) (exponential), log x (logarithmic, 0 for x ≤ 0... as log 1).
    """
    import math

    def f(x: float) -> float:
        if family == "exponential":
            return math.exp(x**k)
        if family == "logarithmic":
            return math.log(x) if x > 0 else 0.0
        return x**k

    low, high = (0.0 if family == "logarithmic" else f(0.0)), f(255.0)
    out = np.empty(values.shape, dtype=np.uint8)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    a = 255.0 / (end - start) if end > start else 0.0
    for i, raw in enumerate(flat_in.tolist()):
        v = float(raw)
        if v >= end:
            q = 255
        elif v < start:
            q = 0
        else:
            x = a * v - a * start
            q = min(255, max(0, math.floor(255.0 * (f(x) - low) / (high - low) + 0.5)))
        flat_out[i] = 255 - q if inverted else q
    return out


def paint(q: np.ndarray, color: str) -> np.ndarray:
    """Return (H, W, 3) int: each 8-bit value times the colour component / 255, truncated."""
    components = [int(color[i : i + 2], 16) for i in (0, 2, 4)]
    return np.stack(
        [np.floor(q.astype(np.float64) * (c / 255.0)).astype(np.int64) for c in components], axis=-1
    )


def composite(layers: list[np.ndarray]) -> np.ndarray:
    """Add painted channels and saturate at 255."""
    return np.minimum(np.sum(layers, axis=0), 255).astype(np.uint8)


def decode(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/TIFF bytes to an RGB array."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def read_channels(reader: Reader, level: int = 0, band: int = 64) -> np.ndarray:
    """Return level ``level`` of plane (0, c, 0) for every c as (Y, X, C), band by band."""
    planes = [read_plane(reader, 0, c, 0, band, level) for c in range(reader.meta.size_c)]
    return np.stack(planes, axis=-1)


# OMERO's arithmetic, independently of the code under test (omero-renderer's quantizers, with
# Java's rounding: Math.round is floor(x + 0.5)).


def java_round(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def curve(x: np.ndarray, family: str, k: float) -> np.ndarray:
    """OMERO's QuantumMap.transform (PolynomialMap, ExponentialMap, LogarithmicMap)."""
    if family in ("linear", "polynomial"):
        return x**k
    if family == "exponential":
        return np.exp(x**k)
    return np.log(np.where(x > 0, x, 1.0))


def omero_8_16(values: np.ndarray, start: float, end: float, family: str, k: float) -> np.ndarray:
    """OMERO's Quantization_8_16_bit for one channel (no noise reduction), 0..255."""
    if family == "linear":
        k = 1.0  # QuantumStrategy.setMapping
    v = values.astype(np.float64)
    a = 255.0 / (end - start)
    x = np.clip(a * v - a * start, 0.0, 255.0)  # aDecile * x - bDecile
    top, low = curve(np.float64(255.0), family, k), curve(np.float64(0.0), family, k)
    q = java_round(255.0 / (top - low) * (curve(x, family, k) - low))
    q = np.where(v < start, 0.0, np.where(v >= end, 255.0, q))
    return q.astype(np.int64)


def omero_32(values: np.ndarray, start: float, end: float, family: str, k: float) -> np.ndarray:
    """OMERO's Quantization_32_bit / Quantization_float: snap to the middle of a bin, then map."""
    if family == "linear":
        k = 1.0
    v = values.astype(np.float64)
    step = (end - start) / 256.0
    index = np.clip(np.floor((v - start) / step), 0, 255)
    middle = start + (index + 0.5) * step
    middle = np.where(v < start, start, np.where(v > end, end, middle))
    a = 255.0 / (end - start)
    x = a * middle - a * start
    top, low = curve(np.float64(255.0), family, k), curve(np.float64(0.0), family, k)
    q = java_round(255.0 / (top - low) * (curve(x, family, k) - low))
    return q.astype(np.int64) & 0xFF  # (byte) v & 0xFF


def add_image(
    app: CoverslipApp,
    data: np.ndarray,
    name: str = "img",
    tile: int | None = None,
    group: int | None = None,
) -> int:
    """Import a TCZYX array through the real pipeline (pyramid, stats, default thumbnail).

    The image goes into ``group``, by default the public group that anonymous clients may read.
    """
    from coverslip.imports import ImportOptions

    services = app.services
    owner, _default = services.catalog.ensure_local_admin()
    if group is None:
        group = services.auth.ensure_public_group()
    image_id = services.catalog.create_image(name, owner, group)
    importer = services.importer()
    if tile:
        importer.tile = tile
    importer.build(image_id, ArrayReader(data, name), ImportOptions())
    return image_id


def old_catalog(path: Path, revision: str) -> Catalog:
    """Return a catalog at migration ``revision`` (not the newest) with user 1 in group 1."""
    from alembic import command

    from coverslip.catalog import Catalog

    old = Catalog(f"sqlite:///{path}", migrate=False)
    with old.engine.begin() as conn:
        command.upgrade(old._alembic(conn), revision)
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users (id, username, full_name, email, password_hash, is_admin,"
            " disabled, created) VALUES (1, 'u', '', '', '', 0, 0, '2024-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO groups (id, name, permissions, created) VALUES (1, 'g', 'private',"
            " '2024-01-01')"
        )
    return old
