"""The one place where service errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

import falcon

from coverslip import errors

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
    # SECURITY: a 404 never says more than that nothing is there.
    description = "Not Found" if status == falcon.HTTP_404 else str(exc)
    raise falcon.HTTPError(status, title=title, description=description)


def install(app: falcon.App) -> None:
    """Register the error handlers on ``app``."""
    app.add_error_handler(errors.CoverslipError, handle_service_error)
