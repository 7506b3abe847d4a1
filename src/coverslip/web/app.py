"""Assemble the WSGI application from settings and services."""

from __future__ import annotations

import falcon

from coverslip.cache import RenderCache
from coverslip.catalog import Catalog
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.pixels import PixelStore
from coverslip.services import Services
from coverslip.web import errors, images_api, ops

ROLES = ("web", "thumbs")


def create_app(
    settings: Settings,
    home: Home,
    catalog: Catalog | None = None,
    pixels: PixelStore | None = None,
    cache: RenderCache | None = None,
    role: str = "web",
) -> falcon.App:
    """Return the Falcon app; ``role`` "thumbs" mounts only the thumbnail routes."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    services = Services.build(settings, home, catalog=catalog, pixels=pixels, cache=cache)
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = False
    errors.install(app)
    ops.add_routes(app, services)
    if role == "web":
        images_api.add_routes(app, services)
    app.services = services  # type: ignore[attr-defined]
    return app
