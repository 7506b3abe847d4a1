"""The permission matrix: every route of the app, enumerated from Falcon's router, called by
every kind of caller on an image of every group permission level.

The expectations are written out here by hand (``READERS``), not computed with the policy
module, so that a policy change that leaks an image fails this test.

For each (route, method): a caller who may not read the image must get exactly what they get
for an image that does not exist; a caller who may read it must not get 401/403/404 on safe
methods; nobody who may not change an image gets a 2xx from an unsafe method. Routes without
an image are checked for leaks: the image's (unique) name never appears in their answer to
a caller who may not read it. A route added later is covered the moment it is mounted; if
it has a path parameter this file does not know, the test says which sample to add.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from falcon import testing

from coverslip.auth.passwords import Passwords
from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp

LEVELS = ("private", "read-only", "read-write", "public")
SAFE = {"GET", "HEAD", "OPTIONS"}
OPEN_PATHS = {"/healthz", "/readyz"}
MISSING = 987_654
# Parameters that name the image under test.
IMAGE_PARAMS = {"iid", "image_id", "identifier", "id"}
# Samples of every other path parameter a route may have.
SAMPLES = {
    "z": "0",
    "t": "0",
    "w": "24",
    "h": "24",
    "size": "24",
    "c": "0",
    "key": "meta",
    "tag": "matrix",
    "token_id": str(MISSING),
    "task_id": "00000000-0000-4000-8000-000000000000",
    "plate_id": str(MISSING),
    "project_id": str(MISSING),
    "field": "0",
    "region": "full",
    "rotation": "0",
    "quality": "default",
    "format": "jpg",
    "shape_id": "1",
}
# Parameters naming something inside the image, which may rightly be missing (404).
SUB_RESOURCES = {"tag", "shape_id"}
# Routes that take the image id in the query string instead of the path (its parameter).
QUERY_IMAGE = re.compile(r"/(get_thumbnails(/|$)|archived_files/download$)")
# Unsafe routes a reader may use without being able to change the image.
OWN_SETTINGS_ROUTES = {"resetRDef"}  # any signed-in reader: drops their own settings
ANNOTATE_ROUTES = {"saveImgRDef"}  # readers who may annotate (read-write, public members)

# Who may read an image owned by "owner" in a group of each level, written out by hand.
# "member" and "token" are members of the group; "other" is in another group only;
# "gowner" owns the group; "anon" is anonymous with web.public.enabled on, "anon_off" with
# it off; "disabled" signed in before being disabled (their cookie then reads as anonymous).
MANAGERS = {"owner", "gowner", "admin"}
READERS = {
    "private": MANAGERS,
    "read-only": MANAGERS | {"member", "token"},
    "read-write": MANAGERS | {"member", "token"},
    "public": MANAGERS | {"member", "token", "other", "anon", "disabled"},
}
ANNOTATORS = {
    "private": MANAGERS,
    "read-only": MANAGERS,
    "read-write": MANAGERS | {"member", "token"},
    "public": MANAGERS | {"member", "token"},
}
SIGNED_IN = {"owner", "gowner", "admin", "member", "token", "other"}
CALLERS = (
    "owner",
    "member",
    "other",
    "gowner",
    "admin",
    "anon",
    "anon_off",
    "token",
    "disabled",
    "disabled_token",
)


@dataclass(frozen=True)
class Route:
    """One mounted URI template with the methods its resource answers."""

    template: str
    methods: tuple[str, ...]
    params: tuple[str, ...]

    @property
    def sub_resource(self) -> bool:
        return any(p in SUB_RESOURCES for p in self.params)

    @property
    def image_param(self) -> str | None:
        return next((p for p in self.params if p in IMAGE_PARAMS), None)

    def path(self, image_id: int, dataset_id: int) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in IMAGE_PARAMS:
                return str(image_id)
            if name == "dataset_id":
                return str(dataset_id)
            if name not in SAMPLES:
                pytest.fail(
                    f"route {self.template}: add a sample value for {{{name}}} to SAMPLES "
                    "in tests/test_auth_matrix.py"
                )
            return SAMPLES[name]

        return re.sub(r"\{(\w+)(?::[^}]*)?\}", value, self.template)


def app_routes(app: Any) -> list[Route]:
    """Return every route of ``app``, from its router (responders the resource defines)."""
    found: list[Route] = []

    def walk(nodes: Any) -> None:
        for node in nodes:
            if node.method_map and node.resource is not None:
                methods = tuple(
                    sorted(
                        method
                        for method, responder in node.method_map.items()
                        if getattr(responder, "__self__", None) is node.resource
                    )
                )
                params = tuple(re.findall(r"\{(\w+)(?::[^}]*)?\}", node.uri_template))
                if methods:
                    found.append(Route(node.uri_template, methods, params))
            walk(node.children)

    walk(app._router._roots)
    assert len(found) > 10, "the router walk found almost nothing: did Falcon change?"
    return found


@dataclass
class Who:
    """How one kind of caller sends requests."""

    client: testing.TestClient
    headers: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None

    def request(self, method: str, path: str, query: str = "") -> testing.Result:
        headers = dict(self.headers)
        if self.csrf and method not in SAFE:
            headers["X-CSRFToken"] = self.csrf
        return self.client.simulate_request(method, path, query_string=query, headers=headers)


@dataclass
class World:
    app: CoverslipApp
    callers: dict[str, Who]
    images: dict[str, int]
    names: dict[str, str]
    datasets: dict[str, int]


def sign_in(client: testing.TestClient, username: str, password: str) -> Who:
    result = client.simulate_post(
        "/api/v2/session", json={"username": username, "password": password}
    )
    assert result.status_code == 200, result.text
    return Who(
        client,
        {"Cookie": f"sessionid={result.cookies['sessionid'].value}"},
        result.json["csrf_token"],
    )


def build_world(root: Path) -> World:
    home = Home(root)
    app = create_app(home.settings({}, {"web.public.enabled": "true"}), home)
    app_off = create_app(home.settings({}, {"web.public.enabled": "false"}), home)
    for each in (app, app_off):
        each.services.auth.passwords = Passwords.fast()
    services = app.services
    auth = services.auth
    directory = auth.directory
    admin_id, _ = services.catalog.ensure_local_admin()
    directory.set_password(admin_id, "admin-password")
    ids = {
        name: directory.add_user(name, f"{name}-password")
        for name in ("owner", "member", "other", "gowner", "tokenuser", "disabled")
    }
    elsewhere = directory.add_group("elsewhere", "read-only")
    directory.add_member(elsewhere, ids["other"])
    images: dict[str, int] = {}
    names: dict[str, str] = {}
    datasets: dict[str, int] = {}
    data = np.arange(24 * 24, dtype=np.uint8).reshape(24, 24)
    for level in LEVELS:
        group_id = directory.add_group(f"g-{level}", level)
        for name in ("owner", "member", "tokenuser", "disabled"):
            directory.add_member(group_id, ids[name])
        directory.add_member(group_id, ids["gowner"], owner=True)
        names[level] = f"matrix-{level}-image-zq"
        source = root / f"{level}.npy"
        np.save(source, data + LEVELS.index(level))  # distinct bytes: no duplicate refusal
        options = ImportOptions(name=names[level], owner_id=ids["owner"], group_id=group_id)
        image_id = services.importer().import_path(source, options)
        images[level] = image_id
        datasets[level] = services.catalog.create_dataset(
            f"matrix-{level}-dataset", ids["owner"], group_id
        )
        services.catalog.add_to_dataset(datasets[level], [image_id])
    client = testing.TestClient(app)
    callers = {
        name: sign_in(client, name, f"{name}-password")
        for name in ("owner", "member", "other", "gowner")
    }
    callers["admin"] = sign_in(client, "admin", "admin-password")
    callers["anon"] = Who(client)
    callers["anon_off"] = Who(testing.TestClient(app_off))
    _id, token = auth.tokens.create(ids["tokenuser"], "matrix")
    callers["token"] = Who(client, {"X-Auth-Token": token})
    disabled = sign_in(client, "disabled", "disabled-password")
    _id, disabled_token = auth.tokens.create(ids["disabled"], "matrix")
    auth.disable(ids["disabled"])
    callers["disabled"] = disabled
    callers["disabled_token"] = Who(client, {"Authorization": f"Bearer {disabled_token}"})
    return World(app, callers, images, names, datasets)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield build_world(tmp_path_factory.mktemp("matrix"))


def call(world: World, who: str, route: Route, method: str, level: str | None) -> testing.Result:
    image_id = world.images[level] if level else MISSING
    dataset_id = world.datasets[level] if level else MISSING
    path = route.path(image_id, dataset_id)
    name = "image" if route.template.endswith("/archived_files/download") else "id"
    query = f"{name}={image_id}" if QUERY_IMAGE.search(route.template) else ""
    return world.callers[who].request(method, path, query)


def may_change(who: str, level: str, route: Route) -> bool:
    """Return whether ``who`` may get a 2xx from an unsafe method of ``route``."""
    name = route.template.rstrip("/").split("/")[2] if route.template.count("/") > 1 else ""
    if name in OWN_SETTINGS_ROUTES:
        return who in SIGNED_IN and who in READERS[level]
    if name in ANNOTATE_ROUTES:
        return who in ANNOTATORS[level]
    return who in MANAGERS or (level == "read-write" and who in {"member", "token"})


@pytest.mark.parametrize("who", CALLERS)
def test_every_route_for_every_caller_and_level(world: World, who: str) -> None:
    failures: list[str] = []
    for route in app_routes(world.app):
        for method in route.methods:
            where = f"{who} {method} {route.template}"
            if who == "disabled_token":
                status = call(world, who, route, method, LEVELS[0]).status_code
                expected = 200 if route.template in OPEN_PATHS else 401
                if status != expected:
                    failures.append(f"{where}: {status}, expected {expected}")
                continue
            image_route = route.image_param is not None or QUERY_IMAGE.search(route.template)
            if not image_route:
                if method in SAFE:
                    failures += leaks(world, who, route, method)
                continue
            missing = call(world, who, route, method, None)
            for level in LEVELS:
                readable = who in READERS[level]
                if not readable:
                    got = call(world, who, route, method, level)
                    same = anonymised(got, route, world.images[level]) == anonymised(
                        missing, route, MISSING
                    )
                    if got.status_code != missing.status_code or not same:
                        failures.append(
                            f"{where} [{level}]: {got.status_code} but a missing image gives "
                            f"{missing.status_code}"
                        )
                elif method in SAFE:
                    got = call(world, who, route, method, level)
                    # A 404 may be about a sub-resource the image lacks (a shape of no ROI).
                    refused = (401, 403) if route.sub_resource else (401, 403, 404)
                    if got.status_code in refused or got.status_code >= 500:
                        failures.append(f"{where} [{level}]: {got.status_code} for a reader")
                elif who not in MANAGERS:
                    # NOTE: unsafe methods are not run for managers: they would change the image.
                    got = call(world, who, route, method, level)
                    if 200 <= got.status_code < 300 and not may_change(who, level, route):
                        failures.append(f"{where} [{level}]: {got.status_code}, may not change")
                    # Anonymous readers rightly get 401; a 404 may be about a sub-resource (a tag).
                    refused = (404,) if who in SIGNED_IN and not route.sub_resource else ()
                    if got.status_code in refused or got.status_code >= 500:
                        failures.append(f"{where} [{level}]: {got.status_code} for a reader")
    assert not failures, "\n".join(failures)


def anonymised(result: testing.Result, route: Route, image_id: int) -> bytes:
    """Return the body with the image's id in its own path blanked (pages echo their path)."""
    if not (result.headers.get("content-type") or "").startswith(("text/", "application/json")):
        return result.content
    path = route.path(image_id, 0)
    text = result.text.replace(quote(path, safe=""), "PATH").replace(path, "PATH")
    return text.replace(f'"{image_id}"', '"ID"').replace(f": {image_id}", ": ID").encode()


