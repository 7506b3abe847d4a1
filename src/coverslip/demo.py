"""Write the demo images: a z-stack, a time series, a photo, a large mosaic and a ramp.

`coverslip demo` writes these into a staging folder and imports them into a "Demo"
dataset. Every image is synthetic and seeded, so one seed always gives the same pixels,
and the content is shaped like the real thing (nuclei, filaments, spots, defocus,
camera offset and noise) so that rendering, windows and projections look right.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class DemoFile:
    """One written demo file and how to import it."""

    path: Path
    name: str  # display name of the image
    axes: str | None  # only for .npy files, e.g. "TCZYX"


def write_demo_files(folder: Path, seed: int = 0) -> list[DemoFile]:
    """Write the demo set into folder and return what to import, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        DemoFile(folder / "cells.ome.tif", "Cells z-stack", None),
        DemoFile(folder / "timeseries.ome.tif", "Time series", None),
        DemoFile(folder / "photo.jpg", "Photo", None),
        DemoFile(folder / "mosaic.ome.tif", "Mosaic", None),
        DemoFile(folder / "gradient.npy", "Gradient 16-bit", "YX"),
    ]
    write_cells(files[0].path, seed=seed)
    write_time_series(files[1].path, seed=seed)
    write_photo(files[2].path, seed=seed)
    write_mosaic(files[3].path, seed=seed)
    write_gradient(files[4].path)
    return files


# -- shared pieces ----------------------------------------------------------------------

TILE = 256
CAMERA_OFFSET = 100.0  # counts a camera reports in the dark
CAMERA_MAX = 4095  # 12-bit sensor in a 16-bit container
# NOTE: zstd at a low level is several times faster than zlib on noisy 12-bit data and
# compresses about as well.
COMPRESSION = "zstd"
COMPRESSION_ARGS = {"level": 1}


def ome_color(rgb: str, alpha: int = 255) -> int:
    """Return the OME-XML Channel Color for "RRGGBB": RGBA packed as a signed 32-bit int."""
    value = (int(rgb, 16) << 8) | alpha
    return value - (1 << 32) if value >= 1 << 31 else value


def _camera(signal: np.ndarray, rng: np.random.Generator, gain: float = 0.8) -> np.ndarray:
    """Return 12-bit counts for a noiseless signal: dark offset, shot and read noise, clipping."""
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    # PERF: one Gaussian draw per pixel with the shot-noise variance instead of Poisson.
    sigma = np.sqrt(np.maximum(signal, 0.0) * gain + 4.0)
    counts = signal + sigma * noise + (CAMERA_OFFSET + 0.5)
    np.clip(counts, 0, CAMERA_MAX, out=counts)
    return counts.astype(np.uint16)


def _tiles(plane: np.ndarray, tile: int = TILE) -> Iterator[np.ndarray]:
    """Yield the tiles of a 2-D plane in the row-major order TIFF stores them."""
    height, width = plane.shape
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            yield plane[y : y + tile, x : x + tile]


