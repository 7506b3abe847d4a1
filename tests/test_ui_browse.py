"""Browsing and uploading in headless Chromium as a member of two groups: what the home page
counts and links, the group switcher, filing uploads in datasets, Reset with Undo, the plane
controls above the fold, and error pages for browsers.

Counts are checked against the images the test made (and may see), never against
Coverslip's own JSON.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from coverslip.render.luts import get_lut
from tests import test_ui as ui
from tests.helpers import decode, quantize

browser = ui.browser  # the same headless Chromium as the other UI tests
PASSWORD = "ann-secret-pass-1"


class Site:
    def __init__(
        self, base: str, ids: dict[str, int], datasets: dict[str, int], stack: np.ndarray
    ) -> None:
        self.base = base
        self.ids = ids
        self.datasets = datasets
        self.stack = stack


def _import(home: Path, path: Path, *args: str) -> int:
    found = json.loads(ui.coverslip(home, "import", str(path), "--json", *args))
    return int(found["imported"][0])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Ann, in the read-write groups lab and team, with a z-stack in "Stack", an image in no
    dataset and one in "Team set"; the administrator's private image is also in "Stack"."""
    folder = tmp_path_factory.mktemp("ui-browse")
    home = folder / "home"
    ui.coverslip(home, "user", "ensure-admin")
    for group in ("lab", "team"):
        ui.coverslip(home, "group", "add", group, "--permissions", "read-write")
    ui.coverslip(home, "user", "add", "ann", "--password", PASSWORD, "--group", "lab")
    ui.coverslip(home, "group", "adduser", "team", "ann")
    yy, xx = np.mgrid[0:600, 0:800]
    stack = np.stack(
        [
            (1000 + 900 * np.sin(xx / (30 + 5 * z)) * np.cos(yy / 40)).astype(np.uint16)
            for z in range(4)
        ]
    )
    tifffile.imwrite(
        folder / "stack.ome.tif",
        stack,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )
    for name, value in (("loose", 1), ("team", 2), ("secret", 3)):
        np.save(folder / f"{name}.npy", ((xx + value * 37) % 251).astype(np.uint8))
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    np.save(folder / "checker.npy", checker)
    np.save(folder / "zebra.npy", (np.indices((64, 64))[1] % 2 * 255).astype(np.uint8))
    as_ann = ("--user", "ann", "--group", "lab")
    ids = {
        "stack": _import(home, folder / "stack.ome.tif", *as_ann, "--dataset", "Stack"),
        "loose": _import(home, folder / "loose.npy", *as_ann),
        "team": _import(
            home, folder / "team.npy", "--user", "ann", "--group", "team", "--dataset", "Team set"
        ),
        "secret": _import(home, folder / "secret.npy"),
        "checker": _import(home, folder / "checker.npy", *as_ann, "--dataset", "Patterns"),
        "zebra": _import(home, folder / "zebra.npy", *as_ann, "--dataset", "Patterns"),
    }
    datasets = {
        d["name"]: d["id"] for d in json.loads(ui.coverslip(home, "datasets", "list", "--json"))
    }
    # An image Ann may not see, in a dataset she may: her card must not count it.
    ui.coverslip(home, "datasets", "add", str(datasets["Stack"]), str(ids["secret"]))
    # Between checker and zebra by name, and not Ann's to see: never her neighbour.
    ui.coverslip(home, "datasets", "add", str(datasets["Patterns"]), str(ids["secret"]))
    with ui.served(home) as url:
        yield Site(url, ids, datasets, stack)


def signed_in(browser: object, site: Site, width: int = 1366, height: int = 768):  # type: ignore[no-untyped-def]
    return ui.signed_in_page(browser, site.base, "ann", PASSWORD, width, height)


cards, grid_ids = ui.cards, ui.grid_ids