def leaks(world: World, who: str, route: Route, method: str) -> list[str]:
    """Return the levels whose image name a route without an image shows to a non-reader."""
    found = []
    for level in LEVELS:
        if who in READERS[level]:
            continue
        got = call(world, who, route, method, level)
        if got.status_code >= 500:
            found.append(f"{who} {method} {route.template} [{level}]: {got.status_code}")
        elif world.names[level].encode() in got.content:
            found.append(f"{who} {method} {route.template} [{level}]: shows the image's name")
    return found


@pytest.mark.parametrize(
    "who", ["owner", "member", "other", "gowner", "admin", "anon", "anon_off", "token"]
)
def test_image_lists_show_exactly_what_the_caller_may_read(world: World, who: str) -> None:
    got = world.callers[who].request("GET", "/api/v2/images")
    if who == "anon_off":
        assert got.status_code in (200, 401)
        shown: set[str] = set()
    else:
        assert got.status_code == 200, got.text
        shown = {image["name"] for image in got.json["images"]}
    expected = {world.names[level] for level in LEVELS if who in READERS[level]}
    assert shown & set(world.names.values()) == expected


def test_admin_reads_everything_and_open_routes_need_nobody(world: World) -> None:
    for level in LEVELS:
        got = world.callers["admin"].request("GET", f"/api/v2/images/{world.images[level]}")
        assert got.status_code == 200
    for path in OPEN_PATHS:
        assert world.callers["anon_off"].request("GET", path).status_code == 200


