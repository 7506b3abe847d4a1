"""Encode a rendered picture as JPEG (libjpeg-turbo through simplejpeg), PNG, TIFF or WebP (Pillow).

The one encoder and the one format table: every surface (gateway, IIIF, thumbnails) encodes here.
"""

from __future__ import annotations

import io
import time
from typing import NamedTuple

import numpy as np
import simplejpeg
from PIL import Image

from coverslip.metrics import metrics
from coverslip.render.settings import parse_format


class Format(NamedTuple):
    """An output format: Pillow's name for it and its media type."""

    pillow: str
    media_type: str


FORMATS = {
    "jpeg": Format("JPEG", "image/jpeg"),
    "png": Format("PNG", "image/png"),
    "tif": Format("TIFF", "image/tiff"),
    "webp": Format("WEBP", "image/webp"),
}
CONTENT_TYPES = {name: found.media_type for name, found in FORMATS.items()}
# PERF: zlib level 1 is several times faster than Pillow's default 6 on rendered planes
# and costs little size (measured on 512² renders).
PNG_COMPRESS_LEVEL = 1


def format_of(fmt: str) -> str:
    """Return the table's name of ``fmt``: a name of FORMATS, or an alias the gateway reads (jpg, tiff)."""
    return fmt if fmt in FORMATS else parse_format(fmt)


def content_type(fmt: str) -> str:
    """Return the media type of ``fmt`` (jpeg/jpg, png, tif/tiff, webp)."""
    return FORMATS[format_of(fmt)].media_type


def jpeg_quality(quality: float) -> int:
    """Return the libjpeg quality (1..100) for OMERO's compression quality ``quality`` (0..1).

    OMERO hands ``q`` to Java ImageIO as the JPEG compression quality, which scales the
    standard quantization tables as libjpeg quality ``q × 100`` does.
    """
    return max(1, min(100, round(quality * 100)))


def encode(
    picture: np.ndarray | Image.Image, fmt: str, quality: float = 0.9, full_chroma: bool = False
) -> bytes:
    """Return ``picture`` encoded as ``fmt`` (jpeg, png, tif or webp).

    ``picture`` is an (H, W, 3) or (H, W) uint8 array, or a Pillow image of any mode (IIIF's
    gray and bitonal). Greyscale renders arrive as RGB with R = G = B and are encoded as RGB,
    as OMERO does. ``full_chroma`` keeps JPEG colour at 4:4:4 instead of libjpeg's 4:2:0.
    """
    started = time.perf_counter()
    try:
        return _encode(picture, FORMATS[format_of(fmt)].pillow, quality, full_chroma)
    finally:
        metrics().encode.observe(time.perf_counter() - started)


def _encode(
    picture: np.ndarray | Image.Image, kind: str, quality: float, full_chroma: bool
) -> bytes:
    if kind == "JPEG" and not isinstance(picture, Image.Image):
        # PERF: libjpeg-turbo reads the array as it is; Pillow first copies an RGB array
        # into its own 4-byte pixels, which took a quarter of a 256² tile's encoding.
        pixels = np.ascontiguousarray(picture, dtype=np.uint8)
        grey = pixels.ndim == 2
        return simplejpeg.encode_jpeg(
            pixels[..., np.newaxis] if grey else pixels,
            quality=jpeg_quality(quality),
            colorspace="GRAY" if grey else "RGB",
            colorsubsampling="444" if full_chroma or grey else "420",
        )
    if isinstance(picture, Image.Image):
        image = picture
    else:
        mode = "L" if picture.ndim == 2 else "RGB"
        image = Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8), mode)
    buffer = io.BytesIO()
    if kind == "JPEG":
        options = {"subsampling": 0} if full_chroma else {}
        image.save(buffer, "JPEG", quality=jpeg_quality(quality), **options)
    elif kind == "PNG":
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif kind == "WEBP":
        image.save(buffer, "WEBP", quality=jpeg_quality(quality))
    else:
        image.save(buffer, "TIFF")  # uncompressed
    return buffer.getvalue()