def test_home_counts_only_what_ann_sees_and_links_images_in_no_dataset(
    browser: object, site: Site
) -> None:
    page = signed_in(browser, site)
    assert cards(page) == {
        "Stack": "1 image",  # not the administrator's private image linked into it
        "Team set": "1 image",
        "Patterns": "2 images",
        "Images in no dataset": "1 image",
        "All images": "5 images",
    }
    ui.shot(page, "browse-home")
    page.get_by_role("link", name="Images in no dataset").click()
    page.wait_for_selector("#grid .tile")
    assert grid_ids(page) == [site.ids["loose"]]
    page.goto(f"{site.base}/datasets/{site.datasets['Stack']}")
    assert grid_ids(page) == [site.ids["stack"]]
    assert "1 image" in page.locator("h1 small").inner_text()


def test_the_group_switcher_shows_one_group(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    with page.expect_navigation():
        page.select_option("#group-switch", label="team")
    assert cards(page) == {"Team set": "1 image", "All images": "1 image"}
    page.goto(f"{site.base}/datasets/0")
    assert grid_ids(page) == [site.ids["team"]]
    with page.expect_navigation():
        page.select_option("#group-switch", label="All my groups")
    page.goto(site.base + "/")
    assert cards(page)["All images"] == "5 images"


def api_json(page, path: str):  # type: ignore[no-untyped-def]
    answer = page.request.get(site_base(page) + path)
    assert answer.ok, answer.text()
    return answer.json()


def site_base(page) -> str:  # type: ignore[no-untyped-def]
    return "/".join(page.url.split("/")[:3])


def test_uploads_are_filed_in_a_chosen_or_new_dataset_and_duplicates_leave_nothing(
    browser: object, site: Site, tmp_path: Path
) -> None:
    page = signed_in(browser, site)
    picture = tmp_path / "plate day 1.png"
    PILImage.fromarray((np.indices((90, 140)).sum(axis=0) % 256).astype(np.uint8)).save(picture)
    page.goto(site.base + "/upload")
    page.wait_for_selector("#dataset option:has-text('Stack')", state="attached")
    offered = page.eval_on_selector_all("#dataset option", "o => o.map(e => e.textContent)")
    assert offered == ["No dataset", "Stack", "Team set", "Patterns", "New dataset…"]
    page.select_option("#dataset", label="New dataset…")
    page.get_by_label("Name of the new dataset").fill("Day 1")
    page.set_input_files("#files", str(picture))
    page.wait_for_selector("#uploads a:has-text('active')", timeout=30000)
    image_id = int(page.locator("#uploads a").get_attribute("href").rsplit("/", 1)[-1])
    datasets = {d["name"]: d for d in api_json(page, "/api/v2/datasets")["datasets"]}
    assert datasets["Day 1"]["image_count"] == 1
    assert api_json(page, f"/api/v2/images/{image_id}")["dataset"] == datasets["Day 1"]["id"]
    page.goto(f"{site.base}/images/{image_id}")
    assert "plate day 1.png" in page.locator("#general-list").inner_text()
    # The same bytes again: refused as the CLI refuses them, and no image is left behind.
    before = len(api_json(page, "/api/v2/images")["images"])
    page.goto(site.base + "/upload")
    page.set_input_files("#files", str(picture))
    failed = page.locator("#uploads .state.error")
    failed.wait_for(timeout=30000)
    assert f"already imported as image {image_id}" in failed.inner_text()
    page.wait_for_timeout(500)
    assert len(api_json(page, "/api/v2/images")["images"]) == before
    ui.shot(page, "browse-upload-duplicate")


def window_end(page) -> float:  # type: ignore[no-untyped-def]
    return float(page.locator("#channels input.end").first.input_value())


def test_reset_shows_the_imported_settings_and_undo_brings_back_the_saved(
    browser: object, site: Site
) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels input.end')")
    imported = window_end(page)
    end = page.locator("#channels input.end").first
    end.evaluate(
        "(el) => { el.value = String(Number(el.min) + (Number(el.max) - Number(el.min)) * 0.3);"
        " el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    saved = window_end(page)
    assert abs(saved - imported) > 1
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function("() => document.getElementById('status').textContent === 'Saved.'")
    page.get_by_role("button", name="Reset", exact=True).click()
    page.wait_for_function("() => !document.getElementById('undo').hidden")
    assert abs(window_end(page) - imported) <= 1
    assert "imported settings" in page.locator("#status").inner_text()
    page.get_by_role("button", name="Undo reset").click()
    page.wait_for_function("() => document.getElementById('undo').hidden")
    # The button hides at once, the window comes back once imgData has answered.
    page.wait_for_function(
        "(v) => Math.abs(Number(document.querySelector('#channels input.end').value) - v) <= 1",
        arg=saved,
    )
    # Nothing on the server changed: the saved settings come back on a fresh page.
    page.get_by_role("button", name="Reset", exact=True).click()
    page.wait_for_function("() => !document.getElementById('undo').hidden")
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels input.end')")
    assert abs(window_end(page) - saved) <= 1


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (1280, 720), (1400, 900), (1920, 1080)])
def test_plane_controls_are_above_the_fold(
    browser: object, site: Site, width: int, height: int
) -> None:
    page = signed_in(browser, site, width, height)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    slider = page.get_by_label("Z plane").bounding_box()
    assert slider is not None and slider["y"] + slider["height"] <= height, slider
    tall = page.evaluate("() => document.documentElement.scrollHeight")
    assert tall <= height
    ui.shot(page, f"browse-fold-{width}x{height}")