def _vignette(height: int, width: int) -> np.ndarray:
    """Return the illumination falloff of a widefield microscope, 1 in the centre."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return 1.0 - 0.12 * (y * y + x * x)


@dataclass(frozen=True)
class _Blobs:
    """Anisotropic 3-D Gaussian objects: centres, lateral sigmas, half-thickness in planes."""

    y: np.ndarray
    x: np.ndarray
    z: np.ndarray
    amp: np.ndarray
    sy: np.ndarray
    sx: np.ndarray
    half: np.ndarray

    def render(self, out: np.ndarray, z: float, defocus: float, floor: float = 1.0) -> None:
        """Add the blobs as seen in plane z; defocus widens them by that many px per plane.

        A Gaussian blurred by a Gaussian stays Gaussian, so out-of-focus light is exact and
        each blob is drawn only into its own window.
        """
        dz = np.maximum(np.abs(z - self.z) - self.half, 0.0) * defocus
        sy = np.hypot(self.sy, dz)
        sx = np.hypot(self.sx, dz)
        amp = self.amp * (self.sy * self.sx) / (sy * sx)
        for i in np.flatnonzero(amp >= floor):
            _add_gaussian(out, self.y[i], self.x[i], amp[i], sy[i], sx[i])


def _add_gaussian(out: np.ndarray, y: float, x: float, amp: float, sy: float, sx: float) -> None:
    """Add a separable Gaussian into out, touching only the window where it is visible."""
    height, width = out.shape
    y0, y1 = max(int(y - 3.5 * sy), 0), min(int(y + 3.5 * sy) + 2, height)
    x0, x1 = max(int(x - 3.5 * sx), 0), min(int(x + 3.5 * sx) + 2, width)
    if y0 >= y1 or x0 >= x1:
        return
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - y) / sy) ** 2)
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - x) / sx) ** 2)
    out[y0:y1, x0:x1] += np.outer(gy * np.float32(amp), gx)


@dataclass(frozen=True)
class _Waves:
    """A smooth random field: a sum of plane waves with random directions and wavelengths."""

    ky: np.ndarray
    kx: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def random(
        cls, rng: np.random.Generator, count: int, shortest: float, longest: float
    ) -> _Waves:
        """Return count waves with wavelengths between shortest and longest (px), RMS ~1."""
        wavelength = np.exp(rng.uniform(math.log(shortest), math.log(longest), count))
        angle = rng.uniform(0.0, math.pi, count)
        k = 2.0 * math.pi / wavelength
        amp = np.full(count, math.sqrt(2.0 / count))
        return cls(k * np.sin(angle), k * np.cos(angle), rng.uniform(0, 2 * math.pi, count), amp)

    def grid(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Return the field on the grid ys × xs (float32)."""
        # PERF: cos(a + b) = cos a cos b - sin a sin b turns the sum into one small matrix
        # product. NOTE: einsum, not @: a threaded BLAS fighting the tile threads and
        # tifffile's encoders for two cores made `@` ten times slower.
        a = np.outer(ys, self.ky) + self.phase
        b = np.outer(xs, self.kx)
        left = np.concatenate([np.cos(a) * self.amp, np.sin(a) * self.amp], axis=1)
        right = np.concatenate([np.cos(b), -np.sin(b)], axis=1)
        return np.einsum("ik,jk->ij", left.astype(np.float32), right.astype(np.float32))

    def points(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return the field at scattered points."""
        arg = np.outer(y, self.ky) + np.outer(x, self.kx) + self.phase
        return np.cos(arg) @ self.amp


def _smoothstep(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Return 0 below lo, 1 above hi and a smooth S-curve between."""
    t = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# -- 1. cells z-stack -------------------------------------------------------------------

CELL_CHANNELS = (("DAPI", "0000FF", 461), ("GFP", "00FF00", 510), ("mCherry", "FF0000", 610))


def write_cells(path: Path, seed: int = 0, size: int = 1024, planes: int = 20) -> None:
    """Write a 3-channel 12-bit z-stack of cells (axes ZCYX) as a tiled OME-TIFF."""
    metadata = {
        "axes": "ZCYX",
        "Name": "Cells z-stack",
        "SignificantBits": 12,
        "PhysicalSizeX": 0.1625,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.1625,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 0.5,
        "PhysicalSizeZUnit": "µm",
        "Channel": _channel_metadata(CELL_CHANNELS),
    }
    tifffile.imwrite(
        path,
        data=_cells_tiles(size, planes, seed),
        shape=(planes, len(CELL_CHANNELS), size, size),
        dtype=np.uint16,
        tile=(TILE, TILE),
        compression=COMPRESSION,
        compressionargs=COMPRESSION_ARGS,
        photometric="minisblack",
        metadata=metadata,
        ome=True,
        maxworkers=2,
    )


def _channel_metadata(channels: tuple[tuple[str, str, int], ...]) -> dict[str, Any]:
    """Return tifffile's per-channel OME metadata for (name, RRGGBB, emission nm) triples."""
    return {
        "Name": [name for name, _, _ in channels],
        "Color": [ome_color(rgb) for _, rgb, _ in channels],
        "EmissionWavelength": [wave for _, _, wave in channels],
        "EmissionWavelengthUnit": ["nm"] * len(channels),
    }


def _cells_tiles(size: int, planes: int, seed: int) -> Iterator[np.ndarray]:
    """Yield the tiles of the z-stack plane by plane, channels innermost (ZCYX order)."""
    for plane in _cells_planes(size, planes, seed):
        for channel in plane:
            yield from _tiles(channel)


def _cells_planes(size: int, planes: int, seed: int) -> Iterator[np.ndarray]:
    """Yield each Z plane of the cells as a (3, size, size) uint16 array."""
    rng = np.random.default_rng([seed, 1])
    nuclei, chromatin = _nuclei(rng, size, planes)
    focus = 0.35 * (planes - 1)
    spots = _spots(rng, nuclei, size, planes)
    gfp = _gfp_in_focus(rng, nuclei, size)
    vignette = _vignette(size, size)
    noise = np.random.default_rng([seed, 2])
    blur = _DefocusBlur(gfp)
    for z in range(planes):
        dapi = np.full((size, size), 25.0, np.float32)
        nuclei.render(dapi, z, defocus=3.0)
        chromatin.render(dapi, z, defocus=3.0)
        green = blur(2.5 * max(abs(z - focus) - 1.0, 0.0)) + np.float32(40.0)
        red = np.full((size, size), 30.0, np.float32)
        spots.render(red, z, defocus=2.5, floor=2.0)
        yield np.stack([_camera(c * vignette, noise) for c in (dapi, green, red)])


def _nuclei(rng: np.random.Generator, size: int, planes: int) -> tuple[_Blobs, _Blobs]:
    """Return nuclei on a jittered grid and the bright chromatin clumps inside them."""
    pitch = 100.0
    n = max(int(size / pitch), 1)
    gy, gx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = rng.random(gy.size) < 0.8
    y = (gy.ravel()[keep] + 0.5) * size / n + rng.normal(0, 18, keep.sum())
    x = (gx.ravel()[keep] + 0.5) * size / n + rng.normal(0, 18, keep.sum())
    count = y.size
    sigma = rng.uniform(15, 22, count)
    aspect = rng.uniform(0.75, 1.3, count)
    mid = 0.45 * (planes - 1)
    nuclei = _Blobs(
        y=y,
        x=x,
        z=mid + rng.normal(0, 0.06 * planes, count),
        amp=rng.uniform(700, 1400, count),
        sy=sigma * aspect,
        sx=sigma / aspect,
        half=np.full(count, 0.15 * planes),
    )
    per = 5
    owner = np.repeat(np.arange(count), per)
    angle = rng.uniform(0, 2 * math.pi, owner.size)
    radius = rng.uniform(0, 0.8, owner.size) * sigma[owner]
    small = rng.uniform(2.5, 5.0, owner.size)
    chromatin = _Blobs(
        y=y[owner] + radius * np.sin(angle) * aspect[owner],
        x=x[owner] + radius * np.cos(angle) / aspect[owner],
        z=nuclei.z[owner] + rng.normal(0, 0.05 * planes, owner.size),
        amp=rng.uniform(250, 600, owner.size),
        sy=small,
        sx=small * rng.uniform(0.8, 1.25, owner.size),
        half=np.full(owner.size, 0.08 * planes),
    )
    return nuclei, chromatin


def _spots(rng: np.random.Generator, nuclei: _Blobs, size: int, planes: int) -> _Blobs:
    """Return diffraction-limited spots (vesicles) scattered in the cytoplasm around nuclei."""
    count = max(int(450 * (size / 1024) ** 2), 1)
    owner = rng.integers(0, nuclei.y.size, count)
    angle = rng.uniform(0, 2 * math.pi, count)
    radius = rng.uniform(1.6, 3.5, count) * nuclei.sy[owner]
    sigma = rng.uniform(1.2, 1.8, count)
    return _Blobs(
        y=nuclei.y[owner] + radius * np.sin(angle),
        x=nuclei.x[owner] + radius * np.cos(angle),
        z=rng.uniform(0.15, 0.85, count) * (planes - 1),
        amp=rng.lognormal(math.log(1200), 0.4, count),
        sy=sigma,
        sx=sigma,
        half=np.full(count, 0.3),
    )


def _gfp_in_focus(rng: np.random.Generator, nuclei: _Blobs, size: int) -> np.ndarray:
    """Return the in-focus GFP signal: cytoplasm around each nucleus, filaments, a gradient."""
    cytoplasm = np.zeros((size, size), np.float32)
    inside = np.zeros((size, size), np.float32)
    for i in range(nuclei.y.size):
        _add_gaussian(
            cytoplasm, nuclei.y[i], nuclei.x[i], 1.0, 2.6 * nuclei.sy[i], 2.6 * nuclei.sx[i]
        )
        _add_gaussian(inside, nuclei.y[i], nuclei.x[i], 1.0, nuclei.sy[i], nuclei.sx[i])
    cells = np.tanh(cytoplasm) ** 2 * (1.0 - 0.85 * np.minimum(inside, 1.0))
    axis = np.arange(size, dtype=np.float32)
    filaments = np.zeros((size, size), np.float32)
    for _ in range(3):
        field = _Waves.random(rng, 16, 90, 600).grid(axis, axis)
        filaments += np.exp(-((field / 0.045) ** 2))
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * axis[:, None] + np.sin(angle) * axis[None, :]) / size
    gradient = 1.0 + 0.5 * (ramp - ramp.min())
    return (cells * (200.0 + 380.0 * filaments) * gradient).astype(np.float32)


