"""Render what a request asks for: choose the pyramid level, read, project, render, resize, encode.

The web layer resolves who asks and which settings apply; this module only needs the
image record, its open pyramid and a RenderingDef. It never touches the database.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from coverslip.errors import BadParameter
from coverslip.metrics import metrics
from coverslip.model import Image
from coverslip.pixels import Pyramid
from coverslip.render.encode import encode
from coverslip.render.kernel import render
from coverslip.render.projection import project
from coverslip.render.settings import RenderingDef


def projected_planes(rdef: RenderingDef, size_z: int) -> range | None:
    """Return the Z planes the settings project (their range clipped to the image), or None
    when they show one plane: no projection, or a single-plane image."""
    if rdef.projection == "normal" or size_z <= 1:
        return None
    start = rdef.projection_start if rdef.projection_start is not None else 0
    end = rdef.projection_end if rdef.projection_end is not None else size_z - 1
    start, end = max(0, min(start, end)), min(size_z - 1, max(start, end))
    return range(start, end + 1)


@dataclass(frozen=True)
class Region:
    """A rectangle in full-resolution pixels."""

    x: int
    y: int
    width: int
    height: int


# OMERO's omero.pixeldata.max_plane_width × max_plane_height defaults: an image whose planes
# have more pixels is a "big image" there, read through a pyramid; any other has one resolution.
MAX_PLANE_WIDTH = MAX_PLANE_HEIGHT = 3192
THUMBNAIL_QUALITY = 0.85  # OMERO's default JPEG compression level (thumbnails and render_image)


def is_big(image: Image) -> bool:
    """Return whether OMERO would serve ``image`` through a pyramid (PixelsService.requiresPixelsPyramid)."""
    return image.size_x * image.size_y > MAX_PLANE_WIDTH * MAX_PLANE_HEIGHT


def resolution_count(image: Image, pyramid: Pyramid) -> int:
    """Return how many resolutions OMERO would give ``image``: the pyramid's when big, else 1.

    NOTE: Coverslip stores levels for every image larger than a tile; OMERO has them only for big
    images (and, unlike here, never for float images), so smaller images report one resolution.
    """
    return len(pyramid.levels) if is_big(image) else 1


def thumbnail_size(
    image: Image, width: int | None, height: int | None, default: int
) -> tuple[int, int]:
    """Return the output size of a thumbnail: ``width`` alone is the longest side, both are exact.

    The short side is truncated in 32-bit floats, as OMERO's ThumbnailCtx.calculateXYWidths does.
    """
    if width is not None and height is not None:
        return width, height
    longest = width or default
    if image.size_x > image.size_y:
        ratio = np.float32(longest) / np.float32(image.size_x)
        return longest, max(1, int(np.float32(image.size_y) * ratio))
    ratio = np.float32(longest) / np.float32(image.size_y)
    return max(1, int(np.float32(image.size_x) * ratio)), longest


def thumbnail_level(pyramid: Pyramid, resolutions: int, size: tuple[int, int]) -> int:
    """Return the level a thumbnail of ``size`` is scaled from, as OMERO's ThumbnailBean picks it.

    From full resolution down, the first level with a side at or below the thumbnail's; the
    smallest level when none is; level 0 for an image with one resolution.
    """
    for level in range(resolutions):
        lv = pyramid.levels[level]
        if lv.width <= size[0] or lv.height <= size[1]:
            return level
    return resolutions - 1


_F32 = np.float32
_PI = _F32(np.pi)


def _lanczos3(value: float) -> np.float32:
    """Return java-image-scaling's Lanczos3Filter.apply(value), in its float/double mix."""
    if value == 0:
        return _F32(1.0)
    v = _F32(abs(value))
    if v >= 3:
        return _F32(0.0)
    v = _F32(v * _PI)
    return _F32(
        3.0
        * np.sin(np.float64(v))
        * np.sin(np.float64(_F32(v / _F32(3))))
        / np.float64(_F32(v * v))
    )


