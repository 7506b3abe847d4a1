"""The images API under /api/v2, modelled on OpenStack Glance v2."""

from __future__ import annotations

import falcon

from coverslip.errors import BadParameter
from coverslip.services import Services


def _int_param(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise BadParameter(name, f"{value} is not between {low} and {high}")
    return value


class ImageList:
    """`GET /api/v2/images`: the images, as JSON."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = _int_param(req, "limit", 100, 1, 1000)
        offset = _int_param(req, "offset", 0, 0, 2**31)
        status = req.get_param("status")
        images = self.services.catalog.list_images(status=status, limit=limit, offset=offset)
        resp.media = {"images": [image.to_json() for image in images]}


class ImageItem:
    """`GET /api/v2/images/{id}`: one image."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: int) -> None:
        resp.media = self.services.catalog.get_image(image_id).to_json()


def add_routes(app: falcon.App, services: Services) -> None:
    app.add_route("/api/v2/images", ImageList(services))
    app.add_route("/api/v2/images/{image_id:int}", ImageItem(services))
