"""Signing in and out over HTTP: cookies, session fixation, expiry, CSRF on every unsafe
route (enumerated from the router), tokens, throttling, readiness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from coverslip.auth.passwords import Passwords
from coverslip.home import Home
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from coverslip.web.middleware import CSRF_EXEMPT
from tests.test_auth_matrix import MISSING, SAFE, app_routes
from tests.test_auth_sessions import Clock

PASSWORD = "ana-password"


def make_app(root: Path, clock: Clock | None = None, **settings: Any) -> CoverslipApp:
    home = Home(root)
    app = create_app(home.settings({}, settings), home)
    auth = app.services.auth
    auth.passwords = Passwords.fast()
    if clock is not None:
        auth.set_clock(clock)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> CoverslipApp:
    app = make_app(
        tmp_path,
        clock,
        **{
            "sessions.idle_timeout": "600",
            "sessions.cookie_age": "3600",
            "login.max_failures_user": "5",
            "login.max_failures_address": "8",
            "login.window": "900",
        },
    )
    directory = app.services.auth.directory
    directory.add_user("ana", PASSWORD, full_name="Ana")
    directory.add_user("bo", "bo-password")
    return app


@pytest.fixture
def client(app: CoverslipApp) -> testing.TestClient:
    return testing.TestClient(app)


@pytest.fixture
def worker(app: CoverslipApp, tmp_path: Path, clock: Clock) -> testing.TestClient:
    """Another worker of the same instance: its own in-process caches, the same home."""
    return testing.TestClient(make_app(tmp_path, clock))


def login(
    client: testing.TestClient, username: str = "ana", password: str = PASSWORD, **kw: Any
) -> testing.Result:
    return client.simulate_post(
        "/api/v2/session", json={"username": username, "password": password}, **kw
    )


def cookie_of(result: testing.Result) -> str:
    return str(result.cookies["sessionid"].value)


def test_json_login_sets_a_safe_cookie_and_says_who(client: testing.TestClient) -> None:
    result = login(client)
    assert result.status_code == 200, result.text
    assert result.json["user"]["username"] == "ana"
    assert result.json["csrf_token"]
    cookie = result.cookies["sessionid"]
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    assert cookie.max_age == 3600
    key = cookie_of(result)
    me = client.simulate_get("/api/v2/session", headers={"Cookie": f"sessionid={key}"})
    assert me.json["user"]["username"] == "ana" and me.json["via"] == "session"
    assert me.json["csrf_token"] == result.json["csrf_token"]
    nobody = client.simulate_get("/api/v2/session")
    assert nobody.json["authenticated"] is False and nobody.json["user"] is None


def test_secure_cookie_only_over_https_from_trusted_proxy(client: testing.TestClient) -> None:
    trusted = login(client, headers={"X-Forwarded-Proto": "https"}, remote_addr="127.0.0.1")
    assert trusted.cookies["sessionid"].secure
    spoofed = login(client, headers={"X-Forwarded-Proto": "https"}, remote_addr="203.0.113.9")
    assert not spoofed.cookies["sessionid"].secure
    direct = login(client, protocol="https")
    assert direct.cookies["sessionid"].secure


def test_browser_session_cookie(tmp_path: Path) -> None:
    app = make_app(tmp_path, **{"sessions.expire_at_browser_close": "true"})
    app.services.auth.directory.add_user("ana", PASSWORD)
    result = login(testing.TestClient(app))
    assert result.cookies["sessionid"].max_age is None
    assert result.cookies["sessionid"].expires is None


def test_login_makes_a_new_key_and_ends_the_old_session(client: testing.TestClient) -> None:
    first = cookie_of(login(client))
    second = login(client, headers={"Cookie": f"sessionid={first}"})
    key = cookie_of(second)
    assert key != first
    stale = client.simulate_get("/api/v2/session", headers={"Cookie": f"sessionid={first}"})
    assert stale.json["authenticated"] is False
    assert stale.cookies["sessionid"].value == ""  # the stale cookie is cleared
    # A key chosen by an attacker is never adopted.
    planted = login(client, headers={"Cookie": "sessionid=attacker-chosen"})
    assert cookie_of(planted) != "attacker-chosen"


def test_form_login_redirects_locally_only(client: testing.TestClient) -> None:
    page = client.simulate_get("/login", params={"next": "/images/1"})
    assert page.status_code == 200 and 'name="password"' in page.text
    assert 'value="/images/1"' in page.text
    form = {"username": "ana", "password": PASSWORD, "next": "/images/1"}
    done = client.simulate_post("/login", body=_form(form), headers=_FORM)
    assert done.status_code == 303 and done.headers["location"].endswith("/images/1")
    assert done.cookies["sessionid"].http_only
    evil = client.simulate_post(
        "/login", body=_form({**form, "next": "//evil.example/"}), headers=_FORM
    )
    assert (
        evil.status_code == 303
        and evil.headers["location"].endswith("/")
        and "evil" not in evil.headers["location"]
    )
    wrong = client.simulate_post(
        "/login", body=_form({**form, "password": "nope-nope"}), headers=_FORM
    )
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    assert "sessionid" not in wrong.cookies


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _form(values: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def test_logout_form_needs_csrf_and_ends_the_session(client: testing.TestClient) -> None:
    result = login(client)
    key, csrf = cookie_of(result), result.json["csrf_token"]
    headers = {"Cookie": f"sessionid={key}", **_FORM}
    refused = client.simulate_post("/logout", body="", headers=headers)
    assert refused.status_code == 403 and "CSRF" in refused.text
    done = client.simulate_post(
        "/logout", body=_form({"csrfmiddlewaretoken": csrf}), headers=headers
    )
    assert done.status_code == 303
    assert done.cookies["sessionid"].value == ""
    after = client.simulate_get("/api/v2/session", headers={"Cookie": f"sessionid={key}"})
    assert after.json["authenticated"] is False


def test_delete_session(client: testing.TestClient, worker: testing.TestClient) -> None:
    result = login(client)
    headers = {"Cookie": f"sessionid={cookie_of(result)}"}
    assert worker.simulate_get("/api/v2/session", headers=headers).json["user"] is not None
    assert client.simulate_delete("/api/v2/session", headers=headers).status_code == 403
    headers["X-CSRFToken"] = result.json["csrf_token"]
    assert client.simulate_delete("/api/v2/session", headers=headers).status_code == 204
    assert client.simulate_get("/api/v2/session", headers=headers).json["user"] is None
    # The other worker had the session cached; the sign-out reaches it on its next request.
    assert worker.simulate_get("/api/v2/session", headers=headers).json["user"] is None


def test_idle_and_absolute_expiry_over_http(client: testing.TestClient, clock: Clock) -> None:
    headers = {"Cookie": f"sessionid={cookie_of(login(client))}"}

    def who() -> Any:
        return client.simulate_get("/api/v2/session", headers=headers).json["user"]

    clock.advance(500)
    assert who() is not None
    clock.advance(601)
    assert who() is None
    headers = {"Cookie": f"sessionid={cookie_of(login(client))}"}
    for _ in range(7):
        clock.advance(500)
        assert who() is not None
    clock.advance(500)  # 4000 s after login: past sessions.cookie_age despite activity
    assert who() is None


def test_password_change_and_disable_end_sessions(
    app: CoverslipApp, client: testing.TestClient
) -> None:
    auth = app.services.auth
    ana = auth.directory.user("ana")
    headers = {"Cookie": f"sessionid={cookie_of(login(client))}"}
    auth.change_password(ana.id, "another-password")
    assert client.simulate_get("/api/v2/session", headers=headers).json["user"] is None
    headers = {"Cookie": f"sessionid={cookie_of(login(client, password='another-password'))}"}
    auth.disable(ana.id)
    assert client.simulate_get("/api/v2/session", headers=headers).json["user"] is None
    assert login(client, password="another-password").status_code == 401


def test_unsafe_routes_need_csrf_with_cookies_but_not_with_tokens(
    app: CoverslipApp, client: testing.TestClient
) -> None:
    auth = app.services.auth
    admin_id, _ = app.services.catalog.ensure_local_admin()
    auth.directory.set_password(admin_id, "admin-password")
    result = login(client, "admin", "admin-password")
    cookie = {"Cookie": f"sessionid={cookie_of(result)}"}
    _id, token = auth.tokens.create(admin_id)
    checked = 0
    for route in app_routes(app):
        path = route.path(MISSING, MISSING)
        for method in route.methods:
            if method in SAFE or (method, route.template) in CSRF_EXEMPT:
                continue
            checked += 1
            for headers in (cookie, {**cookie, "X-CSRFToken": "wrong"}):
                got = client.simulate_request(method, path, headers=headers)
                assert got.status_code == 403 and "CSRF" in got.text, (method, path, got.text)
            by_token = client.simulate_request(method, path, headers={"X-Auth-Token": token})
            assert "CSRF" not in by_token.text, (method, path)
            with_csrf = {**cookie, "X-CSRFToken": result.json["csrf_token"]}
            if route.template not in ("/logout", "/api/v2/session"):
                got = client.simulate_request(method, path, headers=with_csrf)
                assert "CSRF" not in got.text, (method, path)
    assert checked >= 5
    # Signing in is exempt: it cannot know the token of a session it has not made yet.
    assert login(client, "admin", "admin-password", headers=cookie).status_code == 200


def test_tokens_over_http(client: testing.TestClient, worker: testing.TestClient) -> None:
    result = login(client)
    headers = {"Cookie": f"sessionid={cookie_of(result)}", "X-CSRFToken": result.json["csrf_token"]}
    made = client.simulate_post("/api/v2/tokens", json={"name": "laptop"}, headers=headers)
    assert made.status_code == 201
    token = made.json["token"]
    for auth_header in ({"X-Auth-Token": token}, {"Authorization": f"Bearer {token}"}):
        me = client.simulate_get("/api/v2/session", headers=auth_header).json
        assert me["user"]["username"] == "ana" and me["via"] == "token"
        assert me["csrf_token"] is None
    listed = client.simulate_get("/api/v2/tokens", headers={"X-Auth-Token": token}).json
    assert [t["name"] for t in listed["tokens"]] == ["laptop"]
    assert token not in str(listed)
    assert worker.simulate_get("/api/v2/tokens", headers={"X-Auth-Token": token}).status_code == 200
    gone = client.simulate_delete(
        f"/api/v2/tokens/{made.json['id']}", headers={"X-Auth-Token": token}
    )
    assert gone.status_code == 204
    for each in (client, worker):
        refused = each.simulate_get("/api/v2/images", headers={"X-Auth-Token": token})
        assert refused.status_code == 401 and "token" in refused.json["description"]
    assert client.simulate_get("/api/v2/tokens").status_code == 401


def test_throttling_per_username_slows_but_never_locks(
    client: testing.TestClient, clock: Clock
) -> None:
    for _ in range(5):
        assert login(client, password="wrong-password").status_code == 401
    slowed = login(client, password=PASSWORD)
    assert slowed.status_code == 429 and "try again in 2 seconds" in slowed.json["description"]
    assert slowed.headers["retry-after"] == "2"
    clock.advance(2)
    assert login(client, password="wrong-password").status_code == 401  # the sixth failure
    assert login(client, password=PASSWORD).headers["retry-after"] == "4"
    assert login(client, "bo", "bo-password").status_code == 200  # other users are not slowed
    clock.advance(4)
    assert login(client, password=PASSWORD).status_code == 200
    # A success clears the username's count.
    assert login(client, password="wrong-password").status_code == 401
    assert login(client, password=PASSWORD).status_code == 200


def test_throttling_per_address(client: testing.TestClient, clock: Clock) -> None:
    for n in range(8):
        assert login(client, f"user{n}", "wrong-password").status_code == 401
    refused = login(client, "bo", "bo-password")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    other_address = login(client, "bo", "bo-password", remote_addr="10.0.0.9")
    assert other_address.status_code == 200
    form = client.simulate_post(
        "/login", body=_form({"username": "bo", "password": "bo-password"}), headers=_FORM
    )
    assert form.status_code == 429 and "too many failed sign-ins" in form.text
    clock.advance(2)
    assert login(client, "bo", "bo-password").status_code == 200


def test_readyz_names_the_session_store(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    app = make_app(tmp_path, **{"sessions.backend": "redis", "sessions.redis_url": url})
    client = testing.TestClient(app)
    got = client.simulate_get("/readyz")
    assert got.status_code == 503 and "sessions" in got.json["down"]
    assert client.simulate_get("/healthz").status_code == 200


@pytest.fixture
def redis_app(tmp_path: Path, redis_url: str, clock: Clock) -> Iterator[CoverslipApp]:
    app = make_app(
        tmp_path, clock, **{"sessions.backend": "redis", "sessions.redis_url": redis_url}
    )
    app.services.auth.directory.add_user("ana", PASSWORD)
    yield app


def test_redis_sessions_over_http(redis_app: CoverslipApp, clock: Clock) -> None:
    client = testing.TestClient(redis_app)
    assert client.simulate_get("/readyz").status_code == 200
    result = login(client)
    headers = {"Cookie": f"sessionid={cookie_of(result)}", "X-CSRFToken": result.json["csrf_token"]}
    assert client.simulate_get("/api/v2/session", headers=headers).json["user"]["username"] == "ana"
    assert client.simulate_delete("/api/v2/session", headers=headers).status_code == 204
    assert client.simulate_get("/api/v2/session", headers=headers).json["user"] is None
