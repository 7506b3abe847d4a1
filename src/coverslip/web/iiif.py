"""IIIF Image API 3.0 at level 2, multi-channel aware.

`/iiif/3/{identifier}/info.json` and `/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}.{format}`.
The identifier is an image id, optionally with a plane (`42;z=3;t=0`), or a name listed in
`iiif.aliases`. Rendering parameters (c, m, maps, p) apply as on the webgateway; without
them the image's saved settings do. Pixels, encoding and the cache are the render service's
(``coverslip.render.app``), as for the webgateway; this module parses IIIF's grammar.
"""

from __future__ import annotations

import json
import math
import re

import falcon

from coverslip.errors import BadParameter, NotFound
from coverslip.model import Image
from coverslip.render.service import Region
from coverslip.web.access import parse_id
from coverslip.web.middleware import PublicURL
from coverslip.web.rendering import RenderContext, View

CONTEXT = "http://iiif.io/api/image/3/context.json"
PROFILE_LINK = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
# IIIF's format names, each a format of the render service's table (``render.encode.FORMATS``).
FORMATS = {"jpg": "jpeg", "png": "png", "tif": "tif", "webp": "webp"}
QUALITIES = ("default", "color", "gray", "bitonal")
FEATURES = [
    "baseUriRedirect",
    "canonicalLinkHeader",
    "cors",
    "jsonldMediaType",
    "mirroring",
    "profileLinkHeader",
    "regionByPct",
    "regionByPx",
    "regionSquare",
    "rotationArbitrary",
    "rotationBy90s",
    "sizeByConfinedWh",
    "sizeByH",
    "sizeByPct",
    "sizeByW",
    "sizeByWh",
    "sizeUpscaling",
]
_NUMBER = r"\d+(?:\.\d+)?"


def parse_identifier(text: str, aliases: dict[str, int]) -> tuple[int, int | None, int | None]:
    """Return (image id, z, t) of ``42``, ``42;z=3;t=0`` or an alias."""
    head, *parts = text.split(";")
    found = aliases[head] if head in aliases else parse_id(head)
    if found is None:
        raise NotFound(f"no image {text!r}")
    image_id = found
    plane: dict[str, int] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in ("z", "t") or not (value.isascii() and value.isdigit()):
            raise BadParameter("identifier", f"{part!r}: use ;z=N and ;t=N after the image id")
        plane[key] = int(value)
    return image_id, plane.get("z"), plane.get("t")