@pytest.mark.parametrize("who", CALLERS[:-1])
def test_a_hidden_marker_is_a_missing_marker(world: World, who: str) -> None:
    """Paging after an image the caller may not read answers exactly as after a missing one."""

    def page(marker: int) -> tuple[int, str]:
        got = world.callers[who].request("GET", "/api/v2/images", f"marker={marker}&sort=name:asc")
        return got.status_code, got.text.replace(str(marker), "ID")

    missing = page(MISSING)
    for level in LEVELS:
        if who not in READERS[level]:
            assert page(world.images[level]) == missing, level


@pytest.mark.parametrize("who", sorted(SIGNED_IN - MANAGERS))
def test_dataset_writes_refuse_unreadable_datasets_like_missing_ones(
    world: World, who: str
) -> None:
    """Putting a new image into a dataset the caller may not see answers as for no dataset."""

    def create(dataset_id: int) -> tuple[int, str]:
        got = world.callers[who].client.simulate_post(
            "/api/v2/images",
            json={"name": "matrix-sneak", "dataset": dataset_id},
            headers={**world.callers[who].headers, "X-CSRFToken": world.callers[who].csrf or ""},
        )
        return got.status_code, got.text.replace(str(dataset_id), "ID")

    missing = create(MISSING)
    assert missing[0] == 400
    for level in LEVELS:
        got = create(world.datasets[level])
        if who not in READERS[level]:
            assert got == missing, level
        elif not (level == "read-write" and who in {"member", "token"}):
            assert got[0] == 403, level  # may see the dataset, may not add to it


