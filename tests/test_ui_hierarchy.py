"""Browsing OMERO's hierarchy in headless Chromium: projects → datasets → images, plates →
wells → fields, search across everything, the thumbnail size, multi-select with batch
actions, and editing an image's name, description, tags and dataset.

Ann (group "lab") owns two projects' worth of data; the administrator's private project,
dataset and image must never show to her, not even as a count. What a page shows is checked
against what the test made, and what an action did against the images API.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coverslip.catalog import Catalog
from tests import test_ui as ui
from tests.test_plates import write_plate

browser = ui.browser
PASSWORD = "ann-secret-pass-2"
PATCH = "application/openstack-images-v2.1-json-patch"


class Site:
    def __init__(self, base: str, token: str, ids: dict[str, int], datasets: dict[str, int],
                 projects: dict[str, int], plate: dict[str, Any]) -> None:  # fmt: skip
        self.base = base
        self.token = token
        self.ids = ids
        self.datasets = datasets
        self.projects = projects
        self.plate = plate

    def call(self, method: str, path: str, body: Any = None, media: str = "application/json",
             token: str | None = None) -> tuple[int, Any]:  # fmt: skip
        """Send an API request as Ann (or with ``token``); return the status and JSON body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("X-Auth-Token", self.token if token is None else token)
        if data is not None:
            request.add_header("Content-Type", media)
        try:
            with urllib.request.urlopen(request) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None


