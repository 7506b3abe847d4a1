"""Signing in and out: the /login form, /logout, /api/v2/session, and the caller's API tokens.

- ``GET /login``: a plain HTML form; ``POST /login`` (form fields username, password, next)
  signs in and redirects to ``next`` (a local path only).
- ``POST /logout``: ends the session (CSRF token required, as for every cookie POST).
- ``GET /api/v2/session``: who the caller is, their groups and the session's CSRF token.
- ``POST /api/v2/session`` with JSON ``{"username", "password"}``: signs in; the answer sets
  the ``sessionid`` cookie and carries the user and the CSRF token.
- ``DELETE /api/v2/session``: signs out.
- ``GET|POST /api/v2/tokens``, ``DELETE /api/v2/tokens/{token_id}``: the caller's API tokens.

Too many failed sign-ins answer 429 with Retry-After and a message saying how long to wait.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import urlsplit

import falcon

from coverslip.auth import Auth, Caller, Throttled
from coverslip.errors import BadParameter, Unauthorized
from coverslip.web.access import install_ids
from coverslip.web.middleware import AuthMiddleware, caller
from coverslip.web.ui import Pages

LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Coverslip</title></head>
<body>
<main>
<h1>Sign in to Coverslip</h1>
{message}
<form method="post" action="{prefix}/login">
  <p><label>Username <input name="username" autocomplete="username" required autofocus value="{username}"></label></p>
  <p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
  <input type="hidden" name="next" value="{next}">
  <p><button type="submit">Sign in</button></p>
</form>
</main>
</body>
</html>
"""

LOGOUT_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign out · Coverslip</title></head>
<body><main>
<form method="post" action="{prefix}/logout">
  <input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
  <p><button type="submit">Sign out</button></p>
</form>
</main></body>
</html>
"""


# Anything a browser may drop, turn into a slash, or that another layer may decode into one:
# control characters and spaces, backslashes, and their percent-encoded forms.
_NOT_A_PLAIN_PATH = re.compile(r"[\x00-\x20\x7f\\]|%(?:[01][0-9a-f]|2[0f]|5c|7f)", re.IGNORECASE)


def safe_next(value: Any, default: str) -> str:
    """Return ``value`` if it is a path on this site, else ``default`` (no open redirects).

    # SECURITY: "//host" is another site to a browser, and so is "/\t/host" (browsers drop
    # tabs and newlines), "/\\host" (a backslash reads as a slash) and, once some layer
    # decodes it, "/%2F/host". Only printable ASCII without any of those passes, and the
    # result must parse as a path without scheme or host.
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2048:
        return default
    if not value.isascii() or _NOT_A_PLAIN_PATH.search(value) or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def check_origin(req: falcon.Request, cookies: AuthMiddleware) -> None:
    """Refuse a sign-in posted from another site (login CSRF), by its Origin or Referer."""
    if not cookies.public_url.same_origin(req):
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description="signing in from another site is refused: the Origin is not this site",
        )


def address(req: falcon.Request) -> str:
    """Return the client address (the deploy wrapper puts a trusted proxy's X-Forwarded-For here)."""
    return req.remote_addr or ""


def session_json(who: Caller) -> dict[str, Any]:
    """Return what GET /api/v2/session says about a caller."""
    return {
        "authenticated": who.user is not None,
        "via": who.via,
        "user": who.user.to_json() if who.user else None,
        "groups": [{**group.to_json(), "owner": group.id in who.owner_of} for group in who.groups],
        "csrf_token": who.csrf_token,
        "public": who.public,
    }


