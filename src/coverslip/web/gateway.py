"""OMERO.web's webgateway rendering URLs: images, regions, tiles, thumbnails, split channels.

A URL that works against OMERO.web gives the same picture here. Resources parse the
request and ask the render service (``coverslip.render.app``, through `web/rendering.py`)
for the answer; they keep only parameters, HTTP errors and ETags.
"""

from __future__ import annotations

import base64

import falcon
from falcon.routing import BaseConverter

from coverslip.errors import BadParameter, CoverslipError
from coverslip.render.service import THUMBNAIL_QUALITY, Region
from coverslip.render.settings import parse_format, parse_quality
from coverslip.web.access import PRIVATE, install_ids, parse_id
from coverslip.web.rendering import RENDER_PARAMS, RenderContext, parse_integer

# render_image_region renders the plane as it is: OMERO's renderJpegRegion takes no projection.
REGION_PARAMS = tuple(name for name in RENDER_PARAMS if name != "p")


class SideConverter(BaseConverter):
    """The ``{name:side}`` converter of thumbnail sizes: an integer in ASCII digits, ``-`` allowed.

    # SECURITY: a size is bounded by ``RenderContext.thumbnail_sides``, which answers 400 naming
    # it; a negative one is such a size too, not a missing route.
    """

    def convert(self, value: str) -> int | None:
        return parse_integer(value)


def _ints(name: str, text: str | None, count: tuple[int, ...]) -> list[int]:
    if text is None:
        raise BadParameter(name, "is required")
    try:
        values = [int(float(part)) for part in text.split(",")]
    except ValueError:
        raise BadParameter(name, f"{text!r} is not a comma-separated list of integers") from None
    if len(values) not in count:
        raise BadParameter(name, f"{text!r} needs {' or '.join(map(str, count))} numbers")
    return values


def _output(req: falcon.Request) -> tuple[str, float]:
    """Return the requested (format, quality): `format=` (JPEG by default) and `q=`.

    Without `q` the quality is OMERO's rendering engine default, 0.85.
    """
    raw = req.get_param("q")
    quality = THUMBNAIL_QUALITY if raw is None or raw == "" else parse_quality(raw)
    return parse_format(req.get_param("format") or "jpeg"), quality


class RenderImage:
    """`render_image/<iid>/[<z>/][<t>/]`: a whole plane, JPEG unless `format=` says otherwise."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        iid: int,
        z: int | None = None,
        t: int | None = None,
    ) -> None:
        view = self.ctx.view(req, iid, z, t)
        fmt, quality = _output(req)
        self.ctx.respond(req, resp, self.ctx.render.plane(view, fmt, quality))


class RenderImageRegion:
    """`render_image_region/<iid>/<z>/<t>/?region=x,y,w,h` or `?tile=level,x,y[,w,h]`."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int, z: int, t: int) -> None:
        view = self.ctx.view(req, iid, z, t, names=REGION_PARAMS, project=False)
        fmt, quality = _output(req)
        tile = req.get_param("tile")
        if tile is not None:
            parts = _ints("tile", tile, (3, 5))
            level, tx, ty = parts[:3]
            size = (parts[3], parts[4]) if len(parts) == 5 else (0, 0)
            # Without q= the quality is the server's to choose: a tile the file stores may be sent as stored.
            as_stored = not req.get_param("q")
            output = self.ctx.render.tile(view, level, tx, ty, size, fmt, quality, as_stored)
        elif req.get_param("region") is None:
            raise BadParameter("region", "region=x,y,w,h or tile=level,x,y is required")
        else:
            x, y, w, h = _ints("region", req.get_param("region"), (4,))
            output = self.ctx.render.region(view, Region(x, y, w, h), fmt, quality)
        self.ctx.respond(req, resp, output)