def _resample_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (pixels, weights), each (dst, K): ResampleOp's SubSamplingData for Lanczos3.

    Padded taps have weight 0. Edges mirror: pixel -1 reads 1, pixel ``src`` reads ``src - 1``.
    """
    scale = _F32(dst) / _F32(src)
    radius = _F32(3.0)
    if scale < 1:
        size = _F32(radius / scale)
        norm = _F32(1.0 / (np.ceil(np.float64(size)) / np.float64(radius)))
    else:
        size, norm = radius, _F32(1.0)
    step = _F32(_F32(1.0) / scale)
    center = _F32(_F32(0.5) / scale)
    rows: list[tuple[list[int], list[np.float32]]] = []
    for _pixel in range(dst):
        picks: list[int] = []
        weights: list[np.float32] = []
        total = _F32(0.0)
        for current in range(int(center - size), int(float(center) + float(size) + 1.0) + 1):
            weight = _lanczos3(float(_F32(_F32(center - _F32(current)) * norm)))
            if weight != 0:
                pick = -current if current < 0 else current
                if current >= src:
                    pick = src - current + src - 1
                picks.append(min(max(pick, 0), src - 1))
                weights.append(weight)
                total = _F32(total + weight)
        if total != 0:
            weights = [_F32(w / total) for w in weights]
        rows.append((picks, weights))
        center = _F32(center + step)
    width = max(len(p) for p, _ in rows)
    pixels = np.zeros((dst, width), dtype=np.intp)
    table = np.zeros((dst, width), dtype=np.float32)
    for index, (picks, weights) in enumerate(rows):
        pixels[index, : len(picks)] = picks
        table[index, : len(weights)] = weights
    return pixels, table


def _resample_axis(values: np.ndarray, pixels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Resample axis 0 of uint8 ``values``: float32 sums in ResampleOp's order, then to bytes."""
    out = np.zeros((pixels.shape[0], *values.shape[1:]), dtype=np.float32)
    shape = (pixels.shape[0],) + (1,) * (values.ndim - 1)
    for k in range(pixels.shape[1]):
        out += values[pixels[:, k]].astype(np.float32) * weights[:, k].reshape(shape)
    # toByte: below 0 is 0, above 255 is 255, else (byte)(f + 0.5f).
    return np.where(out < 0, 0, np.where(out > 255, 255, np.floor(out + _F32(0.5)))).astype(
        np.uint8
    )


