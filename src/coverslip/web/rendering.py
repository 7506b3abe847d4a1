"""The web side of rendering: read the caller and query, ask the render service, answer HTTP.

``coverslip.render.app.RenderService`` decides everything about a render (visibility, whose
settings, cache key, cache, pixels); this module turns a request into its arguments and its
answer into ETag, Cache-Control, 304 or bytes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import falcon

from coverslip.auth import Caller
from coverslip.errors import BadParameter
from coverslip.model import Image
from coverslip.render.app import RENDER_PARAMS, Output, RenderService, View, placeholder
from coverslip.render.settings import RenderingDef
from coverslip.services import Services
from coverslip.web.access import caller_of

__all__ = ["RENDER_PARAMS", "RenderContext", "Sides", "View", "int_param"]

MAX_THUMBNAIL = 1024


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
    # NOTE: 20 digits is past any size or index; Python refuses to read much longer ones.
    if len(raw) > 20 or not (_INTEGER if negative else _NATURAL).fullmatch(raw):
        kind = "an integer" if negative else "a whole number in ASCII digits"
        raise BadParameter(name, f"{raw[:40]!r} is not {kind}")
    return int(raw)


def parse_integer(text: str) -> int | None:
    """Return the integer ``text`` spells in ASCII digits (``-`` first allowed), else None."""
    return int(text) if _INTEGER.fullmatch(text) else None


def render_query(req: falcon.Request, names: tuple[str, ...] = RENDER_PARAMS) -> dict[str, str]:
    """Return the rendering parameters among ``names`` that the request carries."""
    return {name: str(req.params[name]) for name in names if name in req.params}


class Sides(NamedTuple):
    """A thumbnail's asked width and height (None: from the other side or the default).

    Made by ``RenderContext.thumbnail_sides``, which bounds them once per request.
    """

    w: int | None
    h: int | None


class RenderContext:
    """Shared by the gateway and IIIF resources of one app: the request side of rendering."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.render: RenderService = services.render
        settings = services.settings
        self.default_size: int = settings["thumbs.default_size"]
        self.batch_max: int = settings["thumbs.batch_max"]
        self.max_thumbnail = MAX_THUMBNAIL

    def caller(self, req: falcon.Request) -> Caller:
        return caller_of(self.services.auth, req)

    # -- resolving ----------------------------------------------------------------------

    def image(self, req: falcon.Request, iid: int) -> Image:
        """Return the image if the caller may see it; 404 otherwise, 409 while it is not active."""
        return self.render.image(self.caller(req), iid)

    def settings(
        self, req: falcon.Request, image: Image, names: tuple[str, ...] = RENDER_PARAMS
    ) -> tuple[str, RenderingDef]:
        """Return (tag, settings) that apply to the caller, with the query's ``names`` applied."""
        return self.render.settings(self.caller(req), image, render_query(req, names))

    def view(
        self,
        req: falcon.Request,
        iid: int,
        z: int | None,
        t: int | None,
        names: tuple[str, ...] = RENDER_PARAMS,
        project: bool = True,
        imported: bool = False,
    ) -> View:
        """Resolve image, settings and plane; z and t come from the path, else the query.

        ``names`` are the rendering parameters the route takes. ``ia`` never changes the plane:
        in OMERO it only swaps imgData's Z and T sizes. ``imported`` passes saved settings over.
        """
        z = int_param(req, "z") if z is None else z
        t = int_param(req, "t") if t is None else t
        query = render_query(req, names)
        return self.render.view(self.caller(req), iid, z, t, query, project, imported)

    # -- answering ----------------------------------------------------------------------

    def respond(self, req: falcon.Request, resp: falcon.Response, output: Output) -> None:
        """Answer ``output``: 304 when the client has it, else its bytes (from the render cache)."""
        image = output.view.image
        # SECURITY: the ETag names its image by id and by a random tag of that image, so a
        # validator of one image never matches another (a new image, a restored catalog).
        etag = f"{image.id}-{image.render_tag}-{output.key}"
        resp.etag = etag
        resp.cache_control = ["public" if output.view.public else "private", "no-cache"]
        if req.if_none_match and any(tag == etag or tag == "*" for tag in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = output.media_type
        resp.data = self.render.fetch(output)

    def thumbnail_sides(self, w: int | None, h: int | None = None) -> Sides:
        """Return the asked thumbnail sides, or raise BadParameter naming one not 1..max_thumbnail."""
        for name, value in (("w", w), ("h", h)):
            if value is not None and not 1 <= value <= self.max_thumbnail:
                raise BadParameter(name, f"{value} is not between 1 and {self.max_thumbnail}")
        return Sides(w, h)

    def thumbnail_output(self, req: falcon.Request, iid: int, sides: Sides) -> Output:
        """Return the thumbnail of ``iid`` at ``sides``; only z and t of the query apply."""
        z, t = int_param(req, "z"), int_param(req, "t")
        return self.render.thumbnail(self.caller(req), iid, z, t, sides.w, sides.h)

    def thumbnail(self, req: falcon.Request, resp: falcon.Response, iid: int, sides: Sides) -> None:
        """Answer the thumbnail of ``iid`` at ``sides`` (from ``thumbnail_sides``)."""
        self.respond(req, resp, self.thumbnail_output(req, iid, sides))

    def thumbnail_bytes(self, req: falcon.Request, iid: int, sides: Sides) -> bytes:
        """Return thumbnail JPEG bytes (cached), for get_thumbnails."""
        return self.render.fetch(self.thumbnail_output(req, iid, sides))

    @staticmethod
    def placeholder(size: int) -> bytes:
        """Return a plain grey PNG square, for images that cannot be shown."""
        return placeholder(size)
