"""Resolve who is asking, once per request, and defend cookie sessions against CSRF.

``AuthMiddleware`` sets ``req.context.caller`` (a ``coverslip.auth.Caller``) from, in order:
an API token (``X-Auth-Token`` or ``Authorization: Bearer``; a bad one is 401), the
``sessionid`` cookie (an unknown or expired one reads as anonymous and is cleared), else
anonymous. Unsafe methods (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry
the session's CSRF token in ``X-CSRFToken`` or a ``csrfmiddlewaretoken`` form field; token
requests need none, and signing in is exempt.

``web.access.Access`` turns that caller into permission answers for the routes.
"""

from __future__ import annotations

import hmac
import re
import socket
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import falcon

from coverslip.auth import Auth, Caller

COOKIE = "sessionid"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes that need no caller at all: load balancers probe them many times a second.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Signing in starts a session; it cannot carry that session's CSRF token yet.
CSRF_EXEMPT = frozenset({("POST", "/login"), ("POST", "/api/v2/session")})


def caller(req: falcon.Request) -> Caller:
    """Return the request's caller (the middleware always sets one)."""
    found = getattr(req.context, "caller", None)
    assert isinstance(found, Caller), "AuthMiddleware did not run"
    return found


def request_token(req: falcon.Request) -> str | None:
    """Return the API token the request carries, if any."""
    token = req.get_header("X-Auth-Token")
    if token:
        return token.strip()
    authorization = req.get_header("Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def is_https(req: falcon.Request, trusted: frozenset[str]) -> bool:
    """Return whether the request came over https (X-Forwarded-Proto only from a trusted proxy)."""
    if req.scheme == "https":
        return True
    # SECURITY: anyone can send X-Forwarded-Proto; only a listed proxy is believed.
    if "*" in trusted or req.remote_addr in trusted:
        proto = (req.get_header("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        return proto == "https"
    return False


_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
# The WSGI environ key where a launcher may keep the proxy's address after rewriting REMOTE_ADDR.
PROXY_ADDR = "coverslip.proxy_addr"


class PublicURL:
    """The site's base URL as visitors see it, for absolute links (IIIF ids, Location).

    # SECURITY: never the client's Host header. web.public_url when set; else the host a
    # trusted proxy forwards (X-Forwarded-Host, X-Forwarded-Proto); else web.host and web.port.
    """

    def __init__(self, settings: Any) -> None:
        configured = str(settings["web.public_url"]).strip().rstrip("/")
        self.configured_origin = ""  # web.public_url's scheme://host[:port], as Origin names it
        if configured:  # checked by the settings registry when set
            parts = urlsplit(configured)
            self.configured_origin = f"{parts.scheme}://{parts.netloc}".lower()
        self.configured = configured
        self.prefix = str(settings["web.prefix"]).rstrip("/")
        self.trusted = frozenset(ip.strip() for ip in settings["web.forwarded_allow_ips"])
        self.host = str(settings["web.host"]).strip()
        self.port = int(settings["web.port"])

    @cached_property
    def own_host(self) -> str:
        """Return web.host:web.port (this machine's name when listening on every address)."""
        host = self.host
        if host in WILDCARD_HOSTS:
            host = socket.getfqdn()  # PERF: once, and only when no better source exists
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def from_proxy(self, req: falcon.Request) -> bool:
        """Return whether the request came through a proxy in web.forwarded_allow_ips."""
        # NOTE: a launcher that replaces REMOTE_ADDR with the forwarded client address keeps
        # the proxy's own address under PROXY_ADDR; Gunicorn leaves REMOTE_ADDR as it is.
        peer = req.env.get(PROXY_ADDR) or req.remote_addr
        return "*" in self.trusted or peer in self.trusted

    def origin(self, req: falcon.Request) -> str:
        """Return ``scheme://host[:port]`` (or web.public_url) to put before the app's paths."""
        if self.configured:
            return self.configured
        scheme = "https" if is_https(req, self.trusted) else "http"
        if self.from_proxy(req):
            forwarded = (req.get_header("X-Forwarded-Host") or "").split(",")[0].strip()
            if forwarded and _HOST.match(forwarded):
                return f"{scheme}://{forwarded.lower()}"
        return f"{scheme}://{self.own_host}"

    def base(self, req: falcon.Request) -> str:
        """Return the absolute URL of the application's root, web.prefix included."""
        return f"{self.origin(req)}{req.root_path}{self.prefix}"

    def same_origin(self, req: falcon.Request) -> bool:
        """Return whether a browser's POST comes from this site (Origin, else Referer).

        Requests that carry neither (scripts, command-line clients) pass; every current
        browser sends Origin on a cross-site POST.
        """
        sent = req.get_header("Origin")
        if sent is None:
            referer = req.get_header("Referer")
            if not referer:
                return True
            parts = urlsplit(referer)
            sent = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
        sent = sent.strip().lower().rstrip("/")
        scheme = "https" if is_https(req, self.trusted) else "http"
        allowed = {
            f"{scheme}://{(req.get_header('Host') or '').lower()}",
            self.origin(req).lower(),
        }
        if self.configured:
            allowed.add(self.configured_origin)
        return sent in allowed


class AuthMiddleware:
    """Set ``req.context.caller``; enforce CSRF on cookie-authenticated unsafe requests."""

    def __init__(self, auth: Auth, settings: Any) -> None:
        self.auth = auth
        # One per app: the IIIF and images API routes build their absolute links with it too.
        self.public_url = PublicURL(settings)
        self.trusted = self.public_url.trusted
        self.cookie_age = int(settings["sessions.cookie_age"])
        self.browser_session = bool(settings["sessions.expire_at_browser_close"])
        self.cookie_path = self.public_url.prefix + "/"

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        anonymous = self.auth.anonymous
        if req.path in OPEN_PATHS:
            req.context.caller = anonymous
            return
        token = request_token(req)
        if token is not None:
            found = self.auth.caller_for_token(token)
            if found is None:
                raise falcon.HTTPUnauthorized(
                    title="Unauthorized",
                    description="the API token is unknown, revoked or expired",
                    challenges=["Bearer"],
                )
            req.context.caller = found
            return
        key = req.cookies.get(COOKIE)
        if not key:
            req.context.caller = anonymous
            return
        found = self.auth.caller_for_session(key)
        if found is None:
            req.context.caller = anonymous
            req.context.clear_session = True
            return
        req.context.caller = found
        if req.method in UNSAFE and (req.method, req.path) not in CSRF_EXEMPT:
            self.check_csrf(req, found)

    @staticmethod
    def check_csrf(req: falcon.Request, found: Caller) -> None:
        """Raise 403 unless the request carries the session's CSRF token."""
        sent = req.get_header("X-CSRFToken")
        if not sent and (req.content_type or "").startswith("application/x-www-form-urlencoded"):
            form = req.get_media(default_when_empty={})
            value = form.get("csrfmiddlewaretoken") if isinstance(form, dict) else None
            sent = value if isinstance(value, str) else None
        expected = found.csrf_token or ""
        # SECURITY: constant-time comparison; an empty expected token never matches.
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description="CSRF token missing or wrong: send the session's token in the "
                "X-CSRFToken header (GET /api/v2/session gives it)",
            )

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        if getattr(req.context, "clear_session", False):
            self.clear_cookie(req, resp)

    # -- the cookie ---------------------------------------------------------------------

    def set_cookie(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        """Send the session cookie: HttpOnly, SameSite=Lax, Secure over https."""
        req.context.clear_session = False
        resp.set_cookie(
            COOKIE,
            key,
            max_age=None if self.browser_session else self.cookie_age,
            path=self.cookie_path,
            secure=is_https(req, self.trusted),
            http_only=True,
            same_site="Lax",
        )

    def clear_cookie(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.unset_cookie(COOKIE, path=self.cookie_path, same_site="Lax")