def resample(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an (H, W, 3) uint8 picture to ``width`` × ``height`` as OMERO scales thumbnails.

    OMERO's IScale is JavaImageScalingService: java-image-scaling's ResampleOp (Lanczos3,
    mirrored edges, normalised weights), horizontally into 8-bit, then vertically into 8-bit.
    """
    across = _resample_taps(rgb.shape[1], width)
    down = _resample_taps(rgb.shape[0], height)
    work = _resample_axis(np.ascontiguousarray(rgb.transpose(1, 0, 2)), *across)
    return _resample_axis(np.ascontiguousarray(work.transpose(1, 0, 2)), *down)


def scaled_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """Return the size IScale gives a ``width`` × ``height`` picture scaled to ``size`` (at least 3)."""
    fx = np.float32(size[0]) / np.float32(width)
    fy = np.float32(size[1]) / np.float32(height)
    return max(3, int(np.float32(width) * fx)), max(3, int(np.float32(height) * fy))


def check_plane(image: Image, z: int, t: int) -> None:
    """Raise BadParameter unless (z, t) is a plane of ``image``."""
    if not 0 <= z < image.size_z:
        raise BadParameter("z", f"{z} is outside 0..{image.size_z - 1}")
    if not 0 <= t < image.size_t:
        raise BadParameter("t", f"{t} is outside 0..{image.size_t - 1}")


def tile_region(
    image: Image, pyramid: Pyramid, level: int, tx: int, ty: int, width: int, height: int
) -> tuple[int, Region]:
    """Return (level, region at that level) of tile (tx, ty) of ``level`` (0 = full resolution).

    The levels are the image's resolutions as OMERO counts them (``resolution_count``): an
    image with one resolution has only level 0, as in OMERO's render_image_region.
    """
    count = resolution_count(image, pyramid)
    if level < 0 or level >= count:
        have = "only level 0 (one resolution)" if count == 1 else f"levels 0..{count - 1}"
        raise BadParameter("tile", f"level {level} does not exist (this image has {have})")
    lv = pyramid.levels[level]
    tile_w = width if width > 0 else image.tile_size
    tile_h = height if height > 0 else image.tile_size
    x, y = tx * tile_w, ty * tile_h
    if tx < 0 or ty < 0 or x >= lv.width or y >= lv.height:
        raise BadParameter(
            "tile", f"tile {tx},{ty} is outside level {level} ({lv.width}×{lv.height})"
        )
    return level, Region(x, y, min(tile_w, lv.width - x), min(tile_h, lv.height - y))


def check_region(image: Image, region: Region) -> Region:
    """Clip ``region`` to the image; raise BadParameter when nothing of it is inside."""
    x0, y0 = max(0, region.x), max(0, region.y)
    x1, y1 = min(image.size_x, region.x + region.width), min(image.size_y, region.y + region.height)
    if region.width <= 0 or region.height <= 0 or x1 <= x0 or y1 <= y0:
        raise BadParameter(
            "region", f"{region.x},{region.y},{region.width},{region.height} is outside the image"
        )
    return Region(x0, y0, x1 - x0, y1 - y0)


SPLIT_BORDER = 2
SPLIT_MAX = 2048


def split_layout(image: Image, active: int) -> dict[str, int]:
    """Return the grid of a split-channel view: one pane per active channel plus the merge."""
    panes = active + 1
    cols = math.ceil(math.sqrt(panes))
    rows = math.ceil(panes / cols)
    scale = min(
        1.0,
        (SPLIT_MAX - SPLIT_BORDER * (cols + 1)) / (cols * image.size_x),
        (SPLIT_MAX - SPLIT_BORDER * (rows + 1)) / (rows * image.size_y),
    )
    pane_w, pane_h = max(1, int(image.size_x * scale)), max(1, int(image.size_y * scale))
    return {
        "pane_width": pane_w,
        "pane_height": pane_h,
        "border": SPLIT_BORDER,
        "gridx": cols,
        "gridy": rows,
        "width": cols * pane_w + (cols + 1) * SPLIT_BORDER,
        "height": rows * pane_h + (rows + 1) * SPLIT_BORDER,
    }


class Renderer:
    """Turn (image, settings, plane, region, size) into pixels and bytes."""

    def __init__(self, max_pixels: int = 64 * 1024 * 1024) -> None:
        self.max_pixels = max_pixels

    def planes(
        self,
        image: Image,
        pyramid: Pyramid,
        rdef: RenderingDef,
        z: int,
        t: int,
        level: int,
        region: Region,
    ) -> list[np.ndarray | None]:
        """Read the planes the active channels need from ``level`` (region in that level's pixels)."""
        active = [c for c, ch in enumerate(rdef.channels) if ch.active]
        if rdef.model == "greyscale":
            active = active[:1]
        ys, xs = slice(region.y, region.y + region.height), slice(region.x, region.x + region.width)
        planes: list[np.ndarray | None] = [None] * image.size_c
        if not active:
            return planes
        zs = projected_planes(rdef, image.size_z)
        if zs is not None:
            for c in active:
                stack = pyramid.read_planes(level, [(t, c, zz) for zz in zs], ys, xs)
                planes[c] = project(stack, rdef.projection, image.pixel_type)
            return planes
        data = pyramid.read_planes(level, [(t, c, z) for c in active], ys, xs)
        for index, c in enumerate(active):
            planes[c] = data[index]
        return planes

    def level_region(
        self,
        image: Image,
        pyramid: Pyramid,
        region: Region,
        size: tuple[int, int] | None = None,
    ) -> tuple[int, Region]:
        """Return the level ``rgb`` reads for ``region`` (full-resolution pixels) at ``size``,
        and the region of that level it reads: the coarsest level with the output's resolution."""
        out_w, out_h = size or (region.width, region.height)
        if out_w * out_h > self.max_pixels:
            raise BadParameter(
                "size",
                f"{out_w}×{out_h} is larger than {self.max_pixels} pixels; ask for a region or tiles",
            )
        level = pyramid.level_for(max(out_w / region.width, out_h / region.height))
        lv = pyramid.levels[level]
        fx, fy = lv.width / image.size_x, lv.height / image.size_y
        x0, y0 = math.floor(region.x * fx), math.floor(region.y * fy)
        x1 = min(lv.width, max(x0 + 1, math.ceil((region.x + region.width) * fx)))
        y1 = min(lv.height, max(y0 + 1, math.ceil((region.y + region.height) * fy)))
        return level, Region(x0, y0, x1 - x0, y1 - y0)

    def rgb(
        self,
        image: Image,
        pyramid: Pyramid,
        rdef: RenderingDef,
        z: int,
        t: int,
        region: Region,
        size: tuple[int, int] | None = None,
        level: int | None = None,
    ) -> np.ndarray:
        """Return the RGB array of ``region`` (full-resolution pixels, or pixels of ``level``) at ``size``.

        Reads the coarsest level that still has at least the output's resolution.
        """
        check_plane(image, z, t)
        if level is None:
            level, region = self.level_region(image, pyramid, region, size)
        found = metrics()
        started = time.perf_counter()
        planes = self.planes(image, pyramid, rdef, z, t, level, region)
        read = time.perf_counter()
        found.read.observe(read - started)
        rgb = render(planes, rdef, image.pixel_type, shape=(region.height, region.width))
        if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
            rgb = np.asarray(PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BOX))
        found.render.observe(time.perf_counter() - read)
        return rgb

    def thumbnail_rgb(
        self,
        image: Image,
        pyramid: Pyramid,
        rdef: RenderingDef,
        z: int,
        t: int,
        size: tuple[int, int],
    ) -> np.ndarray:
        """Return the thumbnail pixels of plane (z, t) at ``size``, as OMERO's ThumbnailBean makes them.

        The plane of ``thumbnail_level`` is rendered whole, then scaled by ``resample``.
        # PERF: an image with one resolution (up to 3192² pixels) is read whole, as in OMERO.
        """
        level = thumbnail_level(pyramid, resolution_count(image, pyramid), size)
        lv = pyramid.levels[level]
        rgb = self.rgb(image, pyramid, rdef, z, t, Region(0, 0, lv.width, lv.height), level=level)
        return resample(rgb, *scaled_size(lv.width, lv.height, size))

    def thumbnail(
        self,
        image: Image,
        pyramid: Pyramid,
        rdef: RenderingDef,
        z: int,
        t: int,
        size: tuple[int, int],
    ) -> bytes:
        """Return a JPEG thumbnail of plane (z, t) at ``size``, at OMERO's default quality."""
        rgb = self.thumbnail_rgb(image, pyramid, rdef, z, t, size)
        return encode(rgb, "jpeg", THUMBNAIL_QUALITY)