def parse_region(text: str, width: int, height: int) -> Region:
    if text == "full":
        return Region(0, 0, width, height)
    if text == "square":
        side = min(width, height)
        return Region((width - side) // 2, (height - side) // 2, side, side)
    pct = text.startswith("pct:")
    body = text[4:] if pct else text
    pattern = _NUMBER if pct else r"\d+"
    if not re.fullmatch(rf"{pattern},{pattern},{pattern},{pattern}", body):
        raise BadParameter("region", f"{text!r} is not full, square, x,y,w,h or pct:x,y,w,h")
    x, y, w, h = (float(v) for v in body.split(","))
    if pct:
        x, w = x * width / 100, w * width / 100
        y, h = y * height / 100, h * height / 100
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if w <= 0 or h <= 0 or x0 >= width or y0 >= height or x1 <= x0 or y1 <= y0:
        raise BadParameter("region", f"{text!r} selects nothing of the {width}×{height} image")
    return Region(x0, y0, x1 - x0, y1 - y0)


def parse_size(text: str, region: Region, max_area: int) -> tuple[int, int]:
    upscale = text.startswith("^")
    body = text[1:] if upscale else text
    rw, rh = region.width, region.height
    if body == "max":
        w, h = rw, rh
        if w * h > max_area:
            scale = math.sqrt(max_area / (w * h))
            w, h = max(1, int(w * scale)), max(1, int(h * scale))
    elif re.fullmatch(rf"pct:{_NUMBER}", body):
        n = float(body[4:])
        w, h = max(1, round(rw * n / 100)), max(1, round(rh * n / 100))
        if n <= 0:
            raise BadParameter("size", f"{text!r}: the percentage must be above 0")
    elif re.fullmatch(r"\d+,", body):
        w = int(body[:-1])
        h = max(1, round(rh * w / rw))
    elif re.fullmatch(r",\d+", body):
        h = int(body[1:])
        w = max(1, round(rw * h / rh))
    elif re.fullmatch(r"!\d+,\d+", body):
        bw, bh = (int(v) for v in body[1:].split(","))
        # Without ^, "as large as possible but not larger than the extracted region, w or h":
        # a box larger than the region returns the region at its own size.
        scale = min(bw / rw, bh / rh) if upscale else min(bw / rw, bh / rh, 1.0)
        w, h = max(1, int(rw * scale)), max(1, int(rh * scale))
    elif re.fullmatch(r"\d+,\d+", body):
        w, h = (int(v) for v in body.split(","))
    else:
        raise BadParameter(
            "size", f"{text!r} is not max, w,, ,h, pct:n, w,h or !w,h (with ^ to upscale)"
        )
    if w <= 0 or h <= 0:
        raise BadParameter("size", f"{text!r} asks for an empty image")
    if not upscale and (w > rw or h > rh):
        raise BadParameter(
            "size", f"{text!r} is larger than the region ({rw}×{rh}); prefix ^ to upscale"
        )
    if w * h > max_area:
        raise BadParameter(
            "size", f"{text!r} is larger than the {max_area} pixels this server renders at once"
        )
    return w, h


def canonical_region(area: Region, image: Image) -> str:
    """Return the canonical region: ``full`` for the whole image, else ``x,y,w,h``."""
    if (area.x, area.y, area.width, area.height) == (0, 0, image.size_x, image.size_y):
        return "full"
    return f"{area.x},{area.y},{area.width},{area.height}"


def canonical_size(wanted: tuple[int, int], area: Region, max_area: int) -> str:
    """Return the canonical size: ``max`` when it is what ``max`` returns, else ``w,h``."""
    if wanted == parse_size("max", area, max_area):
        return "max"
    return f"{wanted[0]},{wanted[1]}"


def parse_rotation(text: str) -> tuple[bool, float]:
    mirror = text.startswith("!")
    body = text[1:] if mirror else text
    if not re.fullmatch(_NUMBER, body) or not 0 <= float(body) <= 360:
        raise BadParameter(
            "rotation", f"{text!r} is not a number of degrees from 0 to 360 (! mirrors)"
        )
    return mirror, float(body) % 360


def _cors(resp: falcon.Response) -> None:
    resp.set_header("Access-Control-Allow-Origin", "*")
    resp.append_header("Link", PROFILE_LINK)


class Service:
    """Parse IIIF URLs and answer them through the rendering context."""

    def __init__(self, ctx: RenderContext, public_url: PublicURL) -> None:
        self.ctx = ctx
        settings = ctx.services.settings
        self.public_url = public_url
        self.max_area = min(int(settings["render.max_pixels"]), int(settings["iiif.max_area"]))
        self.aliases: dict[str, int] = {}
        for entry in settings["iiif.aliases"]:
            name, _, value = entry.partition("=")
            if value.strip().isdigit():
                self.aliases[name.strip()] = int(value)

    def view(self, req: falcon.Request, identifier: str) -> View:
        image_id, z, t = parse_identifier(identifier, self.aliases)
        return self.ctx.view(req, image_id, z, t)

    def base(self, req: falcon.Request, identifier: str) -> str:
        """Return the image's service URL (never built from the client's Host header)."""
        return f"{self.public_url.base(req)}/iiif/3/{identifier}"


class Info:
    """`/iiif/3/{identifier}/info.json`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, identifier: str) -> None:
        _cors(resp)
        view = self.service.view(req, identifier)
        image, pyramid = view.image, view.pyramid
        tile = image.tile_size
        factors = [round(image.size_x / level.width) for level in pyramid.levels]
        side = int(math.sqrt(self.service.max_area))
        info = {
            "@context": CONTEXT,
            "id": self.service.base(req, identifier),
            "type": "ImageService3",
            "protocol": "http://iiif.io/api/image",
            "profile": "level2",
            "width": image.size_x,
            "height": image.size_y,
            "maxArea": self.service.max_area,
            "maxWidth": max(image.size_x, side),
            "maxHeight": max(image.size_y, side),
            "sizes": [
                {"width": level.width, "height": level.height} for level in reversed(pyramid.levels)
            ],
            "tiles": [{"width": tile, "height": tile, "scaleFactors": factors}],
            "extraQualities": ["color", "gray", "bitonal"],
            "extraFormats": ["png", "tif", "webp"],
            "extraFeatures": FEATURES,
        }
        resp.content_type = f'application/ld+json;profile="{CONTEXT}"'
        resp.text = json.dumps(info)

    on_head = on_get

    def on_options(self, req: falcon.Request, resp: falcon.Response, identifier: str) -> None:
        _cors(resp)


class Base:
    """`/iiif/3/{identifier}`: 303 to info.json."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, identifier: str) -> None:
        _cors(resp)
        self.service.view(req, identifier)
        raise falcon.HTTPSeeOther(self.service.base(req, identifier) + "/info.json")


class ImageRequest:
    """`/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}.{format}`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        identifier: str,
        region: str,
        size: str,
        rotation: str,
        quality: str,
    ) -> None:
        _cors(resp)
        view = self.service.view(req, identifier)
        name, _, fmt = quality.rpartition(".")
        if not name or name not in QUALITIES:
            raise BadParameter(
                "quality", f"{name or quality!r} is not one of {', '.join(QUALITIES)}"
            )
        if fmt not in FORMATS:
            raise BadParameter("format", f"{fmt!r} is not jpg, png, tif or webp")
        area = parse_region(region, view.image.size_x, view.image.size_y)
        wanted = parse_size(size, area, self.service.max_area)
        mirror, angle = parse_rotation(rotation)
        canonical = (
            f"{self.service.base(req, identifier)}/{canonical_region(area, view.image)}/"
            f"{canonical_size(wanted, area, self.service.max_area)}/"
            f"{'!' if mirror else ''}{angle:g}/{name}.{fmt}"
        )
        resp.append_header("Link", f'<{canonical}>;rel="canonical"')
        look = "color" if name == "default" else name
        output = self.service.ctx.render.iiif(view, area, wanted, mirror, angle, look, fmt)
        self.service.ctx.respond(req, resp, output)


def add_routes(app: falcon.App, ctx: RenderContext, public_url: PublicURL) -> None:
    service = Service(ctx, public_url)
    app.add_route("/iiif/3/{identifier}", Base(service))
    app.add_route("/iiif/3/{identifier}/info.json", Info(service))
    app.add_route(
        "/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}", ImageRequest(service)
    )
