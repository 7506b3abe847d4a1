"""What every rendering route needs: the visible image, its pyramid, the settings that apply,
cache keys, and HTTP caching (ETag, Cache-Control, 304).

# PERF: the default thumbnail path is a cached metadata lookup, two cached settings lookups,
# one hash and one file read; nothing here parses settings or reads pixels twice.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property, lru_cache
from typing import NamedTuple

import falcon
import numpy as np
from PIL import Image as PILImage

from coverslip.cache import make_key, settings_tag, thumbnail_key
from coverslip.errors import BadParameter, Conflict, NotFound
from coverslip.model import Image
from coverslip.pixels import Pyramid, PyramidError
from coverslip.render.encode import content_type
from coverslip.render.service import Region, Renderer, check_plane, split_layout, thumbnail_size
from coverslip.render.settings import RenderingDef, apply_query, default_def
from coverslip.services import Services

RENDER_PARAMS = ("c", "m", "maps", "p")
MAX_THUMBNAIL = 1024

Visible = Callable[[falcon.Request, Image], bool]
IsPublic = Callable[[Image], bool]


# SECURITY: ``int()`` also reads "+7", " 7", "7_0" and fullwidth digits; a parameter is ASCII
# digits only, and a long run of them is refused before it becomes a huge number.
_NATURAL = re.compile(r"[0-9]{1,18}")
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def int_param(
    req: falcon.Request, name: str, default: int | None = None, negative: bool = False
) -> int | None:
    """Return an integer query parameter (ASCII digits, ``-`` first if ``negative``), or raise BadParameter."""
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    if not (_INTEGER if negative else _NATURAL).fullmatch(raw):
        kind = "an integer" if negative else "a whole number in ASCII digits"
        raise BadParameter(name, f"{raw[:40]!r} is not {kind}")
    return int(raw)


class Sides(NamedTuple):
    """A thumbnail's asked width and height (None: from the other side or the default).

    Made by ``RenderContext.thumbnail_sides``, which bounds them once per request.
    """

    w: int | None
    h: int | None


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


class RenderContext:
    """Shared by the gateway and IIIF resources of one app."""

    def __init__(self, services: Services, visible: Visible, is_public: IsPublic) -> None:
        self.services = services
        self.visible = visible
        self.is_public = is_public
        settings = services.settings
        self.renderer = Renderer(max_pixels=settings["render.max_pixels"])
        self.default_size: int = settings["thumbs.default_size"]
        self.batch_max: int = settings["thumbs.batch_max"]
        self.max_thumbnail = MAX_THUMBNAIL

    # -- resolving ----------------------------------------------------------------------

    def image(self, req: falcon.Request, iid: int) -> Image:
        """Return the image if the caller may see it; 404 otherwise, 409 while it is not active."""
        image = self.services.metadata.image(iid)
        if not self.visible(req, image):
            raise NotFound(f"image {iid} does not exist")
        if image.status != "active":
            raise Conflict(f"image {iid} is {image.status}, not active")
        return image

    def settings(
        self, req: falcon.Request, image: Image, names: tuple[str, ...] = RENDER_PARAMS
    ) -> tuple[str, RenderingDef]:
        """Return (tag, settings): the caller's own, else the owner's, else the defaults; then the query.

        Only the query parameters in ``names`` apply (OMERO's thumbnails take none of them).
        """
        caller = getattr(req.context, "caller", None)
        user_id = getattr(caller, "user_id", None)
        stored = None
        whose: int | None = None
        for candidate in (user_id, image.owner_id):
            if candidate is not None:
                stored = self.services.metadata.rdef(image.id, candidate)
                if stored is not None:
                    whose = candidate
                    break
        base = RenderingDef.from_json(stored[1]) if stored else _default_def(image)
        tag = settings_tag(whose, image.rdef_version)
        params = {name: req.params[name] for name in names if name in req.params}
        if params:
            base = apply_query(base, {k: str(v) for k, v in params.items()}, image.size_c)
            tag += "|" + base.to_query()
        return tag, base

    def view(
        self,
        req: falcon.Request,
        iid: int,
        z: int | None,
        t: int | None,
        names: tuple[str, ...] = RENDER_PARAMS,
        project: bool = True,
    ) -> View:
        """Resolve image, pyramid, settings and plane for a rendering request.

        ``names`` are the rendering parameters the route takes; without ``project`` the plane is
        rendered as it is, whatever projection the settings name (OMERO's regions, tiles and
        thumbnails). ``ia`` never changes the plane: in OMERO it only swaps imgData's Z and T sizes.
        """
        image = self.image(req, iid)
        tag, rdef = self.settings(req, image, names)
        if not project and rdef.projection != "normal":
            rdef = replace(rdef, projection="normal", projection_start=None, projection_end=None)
            tag += "|unprojected"
        z = int_param(req, "z", rdef.default_z) if z is None else z
        t = int_param(req, "t", rdef.default_t) if t is None else t
        assert z is not None and t is not None
        check_plane(image, z, t)
        return View(image, rdef, z, t, tag, self.is_public(image), self.pyramid)

    def pyramid(self, image: Image) -> Pyramid:
        try:
            return self.services.pixels.open(image)
        except PyramidError:
            raise Conflict(f"image {image.id} has no readable pixels") from None

    # -- rendering ----------------------------------------------------------------------

    def rgb(
        self,
        view: View,
        region: Region,
        size: tuple[int, int] | None = None,
        level: int | None = None,
    ) -> np.ndarray:
        return self.renderer.rgb(
            view.image, view.pyramid, view.rdef, view.z, view.t, region, size, level
        )

    def respond(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        view: View,
        key: str,
        fmt: str,
        produce: Callable[[], bytes],
    ) -> None:
        """Answer from the cache, with 304 when the client has it, else produce, store and send."""
        # SECURITY: the ETag names its image by id and by a random tag of that image, so a
        # validator of one image never matches another (a new image, a restored catalog).
        etag = f"{view.image.id}-{view.image.render_tag}-{key}"
        resp.etag = etag
        resp.cache_control = ["public" if view.public else "private", "no-cache"]
        if req.if_none_match and any(tag == etag or tag == "*" for tag in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = content_type(fmt)
        cache = self.services.cache
        data = cache.get(view.image.id, key)
        if data is None:
            data = produce()
            cache.put(view.image.id, key, data)
        resp.data = data

    def thumbnail_sides(self, w: int | None, h: int | None = None) -> Sides:
        """Return the asked thumbnail sides, or raise BadParameter naming one not 1..max_thumbnail."""
        for name, value in (("w", w), ("h", h)):
            if value is not None and not 1 <= value <= self.max_thumbnail:
                raise BadParameter(name, f"{value} is not between 1 and {self.max_thumbnail}")
        return Sides(w, h)

    def check_area(self, name: str, region: Region) -> None:
        """Raise BadParameter naming ``name`` when ``region`` has more than render.max_pixels."""
        limit = self.renderer.max_pixels
        if region.width * region.height > limit:
            raise BadParameter(
                name,
                f"{region.width}×{region.height} is larger than {limit} pixels; ask for smaller tiles",
            )

    def _thumbnail_view(
        self, req: falcon.Request, iid: int, sides: Sides
    ) -> tuple[View, str, tuple[int, int]]:
        # OMERO's render_thumbnail takes only z, t (and rdefId) from the query: c, m, maps and
        # p never change a thumbnail, and the plane is never projected.
        view = self.view(req, iid, None, None, names=(), project=False)
        size = thumbnail_size(view.image, sides.w, sides.h, self.default_size)
        return view, thumbnail_key(view.tag, view.z, view.t, *size), size

    def thumbnail(self, req: falcon.Request, resp: falcon.Response, iid: int, sides: Sides) -> None:
        """Answer the thumbnail of ``iid`` at ``sides`` (from ``thumbnail_sides``)."""
        view, key, size = self._thumbnail_view(req, iid, sides)
        self.respond(req, resp, view, key, "jpeg", lambda: self._render_thumbnail(view, size))

    def thumbnail_bytes(self, req: falcon.Request, iid: int, sides: Sides) -> bytes:
        """Return thumbnail JPEG bytes (cached), for get_thumbnails."""
        view, key, size = self._thumbnail_view(req, iid, sides)
        data = self.services.cache.get(view.image.id, key)
        if data is None:
            data = self._render_thumbnail(view, size)
            self.services.cache.put(view.image.id, key, data)
        return data

    def _render_thumbnail(self, view: View, size: tuple[int, int]) -> bytes:
        return self.renderer.thumbnail(view.image, view.pyramid, view.rdef, view.z, view.t, size)

    @staticmethod
    @lru_cache(maxsize=16)
    def placeholder(size: int) -> bytes:
        """Return a plain grey PNG square, for images that cannot be shown."""
        buffer = io.BytesIO()
        PILImage.new("RGB", (size, size), (200, 200, 200)).save(buffer, "PNG")
        return buffer.getvalue()


_DEFAULTS: dict[tuple[int, object], RenderingDef] = {}


def _default_def(image: Image) -> RenderingDef:
    # PERF: built once per image version, not per request.
    key = (image.id, image.updated)
    found = _DEFAULTS.get(key)
    if found is None:
        if len(_DEFAULTS) > 4096:
            _DEFAULTS.clear()
        found = _DEFAULTS[key] = default_def(
            image.channels, image.pixel_type, image.size_z, image.size_t
        )
    return found


def split_grid(ctx: RenderContext, view: View) -> np.ndarray:
    """Render every active channel in its own pane and the merge last, on a grid with borders."""
    image, rdef = view.image, view.rdef
    active = [c for c, ch in enumerate(rdef.channels) if ch.active]
    layout = split_layout(image, len(active))
    pane_w, pane_h, border, cols = (
        layout["pane_width"],
        layout["pane_height"],
        layout["border"],
        layout["gridx"],
    )
    canvas = np.zeros((layout["height"], layout["width"], 3), dtype=np.uint8)
    whole = Region(0, 0, image.size_x, image.size_y)
    panes = []
    for c in active:
        # Each pane shows one channel: grey in greyscale mode, in its colour otherwise (as OMERO).
        channels = tuple(replace(ch, active=index == c) for index, ch in enumerate(rdef.channels))
        only = replace(rdef, channels=channels)
        panes.append(
            ctx.renderer.rgb(image, view.pyramid, only, view.z, view.t, whole, (pane_w, pane_h))
        )
    merged = replace(rdef, model="color")
    panes.append(
        ctx.renderer.rgb(image, view.pyramid, merged, view.z, view.t, whole, (pane_w, pane_h))
    )
    for index, pane in enumerate(panes):
        row, col = divmod(index, cols)
        y = border + row * (pane_h + border)
        x = border + col * (pane_w + border)
        canvas[y : y + pane_h, x : x + pane_w] = pane
    return canvas
