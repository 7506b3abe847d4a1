"""The viewer's information panel in headless Chromium: what real instrument files said.

Each value is checked against the file's own vendor reader (pylibCZIrw, liffile, the OME-XML
beside an OME-Zarr) or against the plate the test writes, never against Coverslip's JSON.
"""

from __future__ import annotations

import json
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tests import test_ui as ui
from tests.helpers import SAMPLES
from tests.test_plates import write_plate

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="the sample files are not here")

browser = ui.browser  # the same headless Chromium as the other UI tests

CZI = SAMPLES / "czi/CD_s_1_t_3_c_2_z_5.czi"
LIF = SAMPLES / "lif/testdata_2channel_xz.lif"
SLIDE = SAMPLES / "ome-zarr/CMU-1-Small-Region.ome.zarr"
# Vendor metadata a hostile file could carry: shown as text, never run.
HOSTILE = {
    "Operator": "<script>window.__pwned = 1</script>",
    "Comment": '<img src="x" onerror="window.__pwned = 2">',
}


class Site:
    def __init__(self, base: str, ids: dict[str, list[int]]) -> None:
        self.base = base
        self.ids = ids

    def img_data(self, image_id: int) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/webgateway/imgData/{image_id}/") as answer:
            return json.load(answer)  # type: ignore[no-any-return]


def _import(home: Path, path: Path) -> list[int]:
    found = json.loads(ui.coverslip(home, "import", str(path), "--group", "Public", "--json"))
    assert found["failed"] == 0
    return [int(i) for i in found["imported"]]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real `coverslip serve` with public images of a CZI, a LIF, a slide, a plate, a TIFF."""
    folder = tmp_path_factory.mktemp("ui-metadata")
    home = folder / "home"
    ui.coverslip(home, "user", "ensure-admin")
    hostile = folder / "hostile.tif"
    info = "\n".join(f"{key} = {value}" for key, value in HOSTILE.items())
    tifffile.imwrite(
        hostile, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), imagej=True,
        metadata={"Info": info},
    )  # fmt: skip
    write_plate(folder / "screen.zarr")
    ids = {
        "czi": _import(home, CZI),
        "lif": _import(home, LIF),
        "slide": _import(home, SLIDE),
        "hostile": _import(home, hostile),
        "plate": _import(home, folder / "screen.zarr"),
    }
    with ui.served(home) as url:
        yield Site(url, ids)


def open_viewer(browser: object, site: Site, image_id: int, width: int = 1366, height: int = 768):  # type: ignore[no-untyped-def]
    page = ui.new_page(browser, width, height)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site.base}/images/{image_id}")
    page.wait_for_function("() => document.querySelector('#channels .channel')")
    page.wait_for_load_state("networkidle")
    page.errors = errors
    return page


def field(page, name: str) -> str:  # type: ignore[no-untyped-def]
    """Return the text of the panel's value ``name`` (a data-field), waiting for it to appear."""
    found = page.locator(f'.panel dd[data-field="{name}"]')
    found.wait_for(timeout=10000)
    return str(found.inner_text()).strip()


def czi_reference() -> dict[str, Any]:
    from pylibCZIrw import czi

    with czi.open_czi(str(CZI)) as opened:
        meta = opened.metadata["ImageDocument"]["Metadata"]
    information = meta["Information"]
    image = information["Image"]
    offsets = image["Dimensions"]["T"]["Positions"]["List"]["Offsets"].split()
    return {
        "objective": information["Instrument"]["Objectives"]["Objective"],
        "acquired": image["AcquisitionDateAndTime"],
        "increment": float(offsets[1]) - float(offsets[0]),
        "channels": image["Dimensions"]["Channels"]["Channel"],
        "application": information["Application"]["Name"],
    }