def test_browsers_get_the_site_error_page_and_programs_json(browser: object, site: Site) -> None:
    page = ui.new_page(browser)
    answer = page.goto(f"{site.base}/no/such/page")
    assert answer is not None and answer.status == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert page.locator("h1").inner_text() == "Not found"
    assert page.get_by_role("link", name="Back to the datasets").count() == 1
    answer = page.goto(f"{site.base}/webgateway/render_thumbnail/{site.ids['stack']}/0/")
    assert answer is not None and answer.status == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert "w" in page.locator(".error-page p").first.inner_text()
    # A program (no preference for HTML) gets JSON, never XML.
    request = urllib.request.Request(f"{site.base}/no/such/page", headers={"Accept": "*/*"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 404
    assert refused.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(refused.value.read())["title"]
    with urllib.request.urlopen(f"{site.base}/favicon.ico") as icon:
        assert icon.status == 200 and icon.headers["Content-Type"] == "image/vnd.microsoft.icon"
        assert icon.read()[:4] == b"\x00\x00\x01\x00"


def home_view(page, width: int, height: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Return (screen pixels per image pixel, left, top of the image) of OpenSeadragon's home
    view, from the canvas and the image size: the whole image fitted and centred."""
    box = page.locator("#osd .openseadragon-canvas").first.bounding_box()
    assert box is not None
    zoom = min(box["width"] / width, box["height"] / height)
    left = box["x"] + (box["width"] - width * zoom) / 2
    top = box["y"] + (box["height"] - height * zoom) / 2
    return zoom, left, top


def test_scale_bar_length_is_its_label_over_the_pixel_size(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    ui.wait_for_tiles(page)
    bar = page.locator("#scalebar .bar")
    label = page.locator("#scalebar .label").inner_text()
    value, unit = label.split()
    microns = float(value) * {"nm": 0.001, "µm": 1.0, "mm": 1000.0}[unit]
    zoom, _left, _top = home_view(page, 800, 600)
    drawn = bar.bounding_box()
    assert drawn is not None
    assert abs(drawn["width"] - microns / 0.325 * zoom) <= 1.5, (label, drawn, zoom)
    assert str(microns / 10 ** int(np.floor(np.log10(microns))))[0] in "125"
    ui.shot(page, "browse-scalebar")
    # No pixel size, no scale bar.
    page.goto(f"{site.base}/images/{site.ids['loose']}")
    ui.wait_for_tiles(page)
    assert page.locator("#scalebar:visible").count() == 0


def test_values_under_the_cursor_are_the_stored_ones(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}?z=2")
    ui.wait_for_tiles(page)
    zoom, left, top = home_view(page, 800, 600)
    readout = page.locator("#readout")
    for x, y in ((10, 20), (400, 300), (777, 555)):
        page.mouse.move(left + (x + 0.5) * zoom, top + (y + 0.5) * zoom)
        page.wait_for_function(
            f"() => {{ const r = document.getElementById('readout');"
            f" return !r.hidden && r.textContent.startsWith('x {x}, y {y} '); }}"
        )
        where, channel = readout.inner_text().split(" · ")
        assert where == f"x {x}, y {y}"
        assert channel.rsplit(" ", 1)[1] == str(site.stack[2, y, x]), channel
    page.mouse.move(left - 20, top - 20)  # off the image: nothing to read
    page.wait_for_function("() => document.getElementById('readout').hidden")


def canvas_grey(page, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Return the middle of the viewer's canvas as grey levels (a screenshot)."""
    box = page.locator("#osd .openseadragon-canvas").first.bounding_box()
    assert box is not None
    picture = ui.shot(page, name).mean(axis=2)
    y0, x0 = int(box["y"] + box["height"] * 0.3), int(box["x"] + box["width"] * 0.3)
    y1, x1 = int(box["y"] + box["height"] * 0.7), int(box["x"] + box["width"] * 0.7)
    return np.asarray(picture[y0:y1, x0:x1])


def slope(picture: np.ndarray, axis: int) -> float:
    """Mean grey step along ``axis``, leaving out the ramp's wrap from 250 back to 0."""
    steps = np.diff(picture, axis=axis)
    return float(steps[np.abs(steps) < 8].mean())


def settled(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)  # OpenSeadragon's animation


def test_rotate_and_flip_turn_the_picture(browser: object, site: Site) -> None:
    # The image ramps up along x (x mod 251) and is the same down every column.
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['loose']}")
    ui.wait_for_tiles(page)
    settled(page)
    before = canvas_grey(page, "browse-rotate-before")
    assert slope(before, 1) > 0.1 and abs(slope(before, 0)) < 0.02, (
        slope(before, 1),
        slope(before, 0),
    )
    page.get_by_role("button", name="⟳ 90°").click()
    settled(page)
    turned = canvas_grey(page, "browse-rotate-after")  # now it ramps up downwards
    assert slope(turned, 0) > 0.1 and abs(slope(turned, 1)) < 0.02, (
        slope(turned, 0),
        slope(turned, 1),
    )
    page.get_by_role("button", name="⟲ 90°").click()
    page.get_by_role("button", name="Flip").click()
    settled(page)
    mirrored = canvas_grey(page, "browse-flip")
    assert slope(mirrored, 1) < -0.1  # now it ramps down to the right
    assert page.get_by_role("button", name="Flip").get_attribute("aria-pressed") == "true"


def test_real_pixels_with_lossless_tiles(browser: object, site: Site) -> None:
    # A checkerboard of 1-pixel cells, about 10 screen pixels each at the home view.
    page = signed_in(browser, site)
    tiles: list[str] = []
    page.on("response", lambda r: "render_image_region" in r.url and tiles.append(r.url))
    page.goto(f"{site.base}/images/{site.ids['checker']}")
    ui.wait_for_tiles(page)
    page.get_by_label("Lossless tiles (PNG, no JPEG artefacts)").check()
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('format=png'))"
    )
    settled(page)
    smooth = canvas_grey(page, "browse-checker-smooth")
    page.get_by_label("Real pixels (no smoothing when zoomed in)").check()
    settled(page)
    sharp = canvas_grey(page, "browse-checker-nearest")
    between = lambda a: float(((a > 40) & (a < 215)).mean())  # noqa: E731
    assert between(smooth) > 0.05, between(smooth)
    assert between(sharp) < 0.02, between(sharp)
    assert any("format=png" in url for url in tiles)


