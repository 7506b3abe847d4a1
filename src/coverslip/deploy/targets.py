"""What each application server loads: the web or thumbnail app of COVERSLIP_HOME.

Granian calls a factory (``--factory``); Gunicorn calls one too (``module:func()``);
uWSGI wants a module attribute, so it gets a callable that builds the app on first use,
in the worker (``lazy-apps``) or in the master (preload). ``servers.TARGETS`` names them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from coverslip.deploy.forwarded import trust_forwarded
from coverslip.deploy.wsgi_input import WSGIApp, mark_input_terminated
from coverslip.home import Home
from coverslip.web.app import create_app


def _wrapped(role: str, terminate: bool = True) -> WSGIApp:
    home = Home.from_env()
    settings = home.settings()
    app: WSGIApp = create_app(settings, home, role=role)
    if terminate:
        app = mark_input_terminated(app)
    # NOTE: every server, Gunicorn too: it trusts forwarded_allow_ips only for the scheme and
    # keeps the proxy's REMOTE_ADDR, so behind nginx every client was 127.0.0.1 to the
    # sign-in throttle.
    return trust_forwarded(app, settings["web.forwarded_allow_ips"])


def web_granian() -> WSGIApp:
    """Return the web app for Granian: chunked bodies readable to EOF, trusted proxies."""
    return _wrapped("web")


def thumbs_granian() -> WSGIApp:
    """Return the thumbnail app for Granian."""
    return _wrapped("thumbs")


def web_gunicorn() -> WSGIApp:
    """Return the web app for Gunicorn (which terminates chunked input itself), trusted proxies."""
    return _wrapped("web", terminate=False)


def thumbs_gunicorn() -> WSGIApp:
    """Return the thumbnail app for Gunicorn."""
    return _wrapped("thumbs", terminate=False)


class _Lazy:
    """A WSGI callable that builds the app of ``role`` on its first request."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.app: WSGIApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.app is None:
            with self._lock:
                if self.app is None:
                    self.app = _wrapped(self.role)
        return self.app(environ, start_response)


web_uwsgi = _Lazy("web")
thumbs_uwsgi = _Lazy("thumbs")
