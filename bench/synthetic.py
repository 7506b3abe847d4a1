"""Seeded test images for the tile benchmarks: an H&E-like RGB slide and a 3-channel mosaic.

Both come from the same fields (a tissue section with a ragged edge, stroma of varying
density, fibres, ~1 nucleus per 220 px inside the tissue, camera noise), so neither is flat
and JPEG tiles of them are about as large as tiles of real slides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

TILE = 256
# Optical densities of haematoxylin and eosin per R, G, B (Ruifrok & Johnston's vectors).
HEMATOXYLIN = (0.65, 0.70, 0.29)
EOSIN = (0.07, 0.99, 0.11)


@dataclass
class Fields:
    """The stains of one section, each size × size float32 in about 0..1."""

    tissue: np.ndarray
    eosin: np.ndarray
    nuclei: np.ndarray
    fibres: np.ndarray


def fields(size: int, seed: int = 0) -> Fields:
    """Return the seeded fields of a size × size section."""
    rng = np.random.default_rng(seed)
    factor = 16
    small = size // factor

    def smooth(sigma: float, side: int = small) -> np.ndarray:
        noise = rng.standard_normal((side, side)).astype(np.float32)
        field = ndimage.gaussian_filter(noise, sigma)
        return field / field.std()

    def up(field: np.ndarray, by: int) -> np.ndarray:
        return ndimage.zoom(field, by, order=1, grid_mode=True, mode="nearest")

    yy, xx = np.mgrid[0:small, 0:small].astype(np.float32) / small - 0.5
    envelope = 1 - (yy / 0.45) ** 2 - (xx / 0.4) ** 2 + 0.35 * smooth(20)
    tissue = up(np.clip(envelope * 6, 0, 1), factor)
    eosin = tissue * up(0.35 + 0.12 * smooth(6) + 0.08 * smooth(2), factor)
    fibres = tissue * np.abs(up(smooth(1.5, size // 4), 4))
    count = size * size // 220
    ys, xs = rng.integers(0, size, count), rng.integers(0, size, count)
    keep = rng.random(count) < tissue[ys, xs]
    nuclei = np.zeros((size, size), np.float32)
    nuclei[ys[keep], xs[keep]] = rng.uniform(60, 120, int(keep.sum()))
    nuclei = np.minimum(ndimage.gaussian_filter(nuclei, 2.6), 1.3)
    return Fields(tissue, eosin, nuclei, fibres)


def slide_rgb(f: Fields, seed: int = 0) -> np.ndarray:
    """Return the section as a brightfield H&E RGB uint8 image (Beer-Lambert, plus noise)."""
    rng = np.random.default_rng([seed, 1])
    hema = f.nuclei + 0.08 * f.tissue
    eosin = f.eosin + 0.12 * f.fibres
    rgb = np.empty((*f.tissue.shape, 3), np.uint8)
    for c in range(3):
        od = HEMATOXYLIN[c] * hema + EOSIN[c] * eosin + 0.03
        channel = 255 * np.exp(-od) + rng.normal(0, 3, od.shape).astype(np.float32)
        rgb[..., c] = np.clip(channel, 0, 255)
    return rgb


def mosaic16(f: Fields, seed: int = 0) -> np.ndarray:
    """Return the section as a 3-channel 12-bit fluorescence mosaic (C, Y, X) uint16."""
    rng = np.random.default_rng([seed, 2])
    signals = (
        (f.nuclei, 2800.0),  # DAPI
        (f.eosin, 3000.0),  # a cytoplasm stain
        (f.fibres, 1500.0),  # collagen
    )
    out = np.empty((3, *f.tissue.shape), np.uint16)
    for c, (signal, gain) in enumerate(signals):
        photons = 100 + gain * np.maximum(signal, 0)
        noisy = photons + rng.normal(0, 1, photons.shape).astype(np.float32) * np.sqrt(photons)
        out[c] = np.clip(noisy, 0, 4095)
    return out


def halve(image: np.ndarray) -> np.ndarray:
    """Return the 2 × 2 mean of a (Y, X, S) uint8 image."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1)
    return blocks.mean(axis=(1, 3), dtype=np.float32).round().astype(image.dtype)


def write_jpeg_pyramid(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    """Write a tiled JPEG pyramid TIFF: one page per level, halved until it fits one tile.

    NOTE: IIPImage 1.1 finds the levels as the file's further pages (not SubIFDs); marking
    them reduced-resolution (SubfileType 1) lets tifffile, and so Coverslip, read them as
    the levels of one image.
    """
    level = rgb
    with tifffile.TiffWriter(path) as tif:
        for index in range(64):
            tif.write(
                level,
                tile=(TILE, TILE),
                compression="jpeg",
                compressionargs={"level": quality},
                photometric="rgb",
                subfiletype=0 if index == 0 else 1,
                metadata=None,
            )
            if max(level.shape[:2]) <= TILE:
                break
            level = halve(level)


def write_mosaic(path: Path, channels: np.ndarray) -> None:
    """Write a (C, Y, X) uint16 mosaic as a tiled, zstd-compressed OME-TIFF."""
    tifffile.imwrite(
        path,
        channels,
        tile=(TILE, TILE),
        compression="zstd",
        compressionargs={"level": 1},
        photometric="minisblack",
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "Cytoplasm", "Collagen"]}},
    )