def test_czi_objective_acquisition_and_wavelengths(browser: object, site: Site) -> None:
    want = czi_reference()
    page = open_viewer(browser, site, site.ids["czi"][0])
    objective = want["objective"]
    assert field(page, "objective") == objective["@Name"]
    assert field(page, "magnification") == f"{float(objective['NominalMagnification']):g}×"
    assert float(field(page, "na")) == float(objective["LensNA"])
    acquired = page.locator('.panel dd[data-field="acquired"] time')
    assert acquired.get_attribute("datetime") == want["acquired"]
    day, clock = want["acquired"].split("T")
    assert acquired.inner_text().startswith(f"{day} {clock[:8]}")
    assert field(page, "time-increment") == f"{want['increment']:g} s"
    rows = page.locator("#wavelengths tbody tr")
    assert rows.count() == len(want["channels"])
    for i, channel in enumerate(want["channels"]):
        cells = [c.strip() for c in rows.nth(i).locator("th, td").all_inner_texts()]
        assert cells == [
            channel["@Name"],
            f"{float(channel['ExcitationWavelength']):g}",
            f"{float(channel['EmissionWavelength']):g}",
        ]
    # One image in its file: no "Image N of M", no plate.
    assert page.locator('.panel [data-field="position"], .panel [data-field="plate"]').count() == 0
    assert page.errors == []
    ui.shot(page, "metadata-czi")


def test_original_metadata_filters_and_pages(browser: object, site: Site) -> None:
    want = czi_reference()
    page = open_viewer(browser, site, site.ids["czi"][0])
    total = len(site.img_data(site.ids["czi"][0])["meta"]["originalMetadata"])
    assert total > 1000, "this sample's vendor metadata is long"
    assert page.locator("#original-rows tr").count() == 0  # drawn only when opened
    page.locator("#original > summary").click()
    rows = page.locator("#original-rows tr")
    page.wait_for_function("() => document.querySelectorAll('#original-rows tr').length > 0")
    assert rows.count() == 500
    page.get_by_role("button", name="Show 500 more").click()
    assert rows.count() == 1000
    page.get_by_label("Filter original metadata").fill("application|name")
    page.wait_for_function("() => document.querySelectorAll('#original-rows tr').length < 50")
    shown = [
        [c.strip() for c in rows.nth(i).locator("th, td").all_inner_texts()]
        for i in range(rows.count())
    ]
    assert ["Information|Application|Name", want["application"]] in shown
    assert all("application|name" in " ".join(row).lower() for row in shown)
    assert page.locator("#original-count").inner_text() == f"{len(shown)} of {total}"
    page.get_by_label("Filter original metadata").fill("no such key anywhere")
    page.wait_for_function("() => document.querySelectorAll('#original-rows tr').length === 0")
    assert page.get_by_role("button", name="Show 500 more").is_hidden()


def test_page_fits_1366x768_and_the_panel_scrolls(browser: object, site: Site) -> None:
    page = open_viewer(browser, site, site.ids["czi"][0])
    page.locator("#original > summary").click()
    page.locator("#original-rows tr").first.wait_for()
    sizes = page.evaluate(
        "() => { const p = document.querySelector('.panel'); p.scrollTop = p.scrollHeight;"
        " window.scrollTo(0, 10000); return {page: document.documentElement.scrollHeight,"
        " wide: document.documentElement.scrollWidth, y: window.scrollY, top: p.scrollTop,"
        " panel: p.scrollHeight, seen: p.clientHeight}; }"
    )
    assert sizes["page"] <= 768 and sizes["wide"] <= 1366 and sizes["y"] == 0, sizes
    assert sizes["panel"] > sizes["seen"] and sizes["top"] > 0, sizes
    viewer = page.locator("#osd").bounding_box()
    assert viewer is not None and viewer["height"] >= 400 and viewer["y"] + viewer["height"] <= 768
    ui.shot(page, "metadata-fits")