class RenderThumbnail:
    """`render_thumbnail/<iid>/[<w>/][<h>/]`: a JPEG thumbnail; the default one is rendered at import."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        iid: int,
        w: int | None = None,
        h: int | None = None,
    ) -> None:
        self.ctx.thumbnail(req, resp, iid, self.ctx.thumbnail_sides(w, h))


class WebclientThumbnail:
    """`webclient/render_thumbnail/size/<w>/<iid>/` and `webclient/render_thumbnail/<iid>/`.

    Like OMERO.web's webclient, an image that cannot be shown answers a placeholder.
    """

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, iid: int, w: int | None = None
    ) -> None:
        # SECURITY: the placeholder is drawn for any id, anonymously, so its size is bounded
        # exactly like a real thumbnail's before anything is drawn.
        sides = self.ctx.thumbnail_sides(w)
        try:
            self.ctx.thumbnail(req, resp, iid, sides)
        except (CoverslipError, falcon.HTTPError):
            resp.status = falcon.HTTP_200
            resp.content_type = "image/png"
            resp.cache_control = ["no-cache"]
            resp.data = self.ctx.placeholder(sides.w or self.ctx.default_size)


class BirdsEyeView:
    """`render_birds_eye_view/<iid>/[<size>/]`: the whole plane, longest side ``size`` (default 96)."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, iid: int, size: int | None = None
    ) -> None:
        self.ctx.thumbnail(req, resp, iid, self.ctx.thumbnail_sides(size))


class GetThumbnails:
    """`get_thumbnails/[<w>/]?id=1&id=2`: base64 JPEG data URIs by id; null for ids that cannot be shown."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, w: int | None = None) -> None:
        raw = req.get_param_as_list("id") or []
        ids: list[int] = []
        for value in raw:
            number = parse_id(value)
            if number is None:
                raise BadParameter("id", f"{value!r} is not an image id")
            if number not in ids:
                ids.append(number)
        if len(ids) > self.ctx.batch_max:
            raise BadParameter(
                "id", f"{len(ids)} ids asked for; at most {self.ctx.batch_max} per request"
            )
        sides = self.ctx.thumbnail_sides(w)
        result: dict[str, str | None] = {}
        for image_id in ids:
            try:
                data = self.ctx.thumbnail_bytes(req, image_id, sides)
            except CoverslipError:
                result[str(image_id)] = None
            else:
                result[str(image_id)] = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        # The answer depends on who asks: never stored by shared caches.
        resp.cache_control = PRIVATE
        resp.media = result


class RenderSplitChannel:
    """`render_split_channel/<iid>/<z>/<t>/`: every active channel in its own pane, plus the merge."""

    def __init__(self, ctx: RenderContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, iid: int, z: int, t: int) -> None:
        view = self.ctx.view(req, iid, z, t)
        fmt, quality = _output(req)
        self.ctx.respond(req, resp, self.ctx.render.split(view, fmt, quality))


def add_routes(app: falcon.App, ctx: RenderContext, thumbs_only: bool = False) -> None:
    """Mount the webgateway rendering routes (only the thumbnail ones for the thumbnail service)."""
    install_ids(app)
    app.router_options.converters["side"] = SideConverter
    thumb = RenderThumbnail(ctx)
    birds = BirdsEyeView(ctx)
    batch = GetThumbnails(ctx)
    webclient = WebclientThumbnail(ctx)
    for prefix in ("/webgateway", "/webclient"):
        app.add_route(
            f"{prefix}/render_thumbnail/{{iid:id}}",
            thumb if prefix == "/webgateway" else webclient,
        )
        app.add_route(f"{prefix}/render_thumbnail/{{iid:id}}/{{w:side}}", thumb)
        app.add_route(f"{prefix}/render_thumbnail/{{iid:id}}/{{w:side}}/{{h:side}}", thumb)
        app.add_route(f"{prefix}/render_birds_eye_view/{{iid:id}}", birds)
        app.add_route(f"{prefix}/render_birds_eye_view/{{iid:id}}/{{size:side}}", birds)
        app.add_route(f"{prefix}/get_thumbnails", batch)
        app.add_route(f"{prefix}/get_thumbnails/{{w:side}}", batch)
    app.add_route("/webclient/render_thumbnail/size/{w:side}/{iid:id}", webclient)
    if thumbs_only:
        return
    image = RenderImage(ctx)
    region = RenderImageRegion(ctx)
    split = RenderSplitChannel(ctx)
    for prefix in ("/webgateway", "/webclient"):
        app.add_route(f"{prefix}/render_image/{{iid:id}}", image)
        app.add_route(f"{prefix}/render_image/{{iid:id}}/{{z:nat}}", image)
        app.add_route(f"{prefix}/render_image/{{iid:id}}/{{z:nat}}/{{t:nat}}", image)
        app.add_route(f"{prefix}/render_image_region/{{iid:id}}/{{z:nat}}/{{t:nat}}", region)
        app.add_route(f"{prefix}/render_split_channel/{{iid:id}}/{{z:nat}}/{{t:nat}}", split)
