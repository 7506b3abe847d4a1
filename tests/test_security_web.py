"""Regressions of the security review (issue 11) on the web surfaces: bounded placeholders and
tiles, no existence oracle through markers or dataset writes, ids that are never reused and
ETags that name their image, private groups in the UI, readers resetting only their own
settings, private caching, the public base URL, login CSRF, strict ids and X-Accel paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import numpy as np
import pytest
from falcon import testing

from coverslip.auth.passwords import Passwords
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from coverslip.web.files import INTERNAL_PREFIX
from tests.helpers import decode, old_catalog
from tests.test_auth_matrix import MISSING, app_routes

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Lab:
    """Two private labs, a read-only group and a public one, with images and datasets."""

    app: CoverslipApp
    client: testing.TestClient
    tokens: dict[str, dict[str, str]]
    users: dict[str, int]
    groups: dict[str, int]
    images: dict[str, int]
    datasets: dict[str, int]
    root: Path

    def get(self, who: str | None, path: str, **kw: Any) -> testing.Result:
        headers = {**(self.tokens[who] if who else {}), **kw.pop("headers", {})}
        return self.client.simulate_get(path, headers=headers, **kw)

    def post(self, who: str | None, path: str, **kw: Any) -> testing.Result:
        headers = {**(self.tokens[who] if who else {}), **kw.pop("headers", {})}
        return self.client.simulate_post(path, headers=headers, **kw)


def import_array(
    app: CoverslipApp, root: Path, name: str, owner: int, group: int, seed: int
) -> int:
    source = root / f"{name}.npy"
    np.save(source, (np.arange(100 * 120, dtype=np.uint16).reshape(100, 120) * 7 + seed))
    options = ImportOptions(name=name, owner_id=owner, group_id=group)
    return app.services.importer().import_path(source, options)


def build_lab(root: Path, **settings: Any) -> Lab:
    home = Home(root)
    app = create_app(home.settings({}, settings), home)
    services = app.services
    services.auth.passwords = Passwords.fast()
    directory = services.auth.directory
    users = {name: directory.add_user(name, f"{name}-password") for name in ("ana", "bo", "cy")}
    groups = {
        "lab-a": directory.add_group("lab-a", "private"),
        "lab-c": directory.add_group("lab-c", "private"),
        "shared": directory.add_group("shared", "read-only"),
        "open": services.auth.ensure_public_group(),
    }
    for name in ("ana", "bo"):
        directory.add_member(groups["lab-a"], users[name])
        directory.add_member(groups["shared"], users[name])
        directory.add_member(groups["open"], users[name])
    directory.add_member(groups["lab-c"], users["cy"])
    images = {
        "ana-private": import_array(app, root, "ana-private", users["ana"], groups["lab-a"], 1),
        "ana-shared": import_array(app, root, "ana-shared", users["ana"], groups["shared"], 2),
        "public": import_array(app, root, "public", users["ana"], groups["open"], 3),
    }
    catalog = services.catalog
    datasets = {
        "ana-private": catalog.create_dataset("ana-private-set", users["ana"], groups["lab-a"]),
        "cy-private": catalog.create_dataset("cy-private-set", users["cy"], groups["lab-c"]),
    }
    catalog.add_to_dataset(datasets["ana-private"], [images["ana-private"]])
    tokens = {}
    for name, user_id in users.items():
        _id, token = services.auth.tokens.create(user_id, "security")
        tokens[name] = {"X-Auth-Token": token}
    return Lab(app, testing.TestClient(app), tokens, users, groups, images, datasets, root)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield build_lab(tmp_path_factory.mktemp("security"), **{"render.max_pixels": "8000"})


def session(lab: Lab, who: str) -> dict[str, str]:
    """Return headers of a cookie session of ``who``, with its CSRF token."""
    done = lab.client.simulate_post(
        "/api/v2/session", json={"username": who, "password": f"{who}-password"}
    )
    assert done.status_code == 200, done.text
    return {
        "Cookie": f"sessionid={done.cookies['sessionid'].value}",
        "X-CSRFToken": done.json["csrf_token"],
    }


# -- 2. the placeholder is bounded like a thumbnail -----------------------------------------


@pytest.mark.parametrize("width", ["-1", "0", "1025", "16000"])
def test_placeholder_sizes_are_bounded_like_thumbnails(lab: Lab, width: str) -> None:
    for image_id in (lab.images["public"], MISSING):
        got = lab.get(None, f"/webclient/render_thumbnail/size/{width}/{image_id}/")
        assert got.status_code == 400, (width, image_id, got.status_code)
        assert "w" in got.json["description"]


def test_placeholder_for_what_cannot_be_shown_keeps_its_size(lab: Lab) -> None:
    for image_id in (lab.images["ana-private"], MISSING):
        got = lab.get(None, f"/webclient/render_thumbnail/size/64/{image_id}/")
        assert got.status_code == 200
        assert decode(got.content).shape == (64, 64, 3)


# -- 3. tiles obey render.max_pixels -------------------------------------------------------


def test_tile_with_large_width_and_height_obeys_max_pixels(lab: Lab) -> None:
    image_id = lab.images["public"]
    base = f"/webgateway/render_image_region/{image_id}/0/0/"
    small = lab.get(None, base, params={"tile": "0,0,0,80,80", "format": "png"})
    assert small.status_code == 200  # 6400 pixels
    large = lab.get(None, base, params={"tile": "0,0,0,120,100", "format": "png"})
    assert large.status_code == 400
    assert "tile" in large.json["description"]
    huge = lab.get(None, base, params={"tile": "0,0,0,100000,100000"})
    assert huge.status_code == 400


# -- 4. no existence or name oracle ------------------------------------------------------


def test_hidden_marker_behaves_like_a_missing_one(lab: Lab) -> None:
    hidden = lab.images["ana-private"]
    for who in ("bo", "cy", None):
        for sort in ("name:asc", "name:desc", "created_at:desc"):
            got = lab.get(who, "/api/v2/images", params={"marker": str(hidden), "sort": sort})
            missing = lab.get(who, "/api/v2/images", params={"marker": str(MISSING), "sort": sort})
            assert got.status_code == missing.status_code == 400, (who, got.status_code)
            assert got.text.replace(str(hidden), "ID") == missing.text.replace(str(MISSING), "ID")
    mine = lab.get("ana", "/api/v2/images", params={"marker": str(hidden)})
    assert mine.status_code == 200


@pytest.mark.parametrize(
    "marker", ["9223372036854775808", "18446744073709551616", "+7", "７", "7_0"]
)
def test_odd_markers_are_bad_parameters(lab: Lab, marker: str) -> None:
    got = lab.get("ana", "/api/v2/images", params={"marker": marker})
    assert got.status_code == 400 and "marker" in got.json["description"]


def test_images_cannot_go_into_a_dataset_the_caller_may_not_see(lab: Lab) -> None:
    hidden = lab.datasets["ana-private"]
    catalog = lab.app.services.catalog
    before = catalog.get_dataset(hidden).image_count
    for who in ("cy", "bo"):
        made = lab.post(who, "/api/v2/images", json={"name": f"{who}-sneak", "dataset": hidden})
        missing = lab.post(who, "/api/v2/images", json={"name": f"{who}-sneak", "dataset": MISSING})
        assert made.status_code == missing.status_code == 400, (who, made.text)
        assert made.text.replace(str(hidden), "ID") == missing.text.replace(str(MISSING), "ID")
        own = lab.post(who, "/api/v2/images", json={"name": f"{who}-own"})
        assert own.status_code == 201
        patch = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
        moved, moved_missing = (
            lab.client.simulate_patch(
                f"/api/v2/images/{own.json['id']}",
                body=json.dumps([{"op": "add", "path": "/dataset", "value": target}]),
                headers={**lab.tokens[who], **patch},
            )
            for target in (hidden, MISSING)
        )
        assert moved.status_code == moved_missing.status_code == 400, moved.text
        assert moved.text.replace(str(hidden), "ID") == moved_missing.text.replace(
            str(MISSING), "ID"
        )
    assert catalog.get_dataset(hidden).image_count == before
    allowed = lab.post("ana", "/api/v2/images", json={"name": "ana-more", "dataset": hidden})
    assert allowed.status_code == 201, allowed.text
    assert catalog.get_dataset(hidden).image_count == before + 1


# -- 10. members of a private group browse their own data -------------------------------


def test_private_group_member_browses_own_datasets_and_images(lab: Lab) -> None:
    ana = session(lab, "ana")
    dataset = lab.datasets["ana-private"]
    index = lab.get(None, "/", headers=ana)
    assert "ana-private-set" in index.text
    page = lab.get(None, f"/datasets/{dataset}", headers=ana)
    assert page.status_code == 200
    assert (
        f"render_thumbnail/{lab.images['ana-private']}" in page.text or "ana-private" in page.text
    )
    everything = lab.get(None, "/datasets/0", headers=ana)
    assert "ana-private" in everything.text
    bo = session(lab, "bo")
    assert lab.get(None, f"/datasets/{dataset}", headers=bo).status_code == 404
    assert "ana-private-set" not in lab.get(None, "/", headers=bo).text
    assert "ana-private" not in lab.get(None, "/datasets/0", headers=bo).text
    cy = session(lab, "cy")
    assert lab.get(None, f"/datasets/{lab.datasets['cy-private']}", headers=cy).status_code == 200


# -- 11. a reader's reset touches only their own settings --------------------------------


def test_reader_reset_keeps_everyone_elses_cache_and_etags(lab: Lab) -> None:
    image_id = lab.images["ana-shared"]
    url = f"/webgateway/render_thumbnail/{image_id}/"
    first = lab.get("ana", url)
    etag = first.headers["etag"]
    version = lab.app.services.catalog.get_image(image_id).rdef_version
    bo = session(lab, "bo")
    reset = lab.post(None, f"/webgateway/resetRDef/{image_id}/", headers=bo)
    assert reset.status_code == 200
    assert lab.app.services.catalog.get_image(image_id).rdef_version == version
    again = lab.get("ana", url, headers={"If-None-Match": etag})
    assert again.status_code == 304


# -- 11. private answers are not stored by shared caches ---------------------------------


def test_private_json_and_downloads_say_cache_control_private(lab: Lab) -> None:
    image_id = lab.images["ana-private"]
    paths = [
        f"/webgateway/imgData/{image_id}/",
        f"/webgateway/getImgRDef/{image_id}/",
        f"/webgateway/histogram_json/{image_id}/channel/0/",
        f"/webgateway/get_thumbnails/?id={image_id}",
        f"/api/v2/images/{image_id}",
        "/api/v2/images",
        f"/webgateway/archived_files/download/{image_id}/",
        f"/api/v2/images/{image_id}/file",
    ]
    for path in paths:
        route, _, query = path.partition("?")
        got = lab.get("ana", route, query_string=query)
        assert got.status_code == 200, (path, got.status_code)
        assert "private" in got.headers.get("cache-control", ""), path


# -- 11. huge and odd ids are missing ids, on every route --------------------------------

ODD_IDS = ("9223372036854775808", "18446744073709551616", "+{id}", "{fw}", "{id}_0", " {id}")


def test_huge_and_odd_ids_answer_404_on_every_image_route(lab: Lab) -> None:
    real = lab.images["public"]
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in str(real))
    failures = []
    for route in app_routes(lab.app):
        param = route.image_param
        if param is None and "{dataset_id" not in route.template:
            continue
        for method in route.methods:
            if method not in ("GET", "HEAD"):
                continue
            for odd in ODD_IDS:
                text = odd.format(id=real, fw=fullwidth)
                path = route.path(0, 0).replace("/0", "/" + quote(text), 1)
                got = lab.client.simulate_request(method, path, headers=lab.tokens["ana"])
                if got.status_code != 404:
                    failures.append(f"{method} {path}: {got.status_code}")
    assert not failures, "\n".join(failures)


def test_huge_and_odd_ids_in_queries_and_iiif(lab: Lab) -> None:
    real = lab.images["public"]
    for odd in ("9223372036854775808", f"+{real}", chr(0xFF10 + 1)):
        got = lab.get("ana", "/webgateway/get_thumbnails/", params={"id": odd})
        assert got.status_code in (200, 400), got.status_code
        if got.status_code == 200:
            assert list(got.json.values()) == [None]
        iiif = lab.get("ana", f"/iiif/3/{quote(odd)}/info.json")
        assert iiif.status_code == 404
    superscript = lab.get("ana", f"/iiif/3/{real};z=\u00b2/info.json")
    assert superscript.status_code == 400


# -- 7. ids are never reused, and ETags name their image ----------------------------------


def test_ids_are_never_reused_after_deleting_the_newest(tmp_path: Path) -> None:
    lab = build_lab(tmp_path)
    catalog = lab.app.services.catalog
    owner, group = lab.users["ana"], lab.groups["open"]
    newest = catalog.create_image("newest", owner, group)
    catalog.delete_image(newest)
    assert catalog.create_image("after", owner, group) > newest
    dataset = catalog.create_dataset("gone", owner, group)
    catalog.delete_dataset(dataset)
    assert catalog.create_dataset("next", owner, group) > dataset


def test_etag_after_delete_and_reimport_never_304s(tmp_path: Path) -> None:
    lab = build_lab(tmp_path)
    services = lab.app.services
    owner, group = lab.users["ana"], lab.groups["open"]
    first = import_array(lab.app, tmp_path, "again", owner, group, 11)
    url = f"/webgateway/render_thumbnail/{first}/"
    etag = lab.get(None, url).headers["etag"]
    assert str(first) in etag
    services.delete_image(first)
    # Same name, same shape, same settings: only the pixels differ.
    second = import_array(lab.app, tmp_path, "again", owner, group, 12)
    assert second != first
    for path in (url, f"/webgateway/render_thumbnail/{second}/"):
        got = lab.get(None, path, headers={"If-None-Match": etag})
        assert got.status_code != 304, path
    twin = import_array(lab.app, tmp_path, "twin", owner, group, 11)
    twin_tag = lab.get(None, f"/webgateway/render_thumbnail/{twin}/").headers["etag"]
    assert twin_tag != etag
    # The ETag carries a random tag of its image, so a restored catalog cannot collide either.
    image = services.catalog.get_image(twin)
    assert image.render_tag and image.render_tag in twin_tag


def test_migration_0004_keeps_rows_and_stops_id_reuse(tmp_path: Path) -> None:
    from coverslip.catalog import Catalog

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = old_catalog(tmp_path / "old.sqlite", "0003")
    with old.engine.begin() as conn:
        for image_id in (1, 2, 3):
            conn.exec_driver_sql(
                "INSERT INTO images (id, name, status, owner_id, group_id, created, updated,"
                f" properties) VALUES ({image_id}, 'i{image_id}', 'active', 1, 1, '2024-01-01',"
                " '2024-01-01', '{}')"
            )
            conn.exec_driver_sql(
                'INSERT INTO channels (image_id, "index", name, color, min, max,'
                f" window_start, window_end) VALUES ({image_id}, 0, 'c', 'FFFFFF', 0, 1, 0, 1)"
            )
        conn.exec_driver_sql(
            "INSERT INTO datasets (id, name, description, owner_id, group_id, created)"
            " VALUES (1, 'd', '', 1, 1, '2024-01-01')"
        )
        conn.exec_driver_sql("INSERT INTO dataset_images VALUES (1, 3)")
    old.close()
    catalog = Catalog(url)
    images = catalog.list_images()
    assert [image.id for image in images] == [1, 2, 3]
    assert all(len(image.channels) == 1 for image in images)
    assert len({image.render_tag for image in images}) == 3
    assert catalog.get_image(3).dataset_ids == (1,)
    catalog.delete_image(3)
    assert catalog.create_image("new", 1, 1) == 4
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert not conn.exec_driver_sql("PRAGMA foreign_key_check").all()


def test_ids_are_never_reused_on_postgresql(postgres_url: str) -> None:
    from coverslip.catalog import Catalog

    catalog = Catalog(postgres_url)
    owner, group = catalog.ensure_local_admin()
    newest = catalog.create_image("pg-newest", owner, group)
    catalog.delete_image(newest)
    assert catalog.create_image("pg-after", owner, group) > newest
    assert catalog.get_image(newest + 1).render_tag


# -- 11. the public base URL, never the client's Host --------------------------------------


def test_iiif_links_ignore_the_clients_host(lab: Lab) -> None:
    image_id = lab.images["public"]
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    info = lab.client.simulate_get(
        f"/iiif/3/{image_id}/info.json", headers=evil, remote_addr="203.0.113.9"
    )
    assert info.status_code == 200
    assert "evil" not in info.json["id"]
    assert info.json["id"] == f"http://127.0.0.1:4080/iiif/3/{image_id}"
    moved = lab.client.simulate_get(f"/iiif/3/{image_id}", headers=evil, remote_addr="203.0.113.9")
    assert moved.status_code == 303 and "evil" not in moved.headers["location"]
    made = lab.client.simulate_post(
        "/api/v2/images",
        json={"name": "where"},
        headers={**lab.tokens["ana"], **evil},
        remote_addr="203.0.113.9",
    )
    assert made.status_code == 201 and "evil" not in made.headers["location"]


def test_iiif_links_from_a_trusted_proxy_or_the_configured_url(tmp_path: Path) -> None:
    lab = build_lab(tmp_path)
    image_id = lab.images["public"]
    proxied = lab.client.simulate_get(
        f"/iiif/3/{image_id}/info.json",
        headers={"X-Forwarded-Host": "images.example.org", "X-Forwarded-Proto": "https"},
        remote_addr="127.0.0.1",
    )
    assert proxied.json["id"] == f"https://images.example.org/iiif/3/{image_id}"
    home = Home(tmp_path)
    fixed = create_app(
        home.settings({}, {"web.public_url": "https://viewer.example.net/", "web.prefix": "/cs"}),
        home,
    )
    got = testing.TestClient(fixed).simulate_get(
        f"/iiif/3/{image_id}/info.json",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        remote_addr="127.0.0.1",
    )
    assert got.json["id"] == f"https://viewer.example.net/cs/iiif/3/{image_id}"


# -- 11. login CSRF --------------------------------------------------------------------------


def test_login_refuses_cross_site_posts(lab: Lab) -> None:
    form = urlencode({"username": "ana", "password": "ana-password", "next": "/"})
    for origin in ("https://evil.example", "null", "http://127.0.0.1:4080.evil.example"):
        cross = lab.client.simulate_post("/login", body=form, headers={**FORM, "Origin": origin})
        assert cross.status_code == 403, origin
        assert "sessionid" not in cross.cookies
        api = lab.client.simulate_post(
            "/api/v2/session", body=form, headers={**FORM, "Origin": origin}
        )
        assert api.status_code == 403, origin
    referer = lab.client.simulate_post(
        "/login", body=form, headers={**FORM, "Referer": "https://evil.example/page"}
    )
    assert referer.status_code == 403
    same = lab.client.simulate_post(
        "/login",
        body=form,
        headers={**FORM, "Origin": "http://site.example", "Host": "site.example"},
    )
    assert same.status_code == 303 and same.cookies["sessionid"].value
    script = lab.client.simulate_post("/login", body=form, headers=FORM)
    assert script.status_code == 303


# -- 11. X-Accel-Redirect paths are percent-encoded -----------------------------------------


def test_x_accel_redirect_is_percent_encoded(tmp_path: Path) -> None:
    lab = build_lab(tmp_path, **{"web.sendfile": "nginx"})
    odd = tmp_path / "odd"
    odd.mkdir()
    source = odd / "50% done?#1 ü.npy"
    np.save(source, np.ones((8, 8), dtype=np.uint8))
    image_id = lab.app.services.importer().import_path(
        source, ImportOptions(owner_id=lab.users["ana"], group_id=lab.groups["open"])
    )
    for path in (
        f"/webgateway/archived_files/download/{image_id}/",
        f"/api/v2/images/{image_id}/file",
    ):
        got = lab.get("ana", path)
        location = got.headers["x-accel-redirect"]
        assert location.startswith(INTERNAL_PREFIX + "/") and location.isascii(), location
        assert location.endswith("/50%25%20done%3F%231%20%C3%BC.npy"), location
        inside = unquote(location.removeprefix(INTERNAL_PREFIX + "/"))
        assert (lab.app.services.home.root / inside).read_bytes() == source.read_bytes()
        assert "private" in got.headers.get("cache-control", "")


def test_links_from_a_proxy_the_launcher_recorded(lab: Lab) -> None:
    """Behind a launcher that rewrote REMOTE_ADDR, the proxy's own address still decides."""
    image_id = lab.images["public"]
    forwarded = {"X-Forwarded-Host": "images.example.org"}
    trusted = lab.client.simulate_get(
        f"/iiif/3/{image_id}/info.json",
        headers=forwarded,
        remote_addr="203.0.113.9",
        extras={"coverslip.proxy_addr": "127.0.0.1"},
    )
    assert trusted.json["id"] == f"http://images.example.org/iiif/3/{image_id}"
    spoofed = lab.client.simulate_get(
        f"/iiif/3/{image_id}/info.json",
        headers=forwarded,
        remote_addr="203.0.113.9",
        extras={"coverslip.proxy_addr": "203.0.113.9"},
    )
    assert "example.org" not in spoofed.json["id"]


@pytest.mark.parametrize("value", ["+1", " 1", "1_0", "\uff11", "99999999999999999999"])
def test_integer_query_parameters_are_ascii(lab: Lab, value: str) -> None:
    got = lab.get("ana", "/api/v2/images", params={"owner": value})
    assert got.status_code == 400 and "owner" in got.json["description"]