# Rendering routes whose "visible or 404" the matrix must cover (the render service's rule).
RENDER_ROUTES = {
    "/iiif/3/{identifier}",
    "/iiif/3/{identifier}/info.json",
    "/iiif/3/{identifier}/{region}/{size}/{rotation}/{quality}",
    "/webgateway/histogram_json/{iid:id}/channel/{c:nat}",
    "/webgateway/render_thumbnail/{iid:id}",
    "/webgateway/render_thumbnail/{iid:id}/{w:side}",
    "/webclient/render_thumbnail/size/{w:side}/{iid:id}",
    "/webgateway/render_birds_eye_view/{iid:id}",
    "/webgateway/get_thumbnails",
    "/webgateway/render_image/{iid:id}",
    "/webgateway/render_image_region/{iid:id}/{z:nat}/{t:nat}",
    "/webgateway/render_split_channel/{iid:id}/{z:nat}/{t:nat}",
    "/webgateway/archived_files/download/{iid:id}",
    "/webgateway/archived_files/download",
}


def test_the_matrix_covers_iiif_histograms_and_thumbnails(world: World) -> None:
    routes = {route.template: route for route in app_routes(world.app)}
    assert set(routes) >= RENDER_ROUTES, sorted(RENDER_ROUTES - set(routes))
    for template in RENDER_ROUTES:
        route = routes[template]
        assert "GET" in route.methods
        assert route.image_param is not None or QUERY_IMAGE.search(template), template


@pytest.mark.parametrize("who", ["other", "anon"])
def test_the_thumbnail_service_hides_images_like_the_web_role(world: World, who: str) -> None:
    """The ``thumbs`` role serves the same thumbnails through the same visibility rule."""
    thumbs = testing.TestClient(
        create_app(world.app.services.settings, world.app.services.home, role="thumbs")
    )
    private = world.images["private"]
    headers = world.callers[who].headers
    for path in (
        f"/webgateway/render_thumbnail/{private}/",
        f"/webgateway/render_birds_eye_view/{private}/",
    ):
        got = thumbs.simulate_get(path, headers=headers)
        missing = thumbs.simulate_get(path.replace(str(private), str(MISSING)), headers=headers)
        assert got.status_code == missing.status_code == 404, (path, got.status_code)
    got = thumbs.simulate_get(
        "/webgateway/get_thumbnails/", params={"id": str(private)}, headers=headers
    )
    assert got.json == {str(private): None}
    got = thumbs.simulate_get(
        f"/webgateway/render_thumbnail/{world.images['public']}/", headers=headers
    )
    assert got.status_code == 200
