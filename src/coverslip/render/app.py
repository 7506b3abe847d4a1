"""The render service: every rendering answer of every surface, below the web layer.

The gateway, IIIF, the histogram and the import-time thumbnail all ask ``RenderService``: it
finds the image the caller may see (404 otherwise), resolves whose settings apply, computes
the cache key, reads or fills the render cache and renders and encodes. Web resources only
parse parameters, map errors to HTTP and answer ETags and 304s. Nothing here imports Falcon
or the catalog: records, visibility and the cache are passed in.

# PERF: a cached answer costs a cached metadata lookup, the settings lookups, one hash and
# one cache read; parsed settings are kept per settings version and the pyramid opens only
# when pixels are needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, Protocol

import numpy as np
from PIL import Image as PILImage

from coverslip.cache import RenderCache, make_key, settings_tag, thumbnail_key
from coverslip.errors import BadParameter, Conflict, Damaged
from coverslip.formats import ome_rois
from coverslip.metrics import metrics
from coverslip.model import Image
from coverslip.pixels import DamagedPixels, PixelStore, Pyramid, PyramidError
from coverslip.render.encode import content_type, encode
from coverslip.render.kernel import unchanged_rgb
from coverslip.render.projection import project
from coverslip.render.service import (
    MAX_PLANE_HEIGHT,
    MAX_PLANE_WIDTH,
    Region,
    Renderer,
    check_plane,
    check_region,
    projected_planes,
    split_layout,
    thumbnail_size,
    tile_region,
)
from coverslip.render.settings import RenderingDef, apply_query, default_def
from coverslip.render.source import Sources

# The rendering query parameters of the gateway; routes pass the ones they take.
RENDER_PARAMS = ("c", "m", "maps", "p")
_PARSED_MAX = 4096


class Records(Protocol):
    """The image records and saved settings the service reads (a CachedCatalog)."""

    def rdef(self, image_id: int, user_id: int) -> tuple[int, dict[str, Any]] | None: ...


class Caller(Protocol):
    """Who asks (``coverslip.auth.Caller``); anonymous callers have no user id."""

    @property
    def user_id(self) -> int | None: ...


# ``Auth.visible_image``: the image record if the caller may read it, else NotFound.
VisibleImage = Callable[[Any, int], Image]
IsPublic = Callable[[Image], bool]


class View:
    """One image as one request sees it: which plane, with which settings.

    The pyramid opens only when pixels are needed, so a cached answer touches no pixel store.
    """

    def __init__(
        self,
        image: Image,
        rdef: RenderingDef,
        z: int,
        t: int,
        tag: str,
        public: bool,
        opener: Callable[[Image], Pyramid],
    ) -> None:
        self.image = image
        self.rdef = rdef
        self.z = z
        self.t = t
        self.tag = tag  # whose settings, their version, and any query overrides
        self.public = public
        self._opener = opener

    @cached_property
    def pyramid(self) -> Pyramid:
        return self._opener(self.image)

    def key(self, *parts: object) -> str:
        return make_key(self.tag, self.z, self.t, *parts)


@dataclass(frozen=True)
class Output:
    """One rendered answer: the view it is of, its cache key and media type, and its maker."""

    view: View
    key: str
    media_type: str
    make: Callable[[], bytes]
    cached: bool = True  # False: as cheap to make as to read from the cache (a stored tile)


class RenderService:
    """Answer rendering requests for a caller: visibility, settings, cache key, cache, pixels."""

    def __init__(
        self,
        records: Records,
        pixels: PixelStore,
        cache: RenderCache,
        visible: VisibleImage,
        is_public: IsPublic,
        max_pixels: int = 64 * 1024 * 1024,
        thumbnail_default: int = 96,
        iiif_jpeg: tuple[float, bool] = (0.9, True),
        sources: Sources | None = None,
    ) -> None:
        self.records = records
        self.pixels = pixels
        self.cache = cache
        self.visible = visible
        self.is_public = is_public
        self.renderer = Renderer(max_pixels=max_pixels)
        self.thumbnail_default = thumbnail_default
        # IIIF's JPEG quality (0..1) and whether it keeps full chroma (iiif.jpeg_*)
        self.iiif_jpeg = iiif_jpeg
        self.sources = sources  # the files' own JPEG tiles (render.source_tiles); None: off
        self._parsed: dict[tuple[int, int | None, int, int], RenderingDef] = {}

    # -- resolving ----------------------------------------------------------------------

    def image(self, caller: Caller, image_id: int) -> Image:
        """Return the image if the caller may see it; NotFound otherwise, Conflict unless active."""
        image = self.visible(caller, image_id)
        if image.status != "active":
            raise Conflict(f"image {image_id} is {image.status}, not active")
        return image

    def settings(
        self,
        caller: Caller | None,
        image: Image,
        query: Mapping[str, str] | None = None,
        imported: bool = False,
    ) -> tuple[str, RenderingDef]:
        """Return (tag, settings): the caller's own, else the owner's, else the defaults; then ``query``.

        ``query`` holds only the rendering parameters the route takes (c, m, maps, p); with
        ``imported``, saved settings are passed over (the defaults the import gave).
        """
        user_id = caller.user_id if caller is not None else None
        whose: int | None = None
        rdef: RenderingDef | None = None
        for candidate in () if imported else (user_id, image.owner_id):
            if candidate is not None:
                stored = self.records.rdef(image.id, candidate)
                if stored is not None:
                    whose = candidate
                    rdef = self._parse(image, candidate, stored)
                    break
        base = rdef if rdef is not None else _default_def(image)
        tag = settings_tag(whose, image.rdef_version)
        if query:
            base = apply_query(base, dict(query), image.size_c)
            tag += "|" + base.to_query()
        return tag, base

    def _parse(self, image: Image, whose: int, stored: tuple[int, dict[str, Any]]) -> RenderingDef:
        # PERF: saved settings are parsed once per settings version, not per request; a save
        # makes a new version of both, so a parsed entry never outlives its settings.
        key = (image.id, whose, stored[0], image.rdef_version)
        return _memo(self._parsed, key, lambda: RenderingDef.from_json(stored[1]))

    def view(
        self,
        caller: Caller,
        image_id: int,
        z: int | None = None,
        t: int | None = None,
        query: Mapping[str, str] | None = None,
        project: bool = True,
        imported: bool = False,
    ) -> View:
        """Resolve image, settings and plane (None: the settings' default) for a rendering request.

        Without ``project`` the plane is rendered as it is, whatever projection the settings
        name (OMERO's regions, tiles and thumbnails); ``imported`` as for ``settings``.
        """
        image = self.image(caller, image_id)
        tag, rdef = self.settings(caller, image, query, imported)
        if not project and rdef.projection != "normal":
            rdef = replace(rdef, projection="normal", projection_start=None, projection_end=None)
            tag += "|unprojected"
        z = rdef.default_z if z is None else z
        t = rdef.default_t if t is None else t
        check_plane(image, z, t)
        return View(image, rdef, z, t, tag, self.is_public(image), self.pyramid)

    def pyramid(self, image: Image) -> Pyramid:
        try:
            return self.pixels.open(image)
        except PyramidError:
            raise Conflict(f"image {image.id} has no readable pixels") from None

    # -- answers --------------------------------------------------------------------------

    def fetch(self, output: Output) -> bytes:
        """Return the bytes of ``output`` from the render cache, rendering and storing them once."""
        if not output.cached:
            return output.make()
        data = self.cache.get(output.view.image.id, output.key)
        found = metrics()
        if data is None:
            with damage_named(output.view.image):
                data = output.make()
            self.cache.put(output.view.image.id, output.key, data)
            found.miss.inc()
            found.miss_bytes.inc(len(data))
        else:
            found.hit.inc()
            found.hit_bytes.inc(len(data))
        return data

    def plane(self, view: View, fmt: str, quality: float) -> Output:
        """Return the whole plane of ``view`` (render_image)."""
        whole = Region(0, 0, view.image.size_x, view.image.size_y)
        return Output(
            view,
            view.key("image", fmt, quality),
            content_type(fmt),
            lambda: encode(self.renderer.rgb(*_at(view), whole), fmt, quality),
        )

    def region(self, view: View, region: Region, fmt: str, quality: float) -> Output:
        """Return ``region`` (full-resolution pixels, clipped to the image) of ``view``."""
        area = check_region(view.image, region)
        key = view.key("region", area.x, area.y, area.width, area.height, fmt, quality)
        return Output(
            view,
            key,
            content_type(fmt),
            lambda: encode(self.renderer.rgb(*_at(view), area), fmt, quality),
        )

    def tile(
        self,
        view: View,
        level: int,
        tx: int,
        ty: int,
        size: tuple[int, int],
        fmt: str,
        quality: float,
        as_stored: bool = False,
    ) -> Output:
        """Return tile (tx, ty) of ``level`` (``size`` 0, 0: the image's tile size).

        With ``as_stored`` (no quality asked) a JPEG tile may be the file's own (``stored_tile``).
        """
        level, area = tile_region(view.image, view.pyramid, level, tx, ty, *size)
        # SECURITY: the renderer bounds render.max_pixels only for output sizes; a tile is read
        # as it is from its level, so its size is bounded here, before any cache or ETag.
        self.check_area("tile", area)
        if as_stored and fmt == "jpeg" and self._may_send_stored(view):
            stored = self.stored_tile(view, level, area, (area.width, area.height))
            if stored is not None:
                return stored
        key = view.key("tile", level, area.x, area.y, area.width, area.height, fmt, quality)
        return Output(
            view,
            key,
            content_type(fmt),
            lambda: encode(self.renderer.rgb(*_at(view), area, level=level), fmt, quality),
        )

    def split(self, view: View, fmt: str, quality: float) -> Output:
        """Return every active channel in its own pane and the merge last (render_split_channel)."""
        return Output(
            view,
            view.key("split", fmt, quality),
            content_type(fmt),
            lambda: encode(self.split_grid(view), fmt, quality),
        )

    def thumbnail(
        self,
        caller: Caller,
        image_id: int,
        z: int | None,
        t: int | None,
        width: int | None,
        height: int | None = None,
    ) -> Output:
        """Return the JPEG thumbnail of plane (z, t) (None: the default) at ``width`` × ``height``.

        OMERO's render_thumbnail takes only z, t from the query: c, m, maps and p never change
        a thumbnail, and the plane is never projected.
        """
        view = self.view(caller, image_id, z, t, project=False)
        return self._thumbnail(
            view, thumbnail_size(view.image, width, height, self.thumbnail_default)
        )

    def _thumbnail(self, view: View, size: tuple[int, int]) -> Output:
        key = thumbnail_key(view.tag, view.z, view.t, *size)
        return Output(
            view,
            key,
            content_type("jpeg"),
            lambda: self.renderer.thumbnail(
                view.image, view.pyramid, view.rdef, view.z, view.t, size
            ),
        )

    def default_thumbnail(self, pyramid: Pyramid, image: Image) -> None:
        """Render the thumbnail everyone gets before anyone saves settings into the cache.

        Its key is the one ``thumbnail`` computes for a plain render_thumbnail request, so the
        first page of a dataset is served without pixel work.
        """
        rdef = _default_def(image)
        tag = settings_tag(None, image.rdef_version)
        view = View(image, rdef, rdef.default_z, rdef.default_t, tag, False, lambda _image: pyramid)
        output = self._thumbnail(
            view, thumbnail_size(image, self.thumbnail_default, None, self.thumbnail_default)
        )
        self.cache.put(image.id, output.key, output.make())

    def iiif(
        self,
        view: View,
        area: Region,
        size: tuple[int, int],
        mirror: bool,
        angle: float,
        quality: str,
        fmt: str,
    ) -> Output:
        """Return an IIIF image: ``area`` at ``size``, mirrored, turned clockwise, in ``quality``."""
        jpeg = content_type(fmt) == content_type("jpeg")
        if jpeg and quality == "color" and not mirror and not angle and self._may_send_stored(view):
            level, at = self.renderer.level_region(view.image, view.pyramid, area, size)
            stored = self.stored_tile(view, level, at, size)
            if stored is not None:
                return stored
        key = view.key(
            "iiif",
            area.x,
            area.y,
            area.width,
            area.height,
            size,
            mirror,
            angle,
            quality,
            fmt,
            *self.iiif_jpeg,
        )

        def make() -> bytes:
            picture = orient(self.renderer.rgb(*_at(view), area, size), mirror, angle, quality)
            # NOTE: full chroma (4:4:4, the default) keeps the colour of small regions true;
            # 4:2:0 shifted saturated colours by more than the IIIF validator's tolerance.
            jpeg_quality, full_chroma = self.iiif_jpeg
            return encode(picture, fmt, jpeg_quality, full_chroma=full_chroma)

        return Output(view, key, content_type(fmt), make)

    def values(self, view: View, x: int, y: int, w: int = 1, h: int = 1) -> dict[str, Any]:
        """Return the stored values of every channel in the ``w``×``h`` area at (``x``, ``y``)
        of the view's plane, full resolution, rows first (NaN as None)."""
        image = view.image
        for name, value, size in (("x", x, image.size_x), ("y", y, image.size_y)):
            if not 0 <= value < size:
                raise BadParameter(name, f"{value} is outside 0..{size - 1}")
        for name, value in (("w", w), ("h", h)):
            if not 1 <= value <= MAX_VALUES_SIDE:
                raise BadParameter(name, f"{value} is not between 1 and {MAX_VALUES_SIDE}")
        rows, columns = slice(y, min(y + h, image.size_y)), slice(x, min(x + w, image.size_x))
        channels = []
        with damage_named(image):
            for index, meta in enumerate(image.channels):
                area = view.pyramid.read(0, view.t, index, view.z, rows, columns)
                listed = area.tolist()
                if area.dtype.kind == "f":
                    listed = [[None if v != v else v for v in row] for row in listed]
                channels.append({"index": index, "label": meta.name, "values": listed})
        return {
            "x": x,
            "y": y,
            "w": columns.stop - x,
            "h": rows.stop - y,
            "z": view.z,
            "t": view.t,
            "pixel_type": image.pixel_type,
            "channels": channels,
        }

    def shape_stats(self, view: View, shape: dict[str, Any]) -> dict[str, Any]:
        """Return the pixel count and each channel's min, max, mean, sum and standard deviation
        inside ``shape`` (an ROI shape of ``coverslip.formats.ome_rois``) on the view's plane."""
        image = view.image
        box = ome_rois.bounds(shape, image.size_x, image.size_y)
        if box is None:
            raise BadParameter("shape", f"a {shape['type']} encloses no pixels of the image")
        x0, y0, x1, y1 = box
        self.check_area("shape", Region(x0, y0, x1 - x0, y1 - y0))
        inside = ome_rois.mask(shape, box)
        channels = []
        with damage_named(image):
            for index, meta in enumerate(image.channels):
                area = view.pyramid.read(0, view.t, index, view.z, slice(y0, y1), slice(x0, x1))
                values = area[inside].astype(np.float64)
                channels.append(
                    {
                        "index": index,
                        "label": meta.name,
                        "min": float(values.min()) if values.size else None,
                        "max": float(values.max()) if values.size else None,
                        "mean": float(values.mean()) if values.size else None,
                        "sum": float(values.sum()),
                        "std": float(values.std()) if values.size else None,
                    }
                )
        return {
            "shape": shape["id"],
            "type": shape["type"],
            "z": view.z,
            "t": view.t,
            "area": int(inside.sum()),
            "channels": channels,
        }

    def histogram(self, view: View, channel: int, bins: int) -> list[int]:
        """Return the counts of ``bins`` bins over channel ``channel``'s min..max on the view's
        plane, or on the projection its settings ask (``p=``; sums above the max are not counted)."""
        image = view.image
        if not 0 <= channel < image.size_c:
            raise BadParameter("c", f"{channel} is outside 0..{image.size_c - 1}")
        if not 1 <= bins <= 65536:
            raise BadParameter("bins", f"{bins} is not between 1 and 65536")
        level = histogram_level(view.pyramid)
        zs = projected_planes(view.rdef, image.size_z)
        every = slice(None)
        with damage_named(image):
            if zs is None:
                plane = view.pyramid.read(level, view.t, channel, view.z, every, every)
            else:
                asked = [(view.t, channel, z) for z in zs]
                stack = view.pyramid.read_planes(level, asked, every, every)
                plane = project(stack, view.rdef.projection, image.pixel_type)
        meta = image.channels[channel]
        values = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
        counts, _edges = np.histogram(
            values, bins=bins, range=(meta.min, meta.max if meta.max > meta.min else meta.min + 1)
        )
        return [int(count) for count in counts]

    def _may_send_stored(self, view: View) -> bool:
        """Return whether a tile of ``view`` may be its file's own: the view's settings change
        no pixel. Checked before the pyramid is opened, so other answers never open it here."""
        return self.sources is not None and unchanged_rgb(view.rdef, view.image.pixel_type)

    def stored_tile(
        self, view: View, level: int, area: Region, size: tuple[int, int]
    ) -> Output | None:
        """Return the file's own JPEG tile when ``area`` of ``level`` at ``size`` is exactly one
        of them (``coverslip.render.source``), else None; ``_may_send_stored`` said yes."""
        if self.sources is None:
            return None
        sources = self.sources.of(view.image, view.pyramid)
        side = sources.tile_size(level) if sources is not None else None
        if side is None or size != (side, side) or (area.width, area.height) != size:
            return None
        if area.x % side or area.y % side:
            return None
        assert sources is not None
        data = sources.read(level, area.x // side, area.y // side)
        if data is None:
            return None
        key = view.key("stored", level, area.x, area.y)
        return Output(view, key, content_type("jpeg"), lambda: data, cached=False)

    # -- pixel work ------------------------------------------------------------------------

    def check_area(self, name: str, region: Region) -> None:
        """Raise BadParameter naming ``name`` when ``region`` has more than render.max_pixels."""
        limit = self.renderer.max_pixels
        if region.width * region.height > limit:
            raise BadParameter(
                name,
                f"{region.width}×{region.height} is larger than {limit} pixels; ask for smaller tiles",
            )

    def split_grid(self, view: View) -> np.ndarray:
        """Render every active channel in its own pane and the merge last, on a grid with borders."""
        image, rdef = view.image, view.rdef
        active = [c for c, ch in enumerate(rdef.channels) if ch.active]
        layout = split_layout(image, len(active))
        pane_w, pane_h = layout["pane_width"], layout["pane_height"]
        border, cols = layout["border"], layout["gridx"]
        canvas = np.zeros((layout["height"], layout["width"], 3), dtype=np.uint8)
        whole = Region(0, 0, image.size_x, image.size_y)
        settings = []
        for c in active:
            # Each pane shows one channel: grey in greyscale mode, in its colour otherwise (as OMERO).
            channels = tuple(replace(ch, active=i == c) for i, ch in enumerate(rdef.channels))
            settings.append(replace(rdef, channels=channels))
        settings.append(replace(rdef, model="color"))
        for index, only in enumerate(settings):
            pane = self.renderer.rgb(
                image, view.pyramid, only, view.z, view.t, whole, (pane_w, pane_h)
            )
            row, col = divmod(index, cols)
            y = border + row * (pane_h + border)
            x = border + col * (pane_w + border)
            canvas[y : y + pane_h, x : x + pane_w] = pane
        return canvas


@contextlib.contextmanager
def damage_named(image: Image) -> Iterator[None]:
    """Turn damaged stored pixels into a Damaged error that names the image (HTTP 503)."""
    try:
        yield
    except DamagedPixels as exc:
        raise Damaged(
            f"image {image.id}: its stored pixels are damaged ({exc}); "
            f"`coverslip check {image.id}` lists the damage"
        ) from None


def _at(view: View) -> tuple[Image, Pyramid, RenderingDef, int, int]:
    return view.image, view.pyramid, view.rdef, view.z, view.t


# The largest side of an area whose raw values one request may ask for.
MAX_VALUES_SIDE = 64


def histogram_level(pyramid: Pyramid) -> int:
    """Return the largest level with at most OMERO's maximum plane size in pixels (3192²).

    OMERO counts the whole plane of any image up to that size and refuses bigger ones; here a
    bigger image is counted on its largest level that small enough.
    """
    limit = MAX_PLANE_WIDTH * MAX_PLANE_HEIGHT
    for index, lv in enumerate(pyramid.levels):
        if lv.width * lv.height <= limit:
            return index
    return len(pyramid.levels) - 1


_QUARTERS = {90.0: 1, 180.0: 2, 270.0: 3}  # clockwise quarter turns


def orient(
    rgb: np.ndarray, mirror: bool, angle: float, quality: str
) -> np.ndarray | PILImage.Image:
    """Return ``rgb`` mirrored, turned ``angle`` degrees clockwise, in IIIF ``quality``.

    # PERF: mirrors and quarter turns are array views; Pillow is used only for other angles
    # and for gray and bitonal, so a plain tile reaches the encoder as the rendered array.
    """
    if mirror:
        rgb = rgb[:, ::-1]
    turned = angle in _QUARTERS
    if turned:
        rgb = np.rot90(rgb, k=-_QUARTERS[angle])
    if (turned or not angle) and quality not in ("gray", "bitonal"):
        return rgb
    image = PILImage.fromarray(np.ascontiguousarray(rgb))
    if angle and not turned:
        # NOTE: the corners that rotation uncovers are white, as the IIIF specification
        # suggests for formats without transparency.
        image = image.rotate(
            -angle, expand=True, resample=PILImage.Resampling.BILINEAR, fillcolor=(255, 255, 255)
        )
    if quality == "gray":
        image = image.convert("L")
    elif quality == "bitonal":
        image = image.convert("L").point(lambda v: 255 if v >= 128 else 0).convert("1")
    return image


@lru_cache(maxsize=16)
def placeholder(size: int) -> bytes:
    """Return a plain grey PNG square, for images that cannot be shown."""
    return encode(np.full((size, size, 3), 200, dtype=np.uint8), "png")


_DEFAULTS: dict[tuple[int, object], RenderingDef] = {}


def _default_def(image: Image) -> RenderingDef:
    # PERF: built once per image version, not per request.
    return _memo(
        _DEFAULTS,
        (image.id, image.updated),
        lambda: default_def(image.channels, image.pixel_type, image.size_z, image.size_t),
    )


def _memo(
    table: dict[Any, RenderingDef], key: Any, make: Callable[[], RenderingDef]
) -> RenderingDef:
    """Return ``table[key]``, made by ``make`` the first time; a full table starts afresh."""
    found = table.get(key)
    if found is None:
        if len(table) >= _PARSED_MAX:
            table.clear()
        found = table[key] = make()
    return found