class _DefocusBlur:
    """Blur one image by Gaussians of any sigma, sharing one FFT; results are cached."""

    PAD = 96

    def __init__(self, image: np.ndarray) -> None:
        padded = np.pad(image, self.PAD, mode="reflect")
        self._image = image
        self._shape = padded.shape
        self._spectrum = np.fft.rfft2(padded)
        fy = np.fft.fftfreq(padded.shape[0]).astype(np.float32)
        fx = np.fft.rfftfreq(padded.shape[1]).astype(np.float32)
        self._f2 = fy[:, None] ** 2 + fx[None, :] ** 2
        self._cache: dict[float, np.ndarray] = {}

    def __call__(self, sigma: float) -> np.ndarray:
        """Return the image blurred by a Gaussian of this sigma (px)."""
        sigma = round(sigma, 3)
        if sigma <= 0:
            return self._image
        if sigma not in self._cache:
            transfer = np.exp(np.float32(-2.0 * math.pi**2 * sigma**2) * self._f2)
            blurred = np.fft.irfft2(self._spectrum * transfer, s=self._shape)
            pad = self.PAD
            self._cache[sigma] = blurred[pad:-pad, pad:-pad].astype(np.float32)
        return self._cache[sigma]


# -- 2. time series ---------------------------------------------------------------------

