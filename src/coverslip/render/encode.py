"""Encode an RGB picture as JPEG, PNG or TIFF with Pillow (libjpeg-turbo, zlib)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from coverslip.render.settings import parse_format

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "tif": "image/tiff"}
# PERF: zlib level 1 is several times faster than Pillow's default 6 on rendered planes
# and costs little size (measured on 512² renders).
PNG_COMPRESS_LEVEL = 1


def content_type(fmt: str) -> str:
    """Return the media type of ``fmt`` (jpeg/jpg, png, tif/tiff)."""
    return CONTENT_TYPES[parse_format(fmt)]


def jpeg_quality(quality: float) -> int:
    """Return the libjpeg quality (1..100) for OMERO's compression quality ``quality`` (0..1).

    OMERO hands ``q`` to Java ImageIO as the JPEG compression quality, which scales the
    standard quantization tables as libjpeg quality ``q × 100`` does.
    """
    return max(1, min(100, round(quality * 100)))


def encode(rgb: np.ndarray, fmt: str, quality: float = 0.9) -> bytes:
    """Return ``rgb`` ((H, W, 3) or (H, W) uint8) encoded as ``fmt`` (jpeg, png or tif).

    Greyscale renders arrive as RGB with R = G = B and are encoded as RGB, as OMERO does.
    """
    kind = parse_format(fmt)
    mode = "L" if rgb.ndim == 2 else "RGB"
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode)
    buffer = io.BytesIO()
    if kind == "jpeg":
        image.save(buffer, "JPEG", quality=jpeg_quality(quality))
    elif kind == "png":
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        image.save(buffer, "TIFF")  # uncompressed
    return buffer.getvalue()
