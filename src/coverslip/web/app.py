"""Assemble the WSGI application from settings and services."""

from __future__ import annotations

import os

import falcon

from coverslip import logs
from coverslip.auth.fresh import RequestScope
from coverslip.cache import RenderCache
from coverslip.catalog import Catalog
from coverslip.config import Settings
from coverslip.home import Home
from coverslip.pixels import PixelStore
from coverslip.services import Services
from coverslip.web import errors, gateway, gateway_meta, iiif, images_api, ops, plates, session, ui
from coverslip.web.access import Access
from coverslip.web.middleware import AuthMiddleware
from coverslip.web.rendering import RenderContext

ROLES = ("web", "thumbs")


class CoverslipApp(falcon.App):
    """The Falcon app, holding the services it was built with (tests and tools reach them here)."""

    services: Services


def create_app(
    settings: Settings,
    home: Home,
    catalog: Catalog | None = None,
    pixels: PixelStore | None = None,
    cache: RenderCache | None = None,
    role: str = "web",
) -> CoverslipApp:
    """Return the Falcon app; ``role`` "thumbs" mounts only the thumbnail routes."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    services = Services.build(settings, home, catalog=catalog, pixels=pixels, cache=cache)
    logs.configure(settings["web.log_format"], settings["web.log_level"])
    logs.configure_access(os.environ.get(logs.ACCESS_LOG_ENV), settings["web.log_format"])
    app = CoverslipApp()
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = False
    errors.install(app, settings["web.prefix"])
    auth_middleware = AuthMiddleware(services.auth, settings)
    app.add_middleware(ops.Measure())
    app.add_middleware(RequestScope())
    app.add_middleware(auth_middleware)
    ops.add_routes(app, services, role)
    access = Access(services)
    render_context = RenderContext(services)
    gateway.add_routes(app, render_context, thumbs_only=role == "thumbs")
    if role == "web":
        gateway_meta.add_routes(app, render_context, access)
        iiif.add_routes(app, render_context, auth_middleware.public_url)
        images_api.add_routes(app, services, access, auth_middleware.public_url)
        plates.add_routes(app, services, access)
        pages = ui.add_routes(app, services, access)
        session.add_routes(app, services.auth, auth_middleware, settings["web.prefix"], pages)
    app.services = services
    return app