SERIES_CHANNELS = (("H2B-GFP", "00FF00", 510), ("LAMP1-mCherry", "FF00FF", 610))


def write_time_series(
    path: Path, seed: int = 0, frames: int = 8, planes: int = 3, size: int = 256
) -> None:
    """Write a 5-D (TCZYX) 12-bit time series of drifting nuclei and moving vesicles."""
    data = time_series(seed, frames, planes, size)
    metadata = {
        "axes": "TCZYX",
        "Name": "Time series",
        "SignificantBits": 12,
        "PhysicalSizeX": 0.325,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.325,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 1.0,
        "PhysicalSizeZUnit": "µm",
        "TimeIncrement": 60.0,
        "TimeIncrementUnit": "s",
        "Channel": _channel_metadata(SERIES_CHANNELS),
    }
    tifffile.imwrite(
        path,
        data,
        tile=(TILE, TILE),
        compression=COMPRESSION,
        compressionargs=COMPRESSION_ARGS,
        photometric="minisblack",
        metadata=metadata,
        ome=True,
    )


def time_series(seed: int = 0, frames: int = 8, planes: int = 3, size: int = 256) -> np.ndarray:
    """Return the time series as a (T, C, Z, Y, X) uint16 array."""
    rng = np.random.default_rng([seed, 3])
    nuclei = _Movers.random(rng, 14, size, speed=2.5, sigma=(8, 12), amp=(900, 1500))
    vesicles = _Movers.random(rng, 45, size, speed=5.0, sigma=(1.3, 1.8), amp=(700, 1600))
    nuclei_z = rng.normal(0.5 * (planes - 1), 0.3, 14)
    vesicles_z = rng.uniform(0, planes - 1, 45)
    noise = np.random.default_rng([seed, 4])
    out = np.empty((frames, 2, planes, size, size), np.uint16)
    for t in range(frames):
        for c, (movers, z0) in enumerate(((nuclei, nuclei_z), (vesicles, vesicles_z))):
            blobs = movers.at(t, z0, rng=np.random.default_rng([seed, 5, c, t]))
            for z in range(planes):
                signal = np.full((size, size), 30.0, np.float32)
                blobs.render(signal, z, defocus=4.0)
                out[t, c, z] = _camera(signal, noise)
    return out