def test_vendor_strings_are_shown_as_text(browser: object, site: Site) -> None:
    page = open_viewer(browser, site, site.ids["hostile"][0])
    page.locator("#original > summary").click()
    page.get_by_label("Filter original metadata").fill("window.__pwned")
    page.wait_for_function("() => document.querySelectorAll('#original-rows tr').length === 2")
    table = page.locator("#original-rows")
    texts = table.locator("td").all_inner_texts()
    assert sorted(t.strip() for t in texts) == sorted(HOSTILE.values())
    assert table.locator("script, img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert page.errors == []


def test_lif_image_is_one_of_three_with_links(browser: object, site: Site) -> None:
    import liffile

    with liffile.LifFile(LIF) as lif:
        names = [image.name for image in lif.images]
        setting = lif.images[1].xml_element.find(".//ATLConfocalSettingDefinition")
        assert setting is not None
        lens = " ".join(str(setting.get("ObjectiveName")).split())
        na, magnification = setting.get("NumericalAperture"), setting.get("Magnification")
        immersion = str(setting.get("Immersion"))
    ids = site.ids["lif"]
    assert len(ids) == len(names) == 3
    page = open_viewer(browser, site, ids[1])
    assert field(page, "position") == f"Image 2 of 3 in {LIF.name}"
    links = page.locator('.panel [data-field="siblings"] a')
    assert links.count() == 3
    assert [links.nth(i).get_attribute("href") for i in range(3)] == [f"/images/{i}" for i in ids]
    assert links.nth(1).get_attribute("aria-current") == "page"
    page.wait_for_function(
        "() => [...document.querySelectorAll('.siblings a')].every(a => a.title)"
    )
    for i, name in enumerate(names):
        assert name in links.nth(i).inner_text()
    assert field(page, "objective") == lens
    assert float(field(page, "na")) == float(str(na))
    assert field(page, "magnification") == f"{float(str(magnification)):g}×"
    assert field(page, "immersion").upper().startswith(immersion.upper())
    links.nth(2).click()
    page.wait_for_url(f"{site.base}/images/{ids[2]}")
    assert field(page, "position") == f"Image 3 of 3 in {LIF.name}"
    ui.shot(page, "metadata-lif")


def test_slide_label_is_shown_as_such(browser: object, site: Site) -> None:
    # NOTE: Aperio's own description ("label 387x463") names the series; Bio-Formats 6 swaps
    # the Name of the label and the macro of an SVS.
    xml = ET.parse(SLIDE / "OME" / "METADATA.ome.xml").getroot()
    described = [
        " ".join(el.itertext()) for image in xml if image.tag.endswith("}Image")
        for el in image if el.tag.endswith("}Description")
    ]  # fmt: skip
    ids = site.ids["slide"]
    assert len(ids) == 3
    label = next(i for i, text in enumerate(described) if text.strip().startswith("label "))
    page = open_viewer(browser, site, ids[label])
    assert field(page, "kind") == "label"
    assert field(page, "position") == f"Image {label + 1} of 3 in {SLIDE.name}"


def test_plate_field_shows_plate_well_and_field(browser: object, site: Site) -> None:
    # write_plate puts well B2 at row 1, column 1, with fields 0 and 1.
    wanted = next(
        i for i in site.ids["plate"] if site.img_data(i)["meta"]["series"] == "B2 field 1"
    )
    page = open_viewer(browser, site, wanted)
    assert field(page, "well") == "B2"
    assert field(page, "field") == "2"  # 1-based, as OMERO.web shows fields
    plate = page.locator('.panel dd[data-field="plate"] a')
    href = plate.get_attribute("href")
    assert href is not None and href.startswith("/webgateway/plate/")
    with urllib.request.urlopen(site.base + href) as answer:
        grid = json.load(answer)
    assert grid["grid"][1][1]["id"] == wanted
    assert page.locator('.panel dd[data-field="acquired"]').count() == 0  # absent: not shown
    ui.shot(page, "metadata-plate")