class Login:
    """`/login`: the sign-in form and its POST."""

    def __init__(
        self, auth: Auth, cookies: AuthMiddleware, prefix: str, pages: Pages | None = None
    ) -> None:
        self.auth = auth
        self.cookies = cookies
        self.prefix = prefix
        self.pages = pages

    def page(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        next_path: str,
        message: str = "",
        username: str = "",
    ) -> None:
        if self.pages is not None:
            self.pages.render(
                req, resp, "login.html", next=next_path, error=message, username=username
            )
            resp.cache_control = ["private", "no-store"]
            return
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["private", "no-store"]
        resp.text = LOGIN_PAGE.format(
            prefix=escape(self.prefix),
            next=escape(next_path),
            username=escape(username),
            message=f'<p role="alert" class="error">{escape(message)}</p>' if message else "",
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.page(req, resp, safe_next(req.get_param("next"), self.prefix + "/"))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_origin(req, self.cookies)
        form = req.get_media(default_when_empty={})
        if not isinstance(form, dict):
            raise falcon.HTTPBadRequest(description="send the form fields username and password")
        username = str(form.get("username", ""))
        next_path = safe_next(form.get("next"), self.prefix + "/")
        try:
            key, _who = self.auth.login(username, str(form.get("password", "")), address(req))
        except Throttled as exc:
            resp.status = falcon.HTTP_429
            resp.set_header("Retry-After", str(exc.retry_after))
            self.page(req, resp, next_path, str(exc), username)
            return
        except Unauthorized as exc:
            resp.status = falcon.HTTP_401
            self.page(req, resp, next_path, str(exc), username)
            return
        self.end_old_session(req)
        self.cookies.set_cookie(req, resp, key)
        raise falcon.HTTPSeeOther(next_path)

    def end_old_session(self, req: falcon.Request) -> None:
        old = caller(req).session_key
        if old:
            self.auth.logout(old)


class Logout:
    """`/logout`: POST ends the session and goes home; GET shows a sign-out button."""

    def __init__(self, auth: Auth, cookies: AuthMiddleware, prefix: str) -> None:
        self.auth = auth
        self.cookies = cookies
        self.prefix = prefix

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["private", "no-store"]
        resp.text = LOGOUT_PAGE.format(
            prefix=escape(self.prefix), csrf=escape(caller(req).csrf_token or "")
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = caller(req).session_key
        if key:
            self.auth.logout(key)
        self.cookies.clear_cookie(req, resp)
        raise falcon.HTTPSeeOther(self.prefix + "/")


class SessionResource:
    """`/api/v2/session`: who am I (GET), sign in (POST), sign out (DELETE)."""

    def __init__(self, auth: Auth, cookies: AuthMiddleware) -> None:
        self.auth = auth
        self.cookies = cookies

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["private", "no-store"]
        resp.media = session_json(caller(req))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_origin(req, self.cookies)
        body = req.get_media(default_when_empty={})
        if not isinstance(body, dict):
            raise BadParameter("body", "send a JSON object with username and password")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username:
            raise BadParameter("username", "is required")
        if not isinstance(password, str):
            raise BadParameter("password", "is required")
        key, who = self.auth.login(username, password, address(req))
        old = caller(req).session_key
        if old:
            self.auth.logout(old)
        self.cookies.set_cookie(req, resp, key)
        resp.cache_control = ["private", "no-store"]
        resp.media = session_json(who)

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        key = caller(req).session_key
        if key:
            self.auth.logout(key)
            self.cookies.clear_cookie(req, resp)
        resp.status = falcon.HTTP_204


def signed_in(req: falcon.Request) -> Caller:
    who = caller(req)
    if who.user is None:
        raise Unauthorized("sign in, or send a token in X-Auth-Token")
    return who


class TokenList:
    """`/api/v2/tokens`: the caller's API tokens (GET), a new one (POST {name, expires_days})."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = signed_in(req)
        resp.media = {"tokens": [t.to_json() for t in self.auth.tokens.list(who.user_id)]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = signed_in(req)
        assert who.user_id is not None
        body = req.get_media(default_when_empty={})
        if not isinstance(body, dict):
            raise BadParameter("body", "send a JSON object")
        name = body.get("name", "")
        days = body.get("expires_days")
        if not isinstance(name, str):
            raise BadParameter("name", "must be text")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int | float)):
            raise BadParameter("expires_days", "must be a number of days")
        token_id, token = self.auth.tokens.create(who.user_id, name, days)
        resp.status = falcon.HTTP_201
        resp.cache_control = ["private", "no-store"]
        resp.media = {**self.auth.tokens.get(token_id).to_json(), "token": token}


class TokenItem:
    """`/api/v2/tokens/{token_id}`: revoke one of the caller's tokens (DELETE)."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: int) -> None:
        who = signed_in(req)
        self.auth.tokens.revoke(token_id, None if who.is_admin else who.user_id)
        resp.status = falcon.HTTP_204


def too_many(req: falcon.Request, resp: falcon.Response, exc: Throttled, params: Any) -> None:
    """Answer a throttled sign-in with 429 and Retry-After."""
    raise falcon.HTTPTooManyRequests(
        title="Too Many Requests", description=str(exc), retry_after=exc.retry_after
    )


def add_routes(
    app: falcon.App, auth: Auth, cookies: AuthMiddleware, prefix: str, pages: Pages | None = None
) -> None:
    """Mount sign-in and sign-out; with ``pages`` the form is drawn in the UI's layout."""
    install_ids(app)
    prefix = prefix.rstrip("/")
    app.add_error_handler(Throttled, too_many)
    app.add_route("/login", Login(auth, cookies, prefix, pages))
    app.add_route("/logout", Logout(auth, cookies, prefix))
    app.add_route("/api/v2/session", SessionResource(auth, cookies))
    app.add_route("/api/v2/tokens", TokenList(auth))
    app.add_route("/api/v2/tokens/{token_id:id}", TokenItem(auth))