@dataclass(frozen=True)
class _Movers:
    """Objects that drift with their own velocity and a little random jitter."""

    y: np.ndarray
    x: np.ndarray
    vy: np.ndarray
    vx: np.ndarray
    sigma: np.ndarray
    amp: np.ndarray
    size: int

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        count: int,
        size: int,
        speed: float,
        sigma: tuple[float, float],
        amp: tuple[float, float],
    ) -> _Movers:
        """Return count objects placed at random with random headings."""
        heading = rng.uniform(0, 2 * math.pi, count)
        v = rng.uniform(0.3, 1.0, count) * speed
        return cls(
            y=rng.uniform(0, size, count),
            x=rng.uniform(0, size, count),
            vy=v * np.sin(heading),
            vx=v * np.cos(heading),
            sigma=rng.uniform(*sigma, count),
            amp=rng.uniform(*amp, count),
            size=size,
        )

    def at(self, t: int, z: np.ndarray, rng: np.random.Generator) -> _Blobs:
        """Return the objects at frame t; they wrap around the field like a periodic culture."""
        jitter = 0.1 * self.sigma
        y = (self.y + t * self.vy + rng.normal(0, 1, self.y.size) * jitter) % self.size
        x = (self.x + t * self.vx + rng.normal(0, 1, self.x.size) * jitter) % self.size
        return _Blobs(y, x, z, self.amp, self.sigma, self.sigma, np.full(z.size, 0.3))


# -- 3. photo ---------------------------------------------------------------------------


def write_photo(path: Path, seed: int = 0, width: int = 800, height: int = 600) -> None:
    """Write a synthetic landscape photograph (RGB JPEG, quality 90)."""
    photo(seed, width, height).save(path, format="JPEG", quality=90)


def photo(seed: int = 0, width: int = 800, height: int = 600) -> Image.Image:
    """Return a landscape at dusk: sky, sun, two mountain ranges, a lake and trees."""
    rng = np.random.default_rng([seed, 6])
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    horizon = rng.uniform(0.55, 0.62)
    top, low = np.array([0.10, 0.22, 0.55]), np.array([1.0, 0.62, 0.35])
    t = np.clip(y / horizon, 0, 1) ** 1.5
    image = top * (1 - t) + low * t
    sun_x, sun_y = rng.uniform(0.25, 0.75), horizon - rng.uniform(0.12, 0.2)
    d2 = ((x - sun_x) * width / height) ** 2 + (y - sun_y) ** 2
    image = image + np.array([1.0, 0.8, 0.45]) * (0.55 * np.exp(-d2 / 0.02) + (d2 < 0.0016))
    clouds = _Waves.random(rng, 12, 0.15, 0.8).grid(y[:, 0, 0] * 3, x[0, :, 0])
    cloud_mask = (_smoothstep(clouds, 0.6, 1.4) * (y[..., 0] < horizon - 0.1))[..., None]
    image = image * (1 - 0.6 * cloud_mask) + np.array([1.0, 0.85, 0.8]) * 0.6 * cloud_mask
    for depth, colour in ((0.0, (0.42, 0.40, 0.55)), (1.0, (0.17, 0.25, 0.20))):
        ridge = horizon - (0.16 - 0.09 * depth) * (
            0.6 + 0.4 * _Waves.random(rng, 8, 0.08, 0.7).grid(np.zeros(1), x[0, :, 0])[0]
        )
        below = (y[..., 0] > ridge[None, :])[..., None]
        shade = np.array(colour) * (1.0 - 0.35 * (y - horizon + 0.2))
        image = np.where(below, shade, image)
    water = (y[..., 0] > horizon)[..., None]
    mirror = np.clip(2 * horizon - y, 0, 1)
    rows = np.clip((mirror[:, 0, 0] * (height - 1)).astype(int), 0, height - 1)
    ripples = 1 + 0.06 * np.sin(y * 900.0 + 3 * np.sin(x * 40.0))
    reflection = image[rows] * np.array([0.55, 0.65, 0.75]) * ripples
    image = np.where(water, reflection, image)
    image = image + rng.normal(0, 0.012, image.shape)
    pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(picture)
    shore = int(horizon * height)
    for _ in range(40):
        tx = int(rng.uniform(0, width))
        th = int(rng.uniform(0.05, 0.12) * height)
        tw = th // 3
        draw.polygon([(tx, shore - th), (tx - tw, shore + 2), (tx + tw, shore + 2)], (20, 45, 30))
    return picture.filter(ImageFilter.GaussianBlur(0.7))


# -- 4. mosaic --------------------------------------------------------------------------

MOSAIC_SIZE = 8192
_PITCH = 10  # px between lattice points that may hold a nucleus
_SPRITE = 7  # sprite half-width; a nucleus fits in 2 * _SPRITE + 1 px