def _import(home: Path, path: Path, *args: str) -> list[int]:
    found = json.loads(ui.coverslip(home, "import", str(path), "--json", *args))
    return [int(i) for i in found["imported"]]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Ann's images alpha and beta in datasets Day 1 and Day 2 of her project "Screen A",
    gamma in Day 3 (in no project), delta in no dataset, and a plate; the administrator's
    private "secret" image in "Hidden", in his project "Secret project"."""
    folder = tmp_path_factory.mktemp("ui-hierarchy")
    home = folder / "home"
    ui.coverslip(home, "user", "ensure-admin")
    ui.coverslip(home, "group", "add", "lab", "--permissions", "read-write")
    ui.coverslip(home, "user", "add", "ann", "--password", PASSWORD, "--group", "lab")
    yy, xx = np.mgrid[0:300, 0:400]
    as_ann = ("--user", "ann", "--group", "lab")
    ids: dict[str, int] = {}
    for n, (name, dataset) in enumerate(
        (("alpha", "Day 1"), ("beta", "Day 2"), ("gamma", "Day 3"), ("delta", None))
    ):
        np.save(folder / f"{name}.npy", ((xx + yy * (n + 1)) % 251).astype(np.uint8))
        where = ("--dataset", dataset) if dataset else ()
        (ids[name],) = _import(home, folder / f"{name}.npy", *as_ann, *where)
    np.save(folder / "secret.npy", (xx % 7).astype(np.uint8))
    (ids["secret"],) = _import(home, folder / "secret.npy", "--dataset", "Hidden")
    write_plate(folder / "screen.ome.zarr")
    _import(home, folder / "screen.ome.zarr", *as_ann)
    (plate,) = json.loads(ui.coverslip(home, "plates", "list", "--json"))
    plate_doc = json.loads(ui.coverslip(home, "plates", "show", str(plate["id"])))
    datasets = {
        d["name"]: d["id"] for d in json.loads(ui.coverslip(home, "datasets", "list", "--json"))
    }
    ui.coverslip(home, "projects", "create", "Secret project")
    (secret,) = json.loads(ui.coverslip(home, "projects", "list", "--json"))
    ui.coverslip(home, "projects", "add", str(secret["id"]), str(datasets["Hidden"]))
    token = json.loads(ui.coverslip(home, "token", "create", "ann", "--json"))["token"]
    with ui.served(home) as url:
        site = Site(url, token, ids, datasets, {"Secret project": secret["id"]}, plate_doc)
        status, made = site.call(
            "POST", "/api/v2/projects", {"name": "Screen A", "description": "HeLa, day course"}
        )
        assert status == 201, made
        site.projects["Screen A"] = made["id"]
        for name in ("Day 1", "Day 2"):
            status, _ = site.call("PUT", f"/api/v2/projects/{made['id']}/datasets/{datasets[name]}")
            assert status == 204
        yield site


def signed_in(browser: object, site: Site, width: int = 1366, height: int = 768):  # type: ignore[no-untyped-def]
    return ui.signed_in_page(browser, site.base, "ann", PASSWORD, width, height)


cards, grid_ids = ui.cards, ui.grid_ids


def test_projects_api_links_only_what_the_caller_may_see(site: Site) -> None:
    project = site.projects["Screen A"]
    status, listed = site.call("GET", "/api/v2/projects")
    assert status == 200
    assert [(p["name"], p["datasets"]) for p in listed["projects"]] == [
        ("Screen A", [site.datasets["Day 1"], site.datasets["Day 2"]])
    ]
    # The administrator's private dataset and project are missing to Ann, not forbidden.
    hidden = site.datasets["Hidden"]
    assert site.call("PUT", f"/api/v2/projects/{project}/datasets/{hidden}")[0] == 404
    secret = site.projects["Secret project"]
    day3 = site.datasets["Day 3"]
    assert site.call("PUT", f"/api/v2/projects/{secret}/datasets/{day3}")[0] == 404
    status, error = site.call("POST", "/api/v2/projects", {"name": "  "})
    assert status == 400 and "name" in json.dumps(error)
    status, error = site.call("POST", "/api/v2/projects", ["Screen B"])
    assert status == 400
    assert site.call("POST", "/api/v2/projects", {"name": "X"}, token="")[0] == 401
    # Linking twice is fine; a dataset in two projects shows in both.
    assert (
        site.call("PUT", f"/api/v2/projects/{project}/datasets/{site.datasets['Day 1']}")[0] == 204
    )
    status, datasets = site.call("GET", "/api/v2/datasets")
    projects_of = {d["name"]: d["projects"] for d in datasets["datasets"]}
    assert projects_of["Day 1"] == [project] and projects_of["Day 3"] == []


def test_home_shows_projects_datasets_in_none_plates_and_loose_images(
    browser: object, site: Site
) -> None:
    page = signed_in(browser, site)
    assert cards(page, "[aria-label=Projects]") == {"Screen A": "2 datasets"}
    assert cards(page, "[aria-label=Datasets]") == {
        "Day 3": "1 image",
        "Images in no dataset": "1 image",
        "All images": "10 images",  # alpha to delta and the plate's six fields
    }
    assert cards(page, "[aria-label=Plates]") == {"screen-7": "2 × 3 wells"}
    assert "Secret" not in page.content() and "Hidden" not in page.content()
    ui.shot(page, "hierarchy-home")
    page.get_by_role("link", name="Screen A").click()
    page.wait_for_url(f"{site.base}/projects/{site.projects['Screen A']}")
    assert cards(page) == {"Day 1": "1 image", "Day 2": "1 image"}
    page.get_by_role("link", name="Day 2").click()
    page.wait_for_selector("#grid .tile")
    assert grid_ids(page) == [site.ids["beta"]]
    crumbs = page.locator("nav.crumbs").inner_text()
    assert crumbs.split(" › ") == ["Home", "Screen A", "Day 2"]
    page.locator("nav.crumbs").get_by_role("link", name="Screen A").click()
    page.wait_for_url(f"{site.base}/projects/{site.projects['Screen A']}")
    # Another's private project is a 404, like one that does not exist.
    answer = page.goto(f"{site.base}/projects/{site.projects['Secret project']}")
    assert answer is not None and answer.status == 404
    answer = page.goto(f"{site.base}/projects/999")
    assert answer is not None and answer.status == 404


def test_plate_page_shows_each_field_of_the_wells(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.get_by_role("link", name="screen-7").click()
    page.wait_for_selector("#plate td img")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#plate td img')].every(i => i.naturalWidth > 0)"
    )
    plate = site.plate

    def shown() -> dict[str, int]:
        cells = page.evaluate(
            "() => [...document.querySelectorAll('#plate tbody tr')].flatMap(row => "
            "[...row.querySelectorAll('td')].map((td, c) => [row.querySelector('th').textContent"
            " + document.querySelectorAll('#plate thead th')[c + 1].textContent,"
            " td.dataset.imageId ? Number(td.dataset.imageId) : null]))"
        )
        return {name: image for name, image in cells if image is not None}

    def expected(field: int) -> dict[str, int]:
        return {w["row"] + w["column"]: w["images"][field] for w in plate["wells"]}

    assert shown() == expected(0)
    assert page.locator("#plate td.empty-well").count() == 6 - len(plate["wells"])
    ui.shot(page, "hierarchy-plate")
    page.select_option("#field", index=1)
    page.wait_for_function(
        "(id) => document.querySelector(`#plate td[data-image-id='${id}']`)",
        arg=expected(1)["A1"],
    )
    assert shown() == expected(1)
    page.locator(f"#plate td[data-image-id='{expected(1)['B2']}'] a").click()
    page.wait_for_url(f"{site.base}/images/{expected(1)['B2']}")


def test_search_finds_names_and_descriptions_of_what_ann_may_see(
    browser: object, site: Site
) -> None:
    described = [{"op": "add", "path": "/description", "value": "Mitochondria of HeLa cells"}]
    status, doc = site.call("PATCH", f"/api/v2/images/{site.ids['gamma']}", described, PATCH)
    assert status == 200 and doc["description"] == "Mitochondria of HeLa cells"
    page = signed_in(browser, site)
    page.get_by_role("searchbox", name="Search everything").fill("hela")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.base}/search?q=hela")
    assert grid_ids(page) == [site.ids["gamma"]]  # by its description, ignoring case
    assert cards(page) == {"Screen A": "project"}  # by the project's description
    page.goto(f"{site.base}/search?q=ALPHA")
    assert grid_ids(page) == [site.ids["alpha"]]
    page.goto(f"{site.base}/search?q=day")
    assert set(cards(page)) == {"Screen A", "Day 1", "Day 2", "Day 3"}
    page.goto(f"{site.base}/search?q=SCREEN-")
    assert cards(page) == {"screen-7": "plate, 2 × 3 wells"}
    for hidden in ("secret", "Hidden", "%", "_"):
        page.goto(f"{site.base}/search?q={hidden}")
        assert grid_ids(page) == [] and cards(page) == {}, hidden
    page.goto(f"{site.base}/search")
    assert grid_ids(page) == []
    assert "0 images" in page.locator("h1").inner_text()


def test_thumbnail_size_slider(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/datasets/0")
    page.wait_for_function("() => document.querySelector('#grid img').naturalWidth > 0")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "get_thumbnails" in r.url else None)
    page.locator("#thumb-size").fill("192")
    page.locator("#thumb-size").dispatch_event("change")
    # Shown at 192 px, and fetched at 192 px rather than stretched from 96.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid img')]"
        ".every(i => i.getBoundingClientRect().width === 192 && i.naturalWidth === 192)"
    )
    assert any("/get_thumbnails/192/" in url for url in asked)
    page.reload()  # the size is remembered
    assert page.locator("#thumb-size").input_value() == "192"
    assert page.locator("#grid img").first.bounding_box()["width"] == 192  # type: ignore[index]


def image_doc(site: Site, image_id: int) -> dict[str, Any]:
    status, doc = site.call("GET", f"/api/v2/images/{image_id}")
    assert status == 200, doc
    return doc  # type: ignore[no-any-return]


def test_select_move_compare_and_delete(browser: object, site: Site, tmp_path: Path) -> None:
    home_page = signed_in(browser, site)
    page = home_page
    page.goto(f"{site.base}/datasets/none")
    assert grid_ids(page) == [site.ids["delta"]]
    page.get_by_label("Select delta").check()
    assert page.locator("#selected-count").inner_text() == "1 selected"
    assert page.locator("#compare-selected").is_hidden()
    page.wait_for_function("() => document.querySelectorAll('#move-to option').length > 2")
    page.select_option("#move-to", label="Day 3")
    page.get_by_role("button", name="Move").click()
    page.wait_for_function(
        "() => /Moved 1 of 1/.test(document.getElementById('selection-status').textContent)"
    )
    assert image_doc(site, site.ids["delta"])["dataset"] == site.datasets["Day 3"]
    page.goto(f"{site.base}/datasets/{site.datasets['Day 3']}")
    assert sorted(grid_ids(page)) == sorted([site.ids["gamma"], site.ids["delta"]])
    page.get_by_label("Select all").check()
    assert page.locator("#selected-count").inner_text() == "2 selected"
    # Two at once come as one zip of both originals.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download originals").click()
    zipped = tmp_path / "originals.zip"
    download.value.save_as(zipped)
    assert download.value.suggested_filename == "originals.zip"
    with zipfile.ZipFile(zipped) as archive:
        assert archive.testzip() is None
        sizes = sorted(info.file_size for info in archive.infolist())
    assert sizes == sorted(image_doc(site, site.ids[n])["size"] for n in ("gamma", "delta"))
    with page.expect_navigation():
        page.get_by_role("button", name="Side by side").click()
    assert page.url.startswith(f"{site.base}/compare?")
    assert sorted(int(v.split("=")[1]) for v in page.url.split("?")[1].split("&")) == sorted(
        [site.ids["gamma"], site.ids["delta"]]
    )
    # Move back, then delete: the dialog asks first, and "Keep them" keeps them.
    page.goto(f"{site.base}/datasets/{site.datasets['Day 3']}")
    page.get_by_label("Select delta").check()
    page.wait_for_function("() => document.querySelectorAll('#move-to option').length > 2")
    page.select_option("#move-to", "none")
    page.get_by_role("button", name="Move").click()
    page.wait_for_function(
        "() => /Moved 1 of 1/.test(document.getElementById('selection-status').textContent)"
    )
    assert image_doc(site, site.ids["delta"])["dataset"] is None
    page.goto(f"{site.base}/datasets/none")
    page.get_by_label("Select delta").check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download originals").click()
    saved = tmp_path / "delta.npy"
    download.value.save_as(saved)
    assert np.array_equal(np.load(saved), np.load(saved))  # a readable .npy
    assert saved.stat().st_size == image_doc(site, site.ids["delta"])["size"]
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Keep them").click()
    assert image_doc(site, site.ids["delta"])["status"] == "active"
    page.get_by_role("button", name="Delete…").click()
    assert "Delete 1 image" in page.locator("#confirm-delete-text").inner_text()
    page.locator("#confirm-delete").get_by_role("button", name="Delete").click()
    page.wait_for_function(
        "() => /Deleted 1 of 1/.test(document.getElementById('selection-status').textContent)"
    )
    assert site.call("GET", f"/api/v2/images/{site.ids['delta']}")[0] == 404
    ui.shot(page, "hierarchy-deleted")


def test_edit_name_description_tags_and_dataset_in_the_viewer(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    image_id = site.ids["alpha"]
    page.goto(f"{site.base}/images/{image_id}")
    page.locator("#edit summary").click()
    page.wait_for_function("() => document.querySelectorAll('#edit-dataset option').length > 1")
    assert page.locator("#edit-dataset").input_value() == str(site.datasets["Day 1"])
    page.get_by_label("Name", exact=True).fill("alpha, renamed")
    page.get_by_label("Description").fill("Nuclei\nafter two days")
    page.get_by_label("Tags, separated by commas").fill("nuclei, day2, nuclei")
    page.select_option("#edit-dataset", label="Day 2")
    page.get_by_role("button", name="Save details").click()
    page.wait_for_function("() => document.getElementById('edit-status').textContent === 'Saved.'")
    doc = image_doc(site, image_id)
    assert (doc["name"], doc["description"], sorted(doc["tags"]), doc["dataset"]) == (
        "alpha, renamed",
        "Nuclei\nafter two days",
        ["day2", "nuclei"],  # a set, as Glance's tags
        site.datasets["Day 2"],
    )
    assert page.locator("#image-name").inner_text() == "alpha, renamed"
    assert sorted(page.locator("#image-tags .tag").all_inner_texts()) == ["day2", "nuclei"]
    page.reload()
    assert page.locator("#image-description").inner_text() == "Nuclei\nafter two days"
    # An empty name is refused in the page, and nothing is sent.
    page.locator("#edit summary").click()
    page.get_by_label("Name", exact=True).fill("  ")
    page.get_by_role("button", name="Save details").click()
    assert page.locator("#edit-status").inner_text() == "An image needs a name."
    assert image_doc(site, image_id)["name"] == "alpha, renamed"
    # Put it back for the other tests' counts.
    back = [{"op": "replace", "path": "/dataset", "value": site.datasets["Day 1"]}]
    assert site.call("PATCH", f"/api/v2/images/{image_id}", back, PATCH)[0] == 200


def test_catalog_projects_survive_their_datasets(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    owner, group = catalog.ensure_local_admin()
    first = catalog.create_dataset("first", owner, group)
    second = catalog.create_dataset("second", owner, group)
    project = catalog.create_project("p", owner, group)
    catalog.add_to_project(project, [first, second, first])
    assert catalog.get_project(project).dataset_ids == (first, second)
    assert catalog.project_ids_of([first, second]) == {first: [project], second: [project]}
    catalog.delete_dataset(first)
    assert catalog.get_project(project).dataset_ids == (second,)
    catalog.remove_from_project(project, [second])
    assert catalog.get_project(project).dataset_ids == ()
    assert catalog.list_datasets(text_contains="SEC")[0].id == second
    with pytest.raises(Exception, match="exists already"):
        catalog.create_project("p", owner, group)
    catalog.delete_project(project)
    assert catalog.list_projects() == []


def test_save_to_all_images_of_the_dataset(browser: object, site: Site) -> None:
    day3, beta, gamma = site.datasets["Day 3"], site.ids["beta"], site.ids["gamma"]
    into = [{"op": "replace", "path": "/dataset", "value": day3}]
    assert site.call("PATCH", f"/api/v2/images/{beta}", into, PATCH)[0] == 200
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{gamma}?dataset={day3}")
    ui.wait_for_tiles(page)
    end = page.locator("#channels input.end").first
    end.evaluate(
        "(el) => { el.value = '100'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    wanted = float(end.input_value())
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Save to all").click()
    page.wait_for_function(
        "() => document.getElementById('status').textContent === 'Saved on 2 images of Day 3.'"
    )
    # Beta, never opened, now renders with gamma's window for Ann.
    status, rdef = site.call("GET", f"/webgateway/getImgRDef/{beta}/")
    assert status == 200
    assert float(rdef["rdef"]["c"].split("|")[1].split(":")[1].split("$")[0]) == wanted
    back = [{"op": "replace", "path": "/dataset", "value": site.datasets["Day 2"]}]
    assert site.call("PATCH", f"/api/v2/images/{beta}", back, PATCH)[0] == 200
