"""The viewer draws an OME-TIFF's regions of interest where they are and lists each shape's
statistics for the plane shown, equal to numpy's over the shape's mask."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests import test_ui as ui
from tests.test_rois import HEIGHT, OME, WIDTH

browser = ui.browser  # the same headless Chromium as the other UI tests


@contextlib.contextmanager
def public_site(home: Path, path: Path) -> Iterator[tuple[str, int]]:
    """Import ``path`` into the Public group of a new instance and serve it; yield the
    server's URL and the image's id."""
    ui.coverslip(home, "user", "ensure-admin")
    found = json.loads(ui.coverslip(home, "import", str(path), "--group", "Public", "--json"))
    with ui.served(home) as url:
        yield url, int(found["imported"][0])


def viewer_at(browser: object, base: str, image_id: int, z: int):  # type: ignore[no-untyped-def]
    """Open the viewer on plane ``z`` and wait for its tiles and its ROI table of that plane."""
    page = ui.new_page(browser, 1366, 768)
    page.goto(f"{base}/images/{image_id}?z={z}")
    ui.wait_for_tiles(page)
    page.wait_for_function(
        "(z) => document.querySelector('#rois tbody').dataset.plane === `${z},0`", arg=z
    )
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, np.ndarray]]:
    folder = tmp_path_factory.mktemp("ui-rois")
    data = np.random.default_rng(8).integers(0, 4000, (2, 2, HEIGHT, WIDTH), dtype=np.uint16)
    path = folder / "cells.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        planes = [data[c, z] for c in range(2) for z in range(2)]
        tif.write(planes[0], description=OME.format(w=WIDTH, h=HEIGHT), metadata=None)
        for plane in planes[1:]:
            tif.write(plane, metadata=None)
    with public_site(folder / "home", path) as (url, image_id):
        yield url, image_id, data


def test_rois_drawn_in_place_and_listed_with_their_statistics(
    browser: object, site: tuple[str, int, np.ndarray], tmp_path: Path
) -> None:
    base, image_id, data = site
    page = viewer_at(browser, base, image_id, 1)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)  # OpenSeadragon's animation to the home view
    ui.shot(page, "rois")
    # The rectangle (X 10.5, Y 20, 30 × 15.5) where the image's pixels are on screen.
    canvas = page.locator("#osd .openseadragon-canvas").first.bounding_box()
    rect = page.evaluate(
        "() => { const r = document.querySelector('.roi-layer rect').getBoundingClientRect();"
        " return [r.x, r.y, r.width, r.height]; }"
    )
    assert canvas is not None
    scale = min(canvas["width"] / WIDTH, canvas["height"] / HEIGHT)
    left = canvas["x"] + (canvas["width"] - WIDTH * scale) / 2
    top = canvas["y"] + (canvas["height"] - HEIGHT * scale) / 2
    want = [left + 10.5 * scale, top + 20 * scale, 30 * scale, 15.5 * scale]
    assert np.allclose(rect, want, atol=3), (rect, want)
    # Rows: the shapes on Z 2 (the rectangle's TheZ is 1) and every plane's.
    rows = page.locator("#rois tbody tr")
    assert [r.get_attribute("data-shape") for r in rows.all()] == ["1", "2", "3", "4", "5"]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    ellipse = ((xx - 80) / 20.5) ** 2 + ((yy - 45.5) / 12) ** 2 <= 1
    row = page.locator("#rois tbody tr[data-shape='2']")
    page.wait_for_function(
        "() => document.querySelector(\"#rois tbody tr[data-shape='2'] [data-stat='1-max']\")"
    )
    assert int(row.locator("td.area").inner_text()) == int(ellipse.sum())
    for c in range(2):
        values = data[c, 1][ellipse].astype(np.float64)
        for what, value in (("mean", values.mean()), ("min", values.min()), ("max", values.max())):
            shown = float(row.locator(f"[data-stat='{c}-{what}']").inner_text())
            assert shown == pytest.approx(value, rel=1e-4), (c, what)
    # On Z 1 the rectangle is neither drawn nor listed.
    page.get_by_label("Z plane").fill("0")
    page.wait_for_function("() => document.querySelector('#rois tbody').dataset.plane === '0,0'")
    assert [r.get_attribute("data-shape") for r in rows.all()] == ["2", "3", "4", "5"]
    assert not page.locator(".roi-layer rect").is_visible()
    page.get_by_label("Show them on the image").uncheck()
    assert not page.locator(".roi-layer ellipse").is_visible()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, np.ndarray]]:
    """An OME-Zarr of two channels and two planes with its "nuclei" label image."""
    from tests.test_format_omezarr import group, write_image
    from tests.test_rois_labels import HEIGHT as H
    from tests.test_rois_labels import WIDTH as W
    from tests.test_rois_labels import nuclei

    folder = tmp_path_factory.mktemp("ui-labels")
    data = np.random.default_rng(9).integers(0, 4000, (2, 2, H, W), dtype=np.uint16)
    path = folder / "cells.zarr"
    write_image(path, [data], 2, "czyx")
    group(path / "labels", 2, {"labels": ["nuclei"]})
    write_image(path / "labels" / "nuclei", [nuclei()], 2, "zyx")
    with public_site(folder / "home", path) as (url, image_id):
        yield url, image_id, data


def test_label_masks_drawn_and_listed(
    browser: object, labelled: tuple[str, int, np.ndarray]
) -> None:
    from tests.test_rois_labels import nuclei

    base, image_id, data = labelled
    page = viewer_at(browser, base, image_id, 0)
    # Plane 0 holds label 1 and label 2 (one mask each); each mask's picture is loaded.
    rows = page.locator("#rois tbody tr")
    assert rows.count() == 2
    masks = page.evaluate(
        "() => [...document.querySelectorAll('.roi-layer image')]"
        ".filter(i => i.style.display !== 'none').map(i => ["
        "Number(i.getAttribute('x')), Number(i.getAttribute('y')),"
        " Number(i.getAttribute('width')), Number(i.getAttribute('height'))])"
    )
    labels = nuclei()[0]
    boxes = []
    for value in (1, 2):
        ys, xs = np.nonzero(labels == value)
        boxes.append([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    assert sorted(masks) == sorted(boxes)
    ui.shot(page, "roi-labels")
    second = rows.nth(1)
    page.wait_for_function(
        "() => document.querySelectorAll('#rois tbody tr')[1].querySelector(\"[data-stat='0-max']\")"
    )
    inside = labels == 2
    assert int(second.locator("td.area").inner_text()) == int(inside.sum())
    mean = float(second.locator("[data-stat='0-mean']").inner_text())
    assert mean == pytest.approx(data[0, 0][inside].mean(), rel=1e-4)