def write_mosaic(path: Path, size: int = MOSAIC_SIZE, seed: int = 0) -> None:
    """Write a size × size 12-bit tissue section as a tiled OME-TIFF, one tile at a time."""
    tissue = _Tissue.random(seed, size)
    metadata = {
        "axes": "YX",
        "Name": "Mosaic",
        "SignificantBits": 12,
        "PhysicalSizeX": 0.5,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.5,
        "PhysicalSizeYUnit": "µm",
        "Channel": _channel_metadata((("DAPI", "0000FF", 461),)),
    }
    corners = [(ty, tx) for ty in range(0, size, TILE) for tx in range(0, size, TILE)]
    tifffile.imwrite(
        path,
        data=_in_order(tissue.tile, corners),
        shape=(size, size),
        dtype=np.uint16,
        tile=(TILE, TILE),
        compression=COMPRESSION,
        compressionargs=COMPRESSION_ARGS,
        photometric="minisblack",
        metadata=metadata,
        ome=True,
        maxworkers=2,
    )


def _in_order(
    make: Callable[[int, int], np.ndarray], corners: list[tuple[int, int]], ahead: int = 8
) -> Iterator[np.ndarray]:
    """Yield make(*corner) for each corner, computing a few ahead on a second thread."""
    # PERF: numpy releases the GIL in the heavy calls, so two threads make tiles nearly
    # twice as fast; the bounded queue keeps memory at a few tiles.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for corner in corners:
            pending.append(pool.submit(make, *corner))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _Tissue:
    """A DAPI-stained tissue section with structure at every scale, rendered per tile.

    Every quantity is a pure function of the global pixel position and the seed (smooth
    wave fields, a hashed lattice of nuclei), so tiles can be made in any order and
    agree at their borders.
    """

    def __init__(
        self, seed: int, size: int, waves: tuple[_Waves, _Waves, _Waves], sprites: np.ndarray
    ) -> None:
        self.seed = seed & 0xFFFFFFFF
        self.size = size
        self.low, self.mid, self.fine = waves
        self.sprites = sprites

    @classmethod
    def random(cls, seed: int, size: int) -> _Tissue:
        """Return the tissue for this seed and image size."""
        rng = np.random.default_rng([seed, 7])
        waves = (
            _Waves.random(rng, 8, size / 4, size),
            _Waves.random(rng, 12, 200, 900),
            _Waves.random(rng, 12, 25, 90),
        )
        return cls(seed, size, waves, _nucleus_sprites(rng, 16))

    def _section(self, y: np.ndarray, x: np.ndarray, low: np.ndarray) -> Any:
        """Return > 0 inside the tissue section, < 0 on the glass around it."""
        c = self.size / 2
        envelope = 1.0 - ((y - c) / (0.47 * self.size)) ** 2 - ((x - c) / (0.42 * self.size)) ** 2
        return envelope + 0.25 * low

    def _is_glass(self, ty: int, tx: int) -> bool:
        """Return whether a tile lies wholly outside the section (checked on a 16-px grid)."""
        y, x = np.meshgrid(np.arange(ty, ty + TILE + 1, 16.0), np.arange(tx, tx + TILE + 1, 16.0))
        y, x = y.ravel(), x.ravel()
        # NOTE: the section field's slope is below 40 / size per px and every pixel is
        # within 12 px of a grid point, so a margin of 500 / size cannot miss tissue.
        margin = 500.0 / self.size
        return bool(np.all(self._section(y, x, self.low.points(y, x)) < -margin))

    def density(self, y: np.ndarray, x: np.ndarray, low: np.ndarray, mid: np.ndarray) -> Any:
        """Return how likely a nucleus is at these positions (0 outside the tissue)."""
        section = _smoothstep(self._section(y, x, low), 0.0, 0.12)
        gland = _smoothstep(mid, 0.9, 1.1)
        rim = np.exp(-(((mid - 0.75) / 0.12) ** 2))
        return section * (1.0 - gland) * (0.35 + 0.55 * rim + 0.1 * low)

    def tile(self, ty: int, tx: int) -> np.ndarray:
        """Return the TILE × TILE uint16 tile whose top-left pixel is (ty, tx)."""
        rng = np.random.default_rng([self.seed, ty, tx])
        if self._is_glass(ty, tx):
            # PERF: much of a slide is bare glass; skip the fields and nuclei there.
            return _camera(np.full((TILE, TILE), 15.0, np.float32), rng)
        ys = np.arange(ty, ty + TILE, dtype=np.float32)
        xs = np.arange(tx, tx + TILE, dtype=np.float32)
        low, mid = self.low.grid(ys, xs), self.mid.grid(ys, xs)
        density = self.density(ys[:, None], xs[None, :], low, mid)
        fibres = np.exp(-((self.fine.grid(ys, xs) / 0.25) ** 2))
        signal = (
            (density > 0.02) * (90.0 + 70.0 * fibres + 40.0 * mid) * np.minimum(density * 3.0, 1.0)
        )
        signal = signal.astype(np.float32) + 15.0 + self._nuclei(ty, tx)
        return _camera(signal, rng)

    def _nuclei(self, ty: int, tx: int) -> np.ndarray:
        """Return the nuclei that reach into this tile, stamped from sprites."""
        first_i = (ty - _SPRITE) // _PITCH - 1
        first_j = (tx - _SPRITE) // _PITCH - 1
        count = TILE // _PITCH + 4
        rows, cols = np.meshgrid(
            np.arange(first_i, first_i + count), np.arange(first_j, first_j + count), indexing="ij"
        )
        i, j = rows.ravel(), cols.ravel()
        u = [_hash_uniform(i, j, self.seed, stream) for stream in range(5)]
        cy = ((i + u[0]) * _PITCH).astype(np.int64)
        cx = ((j + u[1]) * _PITCH).astype(np.int64)
        fy, fx = cy.astype(np.float64), cx.astype(np.float64)
        density = self.density(fy, fx, self.low.points(fy, fx), self.mid.points(fy, fx))
        keep = u[2] < density
        cy, cx = cy[keep] - ty, cx[keep] - tx
        amp = 500.0 + 1500.0 * u[3][keep]
        sprite = (u[4][keep] * len(self.sprites)).astype(np.int64)
        offsets = np.arange(-_SPRITE, _SPRITE + 1)
        py = (cy[:, None] + offsets[None, :])[:, :, None]
        px = (cx[:, None] + offsets[None, :])[:, None, :]
        inside = (py >= 0) & (py < TILE) & (px >= 0) & (px < TILE)
        # PERF: bincount sums the overlapping sprites far faster than np.add.at.
        flat = (py * TILE + px)[inside]
        weights = (self.sprites[sprite] * amp[:, None, None])[inside]
        return np.bincount(flat, weights, minlength=TILE * TILE).reshape(TILE, TILE)


