"""The one place where service errors become HTTP responses."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import falcon
import jinja2
import redis

from coverslip import errors
from coverslip.catalog.base import UNAVAILABLE as CATALOG_UNAVAILABLE

log = logging.getLogger("coverslip.web")

# Most specific first: a Duplicate is a Conflict, an UnsupportedFormat an ImportFailed.
STATUS: tuple[tuple[type[Exception], str, str], ...] = (
    (errors.NotFound, falcon.HTTP_404, "Not Found"),
    (errors.BadParameter, falcon.HTTP_400, "Bad Request"),
    (errors.Unauthorized, falcon.HTTP_401, "Unauthorized"),
    (errors.Forbidden, falcon.HTTP_403, "Forbidden"),
    (errors.Conflict, falcon.HTTP_409, "Conflict"),
    (errors.TooLarge, falcon.HTTP_413, "Payload Too Large"),
    (errors.Gone, falcon.HTTP_410, "Gone"),
    (errors.ImportFailed, falcon.HTTP_400, "Bad Request"),
    (errors.NoSpace, falcon.HTTP_507, "Insufficient Storage"),
    (errors.Damaged, falcon.HTTP_503, "Service Unavailable"),
    (errors.StoreUnavailable, falcon.HTTP_503, "Service Unavailable"),
)

# What a catalog or session store that is down or not answering raises.
UNAVAILABLE: tuple[type[Exception], ...] = (
    *CATALOG_UNAVAILABLE,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRY_AFTER = 30
TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def _error_template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape()
    )
    return env.get_template("error.html")


def error_page(prefix: str, req: falcon.Request, title: str, message: str) -> str:
    """Return the site's error page (for errors that reach no page resource)."""
    return _error_template().render(
        prefix=prefix, user=None, title=title, message=message, request_path=req.relative_uri
    )


def status_of(exc: Exception) -> tuple[str, str]:
    """Return the HTTP status and title for a service error."""
    for kind, status, title in STATUS:
        if isinstance(exc, kind):
            return status, title
    return falcon.HTTP_500, "Internal Server Error"


def handle_service_error(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
) -> None:
    """Turn a typed service error into a JSON error response."""
    status, title = status_of(exc)
    if status.startswith("5"):
        log.error("%s %s: %s", req.method, req.path, exc)
    # SECURITY: a 404 never says more than that nothing is there.
    description = "Not Found" if status == falcon.HTTP_404 else str(exc)
    raise falcon.HTTPError(status, title=title, description=description)


def wants_html(req: falcon.Request) -> bool:
    """Return whether the client is a browser asking for a page rather than for data."""
    return req.client_prefers([falcon.MEDIA_JSON, falcon.MEDIA_HTML]) == falcon.MEDIA_HTML


class Unavailable:
    """Answer 503 when the catalog or the session store is down: a page for browsers."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")

    def __call__(
        self, req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
    ) -> None:
        # SECURITY: the log has the details (host, port, SQL); the client only the outage.
        log.error("%s %s: a backing service is unavailable: %s", req.method, req.path, exc)
        title, message = "Service Unavailable", "The catalog or session store is not answering."
        if not wants_html(req):
            raise falcon.HTTPServiceUnavailable(
                title=title, description=message, retry_after=RETRY_AFTER
            )
        resp.status = falcon.HTTP_503
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-store"]
        resp.retry_after = RETRY_AFTER
        resp.text = error_page(
            self.prefix, req, "Temporarily unavailable", f"{message} Please try again in a minute."
        )


class Serializer:
    """Write an HTTP error as the site's error page for browsers, as JSON for programs.

    Falcon's own serializer answers XML to a client that prefers it, as browsers say they
    do; nobody here reads XML errors.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")

    def __call__(self, req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
        resp.append_header("Vary", "Accept")
        if not wants_html(req):
            resp.content_type = falcon.MEDIA_JSON
            resp.data = exc.to_json()
            return
        if exc.status_code == 404:
            title, message = "Not found", "There is nothing here, or you may not see it."
        else:
            title = exc.title or "Error"
            message = exc.description or title
        resp.content_type = falcon.MEDIA_HTML
        resp.text = error_page(self.prefix, req, title, message)


def install(app: falcon.App, prefix: str = "") -> None:
    """Register the error handlers and the error serializer on ``app``."""
    app.set_error_serializer(Serializer(prefix))
    app.add_error_handler(errors.CoverslipError, handle_service_error)
    unavailable = Unavailable(prefix)
    for kind in UNAVAILABLE:
        app.add_error_handler(kind, unavailable)
