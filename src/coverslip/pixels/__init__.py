"""The pixel store: OME-Zarr 0.5 pyramids, written band by band and read by region.

Each image is a Zarr v3 group holding one 5-D array per level (T, C, Z, Y, X). Level 0 is
full size; each further level halves Y and X by a 2×2 mean until the longest side fits one
tile. Chunks are one tile of one plane, so a tile read decodes exactly one chunk.
"""

from __future__ import annotations

from coverslip.pixels.pyramid import DamagedPixels, Pyramid, PyramidError, level_shapes
from coverslip.pixels.store import PixelStore
from coverslip.pixels.writer import PyramidWriter, downsample

__all__ = [
    "DamagedPixels",
    "PixelStore",
    "Pyramid",
    "PyramidError",
    "PyramidWriter",
    "downsample",
    "level_shapes",
]