def _nucleus_sprites(rng: np.random.Generator, count: int) -> np.ndarray:
    """Return count nucleus images (ellipses with a soft edge and some texture), peak ~1."""
    offsets = np.arange(-_SPRITE, _SPRITE + 1, dtype=np.float64)
    y, x = offsets[:, None], offsets[None, :]
    sprites = np.empty((count, offsets.size, offsets.size))
    for k in range(count):
        radius = rng.uniform(3.0, 5.0)
        aspect = rng.uniform(1.0, 1.6)
        angle = rng.uniform(0, math.pi)
        u = (np.cos(angle) * x + np.sin(angle) * y) / (radius * aspect)
        v = (-np.sin(angle) * x + np.cos(angle) * y) * aspect / radius
        body = 1.0 / (1.0 + np.exp((np.sqrt(u * u + v * v) - 1.0) * 6.0))
        sprites[k] = body * rng.uniform(0.75, 1.0, body.shape)
    return sprites


def _hash_uniform(i: np.ndarray, j: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Return uniform numbers in [0, 1) that depend only on (i, j, seed, stream)."""
    # splitmix64 finaliser; uint64 arithmetic wraps, which is what a hash wants.
    h = i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= j.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= np.uint64((seed * 0x100000001B3 + stream * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# -- 5. gradient ------------------------------------------------------------------------


def write_gradient(path: Path, size: int = 512) -> None:
    """Write a 16-bit ramp (.npy, axes YX): 0 at the left edge to 65535 at the right.

    It does not depend on the seed: it is a test pattern for windows and lookup tables.
    """
    np.save(path, gradient(size))


def gradient(size: int = 512) -> np.ndarray:
    """Return a size × size uint16 ramp along X covering the full 16-bit range."""
    ramp = np.round(np.linspace(0.0, 65535.0, size)).astype(np.uint16)
    return np.ascontiguousarray(np.broadcast_to(ramp, (size, size)))