def test_play_steps_through_the_planes_until_stopped(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    page.get_by_label("Frames per second").fill("10")
    seen = set()
    page.get_by_role("button", name="Play Z").click()
    for _ in range(20):
        seen.add(page.get_by_label("Z plane").input_value())
        page.wait_for_timeout(60)
    assert seen == {"0", "1", "2", "3"}, seen
    page.get_by_role("button", name="Play Z").click()
    stopped = page.get_by_label("Z plane").input_value()
    page.wait_for_timeout(400)
    assert page.get_by_label("Z plane").input_value() == stopped


def test_window_values_typed_and_presets(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    start, end = page.locator("#channels input.start-num"), page.locator("#channels input.end-num")
    # What the import gave (saved settings, as the Reset test leaves, may differ).
    defaults = api_json(page, f"/webgateway/imgData/{site.ids['stack']}/?getDefaults=true")
    window = defaults["channels"][0]["window"]
    given = float(window["start"]), float(window["end"])
    preset = page.locator("#channels select.preset")

    def asked(low: float, high: float) -> None:
        wanted = f"|{low:g}:{high:g}$"
        page.wait_for_function(
            "(w) => performance.getEntriesByType('resource').some(e =>"
            " decodeURIComponent(e.name).includes(w))",
            arg=wanted,
        )

    preset.select_option("type")
    assert (float(start.input_value()), float(end.input_value())) == (0, 65535)
    asked(0, 65535)
    preset.select_option("data")  # the channel's min and max over every plane
    assert (float(start.input_value()), float(end.input_value())) == (
        float(site.stack.min()),
        float(site.stack.max()),
    )
    end.fill("1500")
    end.press("Enter")
    asked(float(site.stack.min()), 1500)
    assert float(page.locator("#channels input.end").input_value()) == 1500
    end.fill("1")  # below the start: refused, the window stays
    end.press("Enter")
    assert float(end.input_value()) == 1500
    preset.select_option("imported")
    page.wait_for_function(
        "(v) => Number(document.querySelector('#channels input.end-num').value) === v",
        arg=given[1],
    )
    assert float(start.input_value()) == given[0]


def test_plane_keys_step_z_on_the_image_without_panning_and_are_listed(
    browser: object, site: Site
) -> None:
    stack = f"{site.base}/images/{site.ids['stack']}"
    by_slider = signed_in(browser, site)
    by_slider.goto(stack)
    by_slider.wait_for_function("() => document.querySelector('#channels .channel')")
    by_slider.get_by_label("Z plane").fill("2")
    settled(by_slider)
    expected = canvas_grey(by_slider, "browse-keys-slider")
    page = signed_in(browser, site)
    page.goto(stack)
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    settled(page)
    # Keys on the image itself, where OpenSeadragon would pan with the arrows.
    page.locator("#osd .openseadragon-canvas").first.click()
    for key in ("ArrowUp", "PageUp", "PageUp", "ArrowDown"):
        page.keyboard.press(key)
    assert page.get_by_label("Z plane").input_value() == "2"
    settled(page)
    shown = canvas_grey(page, "browse-keys")
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).mean() < 1, np.abs(shown - expected).mean()  # not panned
    assert page.evaluate("() => [scrollX, scrollY]") == [0, 0]
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    dialog.wait_for(state="visible")
    ui.shot(page, "browse-keys-help")
    assert "Next Z plane" in dialog.inner_text() and "Next time point" not in dialog.inner_text()
    page.keyboard.press("ArrowUp")  # keys stay with the list while it is open
    assert page.get_by_label("Z plane").input_value() == "2"
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.get_by_role("button", name="Shortcuts").click()
    dialog.wait_for(state="visible")
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="hidden")


