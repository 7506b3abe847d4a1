"""Render what a request asks for: choose the pyramid level, read, project, render, resize, encode.

The web layer resolves who asks and which settings apply; this module only needs the
image record, its open pyramid and a RenderingDef. It never touches the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from coverslip.catalog.records import Image
from coverslip.errors import BadParameter
from coverslip.pixels import Pyramid
from coverslip.render.encode import encode
from coverslip.render.kernel import render
from coverslip.render.projection import project
from coverslip.render.settings import RenderingDef


@dataclass(frozen=True)
class Region:
    """A rectangle in full-resolution pixels."""

    x: int
    y: int
    width: int
    height: int


def thumbnail_size(
    image: Image, width: int | None, height: int | None, default: int
) -> tuple[int, int]:
    """Return the output size of a thumbnail: ``width`` alone is the longest side, both are exact."""
    if width is not None and height is not None:
        return width, height
    longest = width or default
    if image.size_x >= image.size_y:
        return longest, max(1, round(longest * image.size_y / image.size_x))
    return max(1, round(longest * image.size_x / image.size_y)), longest


def check_plane(image: Image, z: int, t: int) -> None:
    """Raise BadParameter unless (z, t) is a plane of ``image``."""
    if not 0 <= z < image.size_z:
        raise BadParameter("z", f"{z} is outside 0..{image.size_z - 1}")
    if not 0 <= t < image.size_t:
        raise BadParameter("t", f"{t} is outside 0..{image.size_t - 1}")


def tile_region(
    image: Image, pyramid: Pyramid, level: int, tx: int, ty: int, width: int, height: int
) -> tuple[int, Region]:
    """Return (level, region at that level) of tile (tx, ty) of ``level`` (0 = full resolution)."""
    if not 0 <= level < len(pyramid.levels):
        raise BadParameter(
            "tile", f"level {level} does not exist (this image has 0..{len(pyramid.levels) - 1})"
        )
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
        if rdef.projection != "normal" and image.size_z > 1:
            start = rdef.projection_start if rdef.projection_start is not None else 0
            end = rdef.projection_end if rdef.projection_end is not None else image.size_z - 1
            start, end = max(0, min(start, end)), min(image.size_z - 1, max(start, end))
            zs = range(start, end + 1)
            for c in active:
                stack = pyramid.read_planes(level, [(t, c, zz) for zz in zs], ys, xs)
                planes[c] = project(stack, rdef.projection, image.pixel_type)
            return planes
        data = pyramid.read_planes(level, [(t, c, z) for c in active], ys, xs)
        for index, c in enumerate(active):
            planes[c] = data[index]
        return planes

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
            region = Region(x0, y0, x1 - x0, y1 - y0)
        planes = self.planes(image, pyramid, rdef, z, t, level, region)
        rgb = render(planes, rdef, image.pixel_type, shape=(region.height, region.width))
        if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
            rgb = np.asarray(PILImage.fromarray(rgb).resize(size, PILImage.Resampling.BOX))
        return rgb

    def thumbnail(
        self,
        image: Image,
        pyramid: Pyramid,
        rdef: RenderingDef,
        z: int,
        t: int,
        size: tuple[int, int],
    ) -> bytes:
        """Return a JPEG thumbnail of plane (z, t) at exactly ``size``."""
        whole = Region(0, 0, image.size_x, image.size_y)
        return encode(self.rgb(image, pyramid, rdef, z, t, whole, size), "jpeg", 0.9)
