"""The sign-in redirect (`next=`) never leaves the site, as a browser reads the Location.

Every candidate the check accepts is resolved by Chromium's own URL parser (the one that
follows a Location header), so browser normalisation (dropped tabs and newlines, backslashes
read as slashes, percent-decoding of dots) is tested by a browser, not by a model of one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from falcon import testing

from coverslip.auth.passwords import Passwords
from coverslip.home import Home
from coverslip.web import create_app
from coverslip.web.session import safe_next
from tests.test_ui import CHROMIUM, FLAGS

SITE = "http://site.test"
DEFAULT = "/"
# Known bypasses of naive checks: each is another site once a browser has normalised it.
ESCAPES = [
    "//evil.example/",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\n/evil.example/",
    "\t//evil.example/",
    "/\\evil.example/",
    "\\/evil.example/",
    "/\\/evil.example/",
    "/%09/evil.example/",
    "/%0a/evil.example/",
    "/%2f/evil.example/",
    "/%2F%2Fevil.example/",
    "/%5c/evil.example/",
    "/%5Cevil.example/",
    "/ /evil.example/",
    "/\x00/evil.example/",
    "/\x0b/evil.example/",
    "/\u3000/evil.example/",
    "/\uff0f/evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "",
]
KEPT = ["/", "/images/12", "/datasets/3?q=cells&sort=name&page=2", "/iiif/3/7/info.json#top"]


@pytest.mark.parametrize("value", ESCAPES)
def test_escapes_fall_back_to_the_default(value: str) -> None:
    assert safe_next(value, DEFAULT) == DEFAULT


@pytest.mark.parametrize("value", KEPT)
def test_local_paths_are_kept(value: str) -> None:
    assert safe_next(value, DEFAULT) == value


def candidates() -> list[str]:
    """Return short paths built from every character a browser treats specially."""
    pieces = ["/", "\\", "\t", "\n", "\r", " ", "%09", "%2f", "%5c", "%2e", ".", "@", ":", "?", "#"]
    found = set(ESCAPES + KEPT)
    for size in (1, 2, 3):
        for combo in itertools.product(pieces, repeat=size):
            found.add("/" + "".join(combo) + "evil.example/x")
            found.add("".join(combo) + "evil.example")
    return sorted(found)


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is missing: apt-get install -y chromium (`make test` does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser.new_context().new_page()
        browser.close()


def test_every_accepted_next_stays_on_the_site_in_chromium(page: object) -> None:
    accepted = [value for value in candidates() if safe_next(value, DEFAULT) == value]
    assert len(accepted) > 100, "the check refuses nearly everything: the test proves little"
    origins = page.evaluate(  # type: ignore[attr-defined]
        "([base, values]) => values.map(v => { try { return new URL(v, base).origin; }"
        " catch (e) { return 'invalid'; } })",
        [SITE + "/login", accepted],
    )
    escaped = [value for value, origin in zip(accepted, origins, strict=True) if origin != SITE]
    assert not escaped, f"Chromium leaves the site for: {escaped[:10]!r}"
    # And the known escapes really are escapes in this browser (so the list tests something).
    raw = page.evaluate(  # type: ignore[attr-defined]
        "([base, values]) => values.map(v => { try { return new URL(v, base).origin; }"
        " catch (e) { return 'invalid'; } })",
        [SITE + "/login", ["/\t/evil.example/", "/\\evil.example/", "//evil.example/"]],
    )
    assert raw == ["http://evil.example"] * 3


@pytest.fixture
def client(tmp_path: Path) -> testing.TestClient:
    home = Home(tmp_path)
    app = create_app(home.settings({}, {}), home)
    app.services.auth.passwords = Passwords.fast()
    app.services.auth.directory.add_user("ana", "ana-password")
    return testing.TestClient(app)


@pytest.mark.parametrize("value", ESCAPES[:16])
def test_login_redirect_refuses_the_escapes(client: testing.TestClient, value: str) -> None:
    form = urlencode({"username": "ana", "password": "ana-password", "next": value})
    done = client.simulate_post(
        "/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert done.status_code == 303
    assert done.headers["location"] in ("/", "http://falconframework.org/")
    page = client.simulate_get("/login", params={"next": value})
    assert 'name="next" value="/"' in page.text