def test_previous_and_next_in_the_dataset_and_back_to_it(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/datasets/{site.datasets['Patterns']}")
    page.locator(f"#grid .tile[data-id='{site.ids['checker']}'] a").click()
    page.wait_for_url(f"**/images/{site.ids['checker']}?dataset={site.datasets['Patterns']}")
    nav = page.get_by_role("navigation", name="In this dataset")
    assert nav.get_by_role("link", name="Previous").count() == 0
    nav.get_by_role("link", name="Next").click()  # zebra: the hidden image between is skipped
    page.wait_for_url(f"**/images/{site.ids['zebra']}?dataset={site.datasets['Patterns']}")
    assert page.locator("h1.image-name").inner_text() == "zebra"
    assert nav.get_by_role("link", name="Next").count() == 0
    ui.shot(page, "browse-neighbours")
    nav.get_by_role("link", name="Previous").click()
    page.wait_for_url(f"**/images/{site.ids['checker']}?dataset={site.datasets['Patterns']}")
    nav.get_by_role("link", name="Patterns").click()
    page.wait_for_url(f"**/datasets/{site.datasets['Patterns']}")
    # Opened without ?dataset=, the image's own dataset; an image in none has no such links.
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    assert nav.get_by_role("link", name="Stack").count() == 1
    assert nav.get_by_role("link", name="Previous").count() == 0
    page.goto(f"{site.base}/images/{site.ids['loose']}")
    assert nav.count() == 0


def test_export_the_view_at_full_and_screen_resolution(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['checker']}")
    ui.wait_for_tiles(page)
    settled(page)
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)

    def exported(fmt: str, scope: str) -> tuple[str, np.ndarray]:
        page.get_by_label("Export format").select_option(fmt)
        page.get_by_label("Export resolution").select_option(scope)
        with page.expect_download() as waiting:
            page.get_by_role("button", name="Export", exact=True).click()
        download = waiting.value
        path = download.path()
        assert path is not None
        return download.suggested_filename, decode(Path(path).read_bytes())

    name, full = exported("png", "full")
    assert name == "checker-z1-t1.png"
    assert full.shape == (64, 64, 3) and (full == checker[:, :, None]).all()
    name, tiff = exported("tif", "full")
    assert name.endswith(".tif") and (tiff == checker[:, :, None]).all()
    assert page.get_by_label("Export resolution").input_value() == "full"  # TIFF: no screen
    name, shown = exported("png", "screen")
    assert name == "checker-z1-t1-screen.png"
    size = page.evaluate(
        "() => { const c = document.querySelector('#osd .openseadragon-canvas canvas');"
        " return [c.height, c.width]; }"
    )
    assert list(shown.shape[:2]) == size
    assert shown.min() < 30 and shown.max() > 225  # the black and white cells, as shown


