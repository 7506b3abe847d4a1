"""Trust X-Forwarded-Proto and X-Forwarded-For from the proxies in web.forwarded_allow_ips.

Every application server's target is wrapped: Granian and uWSGI do neither, and Gunicorn
trusts its forwarded_allow_ips for the scheme only, keeping the proxy's address as the client's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coverslip.deploy.wsgi_input import WSGIApp
from coverslip.web.middleware import PROXY_ADDR


def trust_forwarded(app: WSGIApp, allowed: Iterable[str]) -> WSGIApp:
    """Return ``app`` taking scheme and client address from a trusted proxy's headers."""
    trusted = {ip.strip() for ip in allowed if ip.strip()}
    anyone = "*" in trusted

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        # SECURITY: only a listed proxy may say which scheme or client a request came from.
        if anyone or environ.get("REMOTE_ADDR") in trusted:
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            client = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
            if client:
                # NOTE: the app still needs the proxy's own address to believe its other
                # headers (X-Forwarded-Host), so it is kept before REMOTE_ADDR is replaced.
                environ[PROXY_ADDR] = environ.get("REMOTE_ADDR")
                environ["REMOTE_ADDR"] = client
        return app(environ, start_response)

    return wrapped
