"""Entry point for application servers: builds the app from the environment, when asked."""

from __future__ import annotations

import os
from typing import Any

import falcon

from coverslip.home import Home
from coverslip.web.app import create_app


def create() -> falcon.App:
    """Return the web app of the home named by COVERSLIP_HOME (Granian's --factory target)."""
    home = Home.from_env()
    return create_app(home.settings(), home)


def create_thumbs() -> falcon.App:
    """Return the thumbnail-only app of the home named by COVERSLIP_HOME."""
    home = Home.from_env()
    return create_app(home.settings(), home, role="thumbs")


def application(environ: dict[str, Any], start_response: Any) -> Any:
    """A PEP 3333 callable for servers that want a module attribute (Gunicorn, uWSGI)."""
    global _app
    if _app is None:
        _app = create_thumbs() if os.environ.get("COVERSLIP_ROLE") == "thumbs" else create()
    return _app(environ, start_response)


_app: falcon.App | None = None