def test_undo_redo_and_settings_pasted_on_another_image(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['checker']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    end = page.locator("#channels input.end-num")
    given = float(end.input_value())
    undo = page.get_by_role("button", name="Undo", exact=True)
    redo = page.get_by_role("button", name="Redo", exact=True)
    assert undo.is_disabled() and redo.is_disabled()
    for value in ("200", "120"):
        end.fill(value)
        end.press("Enter")
        page.wait_for_function(
            "(v) => decodeURIComponent(location.search).includes(v)", arg=f":{value}$"
        )
    # The inputs follow imgData's answer, the URL the redraw after it: wait for both.
    at_200 = (
        "() => Number(document.querySelector('#channels input.end-num').value) === 200"
        " && decodeURIComponent(location.search).includes(':200$')"
    )
    undo.click()
    page.wait_for_function(at_200)
    undo.click()
    page.wait_for_function(
        "(v) => Number(document.querySelector('#channels input.end-num').value) === v", arg=given
    )
    assert undo.is_disabled() and not redo.is_disabled()
    redo.click()
    page.wait_for_function(at_200)
    page.get_by_role("button", name="Copy settings").click()
    # On zebra (one 8-bit channel too) the copied window shows, and Undo takes it back.
    page.goto(f"{site.base}/images/{site.ids['zebra']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    own = float(end.input_value())
    assert own != 200
    page.get_by_role("button", name="Paste settings").click()
    page.wait_for_function(
        "() => Number(document.querySelector('#channels input.end-num').value) === 200"
    )
    page.wait_for_function(
        "(id) => performance.getEntriesByType('resource').some(e =>"
        " e.name.includes(`render_image_region/${id}/`) && decodeURIComponent(e.name).includes(':200$'))",
        arg=site.ids["zebra"],
    )
    assert "pasted" in page.locator("#status").inner_text()
    undo.click()
    page.wait_for_function(
        "(v) => Number(document.querySelector('#channels input.end-num').value) === v", arg=own
    )
    # Another browser has nothing copied.
    other = signed_in(browser, site)
    other.goto(f"{site.base}/images/{site.ids['zebra']}")
    other.wait_for_function("() => document.querySelector('#channels .channel')")
    other.get_by_role("button", name="Paste settings").click()
    assert "No settings copied" in other.locator("#status").inner_text()


def test_histogram_follows_the_plane_and_shows_the_window(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels canvas.histogram[data-plane]')")
    page.get_by_label("Z plane").fill("2")
    page.wait_for_function(
        "() => document.querySelector('#channels canvas.histogram').dataset.plane === '2,0'"
    )
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e =>"
        " e.name.includes('histogram_json') && e.name.includes('theZ=2'))"
    )
    end = page.locator("#channels input.end-num")
    end.fill("1500")
    end.press("Enter")
    low, high = float(site.stack.min()), float(site.stack.max())
    page.wait_for_function(
        "() => document.querySelector('#channels canvas.histogram').dataset.window.endsWith(':1500')"
    )
    red = page.evaluate(
        "() => { const c = document.querySelector('#channels canvas.histogram');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data; const xs = [];"
        " for (let x = 0; x < c.width; x++) if (d[4 * x] > 200 && d[4 * x + 1] < 120) xs.push(x);"
        " return [xs, c.width]; }"
    )
    xs, width = red
    start = float(page.locator("#channels input.start-num").input_value())
    expected = {round((v - low) / (high - low) * (width - 1)) for v in (start, 1500.0)}
    assert set(xs) == {x for x in expected if 0 <= x < width}, (xs, expected)


def test_mean_projection_over_a_z_range(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    assert page.get_by_label("First plane of the projection").is_disabled()
    page.get_by_label("Greyscale").check()  # the channel's level itself in every lane
    page.get_by_label("Projection over Z").select_option("intmean")
    assert page.get_by_label("Z plane").is_disabled()  # one plane does not apply
    page.get_by_label("First plane of the projection").fill("2")
    page.get_by_label("First plane of the projection").press("Enter")
    page.get_by_label("Last plane of the projection").fill("3")
    page.get_by_label("Last plane of the projection").press("Enter")
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e =>"
        " decodeURIComponent(e.name).includes('p=intmean|1:2'))"
    )
    # The histogram is the projection's, not the plane's.
    page.wait_for_function(
        "() => document.querySelector('#channels canvas.histogram').dataset.plane"
        " === 'intmean|1:2,0'"
    )
    start = float(page.locator("#channels input.start-num").input_value())
    end = float(page.locator("#channels input.end-num").input_value())
    page.get_by_label("Export format").select_option("png")
    page.get_by_label("Export resolution").select_option("full")
    with page.expect_download() as waiting:
        page.get_by_role("button", name="Export", exact=True).click()
    path = waiting.value.path()
    assert path is not None
    shown = decode(Path(path).read_bytes())[:, :, 0].astype(int)
    # OMERO's mean: the sum over planes 2 and 3, divided by 2, truncated; then the window.
    mean = site.stack[1:3].astype(np.int64).sum(axis=0) // 2
    expected = quantize(mean, start, end)
    assert np.array_equal(shown, expected), np.abs(shown - expected).max()


def test_lut_swatch_and_what_greyscale_shows(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    page.get_by_label("Greyscale").uncheck()  # one channel opens in greyscale, as in OMERO
    page.locator("#channels select.lut").select_option("fire.lut")
    page.wait_for_function(
        "() => document.querySelector('#channels canvas.swatch').dataset.shows === 'fire.lut'"
    )
    ends = page.evaluate(
        "() => { const c = document.querySelector('#channels canvas.swatch');"
        " const d = c.getContext('2d').getImageData(0, 5, c.width, 1).data;"
        " return Array.from({ length: c.width }, (_, x) => [d[4 * x], d[4 * x + 1], d[4 * x + 2]]); }"
    )
    assert ends == get_lut("fire").tolist()  # every colour of the table, dark to bright
    page.get_by_label("Greyscale").check()
    note = page.locator("#channels .grey-note").first
    assert "Shown in grey" in note.inner_text()
    assert page.locator("#channels select.lut").is_disabled()
    assert page.locator("#channels input.color").is_disabled()
    page.get_by_label("Greyscale").uncheck()
    assert note.inner_text() == "" and not page.locator("#channels select.lut").is_disabled()


def test_split_channels_view(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}")
    ui.wait_for_tiles(page)
    assert page.locator("#scalebar").is_visible()
    page.get_by_label("Split channels").check()
    page.wait_for_function(
        "(id) => performance.getEntriesByType('resource').some(e =>"
        " e.name.includes(`render_split_channel/${id}/`) && decodeURIComponent(e.name).includes('c=1|'))",
        arg=site.ids["stack"],
    )
    settled(page)
    ui.shot(page, "browse-split")
    assert not page.locator("#scalebar").is_visible()  # the panes are not at the image's scale
    box = page.locator("#osd .openseadragon-canvas").first.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(500)
    assert not page.locator("#readout").is_visible()
    assert canvas_grey(page, "browse-split-canvas").std() > 5  # the panes are drawn
    page.get_by_label("Split channels").uncheck()
    settled(page)
    assert page.locator("#scalebar").is_visible()


def test_invert_and_the_quantization_curve(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['stack']}?z=0")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    page.get_by_label("Greyscale").check()
    coefficient = page.locator("#channels input.coefficient")
    assert coefficient.is_disabled()  # linear's coefficient is 1
    page.locator("#channels select.family").select_option("polynomial")
    coefficient.fill("2")
    coefficient.press("Enter")
    page.locator("#channels input.invert").check()
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => { const u = decodeURIComponent(e.name);"
        " return u.includes('render_image_region') && u.includes('\"family\":\"polynomial\"')"
        " && u.includes('\"coefficient\":2') && u.includes('\"enabled\":true'); })"
    )
    start = float(page.locator("#channels input.start-num").input_value())
    end = float(page.locator("#channels input.end-num").input_value())
    with page.expect_download() as waiting:
        page.get_by_role("button", name="Export", exact=True).click()
    path = waiting.value.path()
    assert path is not None
    shown = decode(Path(path).read_bytes())[:, :, 0]
    expected = quantize(site.stack[0], start, end, "polynomial", 2.0, inverted=True)
    assert np.array_equal(shown, expected), np.abs(shown.astype(int) - expected).max()


def test_two_images_side_by_side_stay_in_step(browser: object, site: Site) -> None:
    page = signed_in(browser, site)
    page.goto(f"{site.base}/images/{site.ids['checker']}?dataset={site.datasets['Patterns']}")
    page.get_by_role("link", name="Side by side").click()
    page.wait_for_url(f"**/compare?id={site.ids['checker']}&id={site.ids['zebra']}")
    panes = page.locator(".compare-osd")
    assert panes.count() == 2
    # Large enough to zoom into (a 64-pixel image is past the largest zoom at once).
    page.goto(f"{site.base}/compare?id={site.ids['loose']}&id={site.ids['stack']}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.compare-osd')].every(e => e.dataset.zoom)"
    )
    settled(page)
    home = float(panes.nth(0).get_attribute("data-zoom") or 0)
    box = panes.nth(0).bounding_box()
    assert box is not None
    for _ in range(2):  # zoom in on the first, with its own button
        page.locator(".compare-pane").nth(0).get_by_title("Zoom in").click()
    settled(page)
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    settled(page)
    ui.shot(page, "browse-compare")
    zooms = [float(z) for z in panes.evaluate_all("es => es.map(e => e.dataset.zoom)")]
    centres = panes.evaluate_all("es => es.map(e => e.dataset.center)")
    assert zooms[0] > 1.5 * home and zooms[0] == pytest.approx(zooms[1], rel=1e-3), (home, zooms)
    assert centres[0] == centres[1], centres
    # Z and T go together; an image that may not be seen makes the page a 404.
    page.goto(f"{site.base}/compare?id={site.ids['stack']}&id={site.ids['stack']}")
    page.wait_for_function("() => document.querySelector('.compare-osd').dataset.zoom")
    page.get_by_label("Z plane").fill("2")
    page.wait_for_function(
        "(id) => performance.getEntriesByType('resource').filter(e =>"
        " decodeURIComponent(e.name).includes(`/iiif/3/${id};z=2;t=0/`)).length >= 2",
        arg=site.ids["stack"],
    )
    hidden = page.request.get(f"{site.base}/compare?id={site.ids['stack']}&id={site.ids['secret']}")
    assert hidden.status == 404
    one = page.request.get(f"{site.base}/compare?id={site.ids['stack']}")
    assert one.status == 400
