"""The web UI in Debian's headless Chromium, driven by Playwright, against a real server.

Screenshots of the run are kept in test-artifacts/ui/ (ignored by git).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage

from coverslip.deploy import process
from tests.servers import free_port, wait_for_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def coverslip(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "coverslip.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Site:
    def __init__(
        self, base: str, password: str, public_id: int, private_id: int, dataset_id: int
    ) -> None:
        self.base = base
        self.password = password
        self.public_id = public_id
        self.private_id = private_id
        self.dataset_id = dataset_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A real `coverslip serve` with a public 2-channel z-stack and a private image."""
    folder = tmp_path_factory.mktemp("ui")
    home = folder / "home"
    password = [
        line for line in coverslip(home, "user", "ensure-admin").splitlines() if "password" in line
    ]
    secret = password[0].rsplit(" ", 1)[-1]
    yy, xx = np.mgrid[0:600, 0:800]
    stack = np.stack(
        [
            np.stack(
                [
                    (1000 + 900 * np.sin(xx / (30 + 5 * z)) * np.cos(yy / 40)).astype(np.uint16),
                    (500 + 400 * np.cos(xx / 50) * np.sin(yy / (20 + 3 * z))).astype(np.uint16),
                ]
            )
            for z in range(3)
        ]
    )
    tifffile.imwrite(
        folder / "cells.ome.tif",
        stack,
        ome=True,
        metadata={"axes": "ZCYX", "Channel": {"Name": ["DAPI", "GFP"]}},
    )
    public = json.loads(
        coverslip(
            home,
            "import",
            str(folder / "cells.ome.tif"),
            "--group",
            "Public",
            "--dataset",
            "Screen",
            "--json",
        )
    )["imported"][0]
    np.save(folder / "secret.npy", (xx % 255).astype(np.uint8))
    private = json.loads(coverslip(home, "import", str(folder / "secret.npy"), "--json"))[
        "imported"
    ][0]
    dataset_id = json.loads(coverslip(home, "datasets", "list", "--json"))[0]["id"]
    with served(home) as url:
        yield Site(url, secret, public, private, dataset_id)


@contextlib.contextmanager
def served(home: Path) -> Iterator[str]:
    """Run `coverslip serve` for ``home`` on a free port; yield its base URL, then stop it."""
    port = free_port()
    # The embedded default: the queue in a SQLite file, and `serve` runs a worker beside it.
    env = {
        **os.environ,
        "COVERSLIP_HOME": str(home),
        "COVERSLIP_WEB_WORKERS": "2",
        "COVERSLIP_JOBS_BACKEND": "sqlite",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "coverslip.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 60)
        worker = int((home / "run" / "worker.pid").read_text())
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    # Stopping `serve` stops its worker too.
    deadline = time.monotonic() + 10
    while process.alive(worker):
        assert time.monotonic() < deadline, "the job worker outlived `coverslip serve`"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is missing: apt-get install -y chromium (`make test` does)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


def new_page(browser: object, width: int = 1280, height: int = 800):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    return context.new_page()


def shot(page, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    data = page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def sign_in(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    log_in(page, site.base, "admin", site.password)


def log_in(page, base: str, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")


def signed_in_page(browser: object, base: str, username: str, password: str, width: int = 1366, height: int = 768):  # type: ignore[no-untyped-def]  # fmt: skip
    """Return a new page of a new context at ``width`` × ``height``, signed in."""
    page = new_page(browser, width, height)
    log_in(page, base, username, password)
    return page


def grid_ids(page) -> list[int]:  # type: ignore[no-untyped-def]
    """Return the image ids of a dataset page's grid, in its order."""
    return [
        int(i) for i in page.eval_on_selector_all("#grid .tile", "t => t.map(e => e.dataset.id)")
    ]


def cards(page, within: str = "main") -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Return each card's title and its count line, of the cards inside ``within``."""
    return dict(
        page.evaluate(
            "(within) => [...document.querySelectorAll(`${within} .card`)].map(c => "
            "[c.querySelector('.card-title').textContent.trim(),"
            " c.querySelector('.card-meta').textContent.trim()])",
            within,
        )
    )


def wait_for_tiles(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => { const v = document.querySelector('.openseadragon-canvas canvas');"
        " return v && window.performance.getEntriesByType('resource')"
        ".some(e => e.name.includes('render_image_region')); }",
        timeout=20000,
    )
    page.wait_for_load_state("networkidle")
    time.sleep(0.5)


def test_anonymous_browses_public_data(browser: object, site: Site) -> None:
    page = new_page(browser)
    page.goto(site.base + "/")
    page.get_by_role("link", name="Screen").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)"
    )
    assert page.locator("#grid img").count() == 1
    shot(page, "dataset-anonymous")
    page.goto(f"{site.base}/images/{site.public_id}")
    wait_for_tiles(page)
    assert page.locator("#save").count() == 0  # read-only controls for anonymous visitors
    answer = page.goto(f"{site.base}/images/{site.private_id}")
    assert answer is not None and answer.status == 404
    assert "Not found" in page.content()
    shot(page, "private-404")


def test_viewer_window_change_save_and_reload(browser: object, site: Site) -> None:
    page = new_page(browser)
    sign_in(page, site)
    page.goto(f"{site.base}/images/{site.public_id}")
    wait_for_tiles(page)
    before = shot(page, "viewer-before")
    end = page.get_by_label("Window end of channel DAPI")
    end.evaluate(
        "(el) => { el.value = String(Number(el.min) + (Number(el.max) - Number(el.min)) * 0.2);"
        " el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    wanted = float(end.input_value())
    time.sleep(0.3)
    wait_for_tiles(page)
    page.wait_for_timeout(1500)
    after = shot(page, "viewer-after")
    viewer = page.locator("#osd").bounding_box()
    assert viewer is not None
    box = (
        slice(int(viewer["y"]), int(viewer["y"] + viewer["height"])),
        slice(int(viewer["x"]), int(viewer["x"] + viewer["width"])),
    )
    changed = np.abs(after[box] - before[box]).mean()
    assert changed > 5, f"the picture hardly changed ({changed:.1f})"
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_function("() => document.getElementById('status').textContent === 'Saved.'")
    page.goto(f"{site.base}/images/{site.public_id}")
    page.wait_for_function("() => document.querySelector('#channels input.end')")
    kept = float(page.get_by_label("Window end of channel DAPI").input_value())
    assert abs(kept - wanted) <= 1


def test_upload_becomes_active(browser: object, site: Site, tmp_path: Path) -> None:
    page = new_page(browser)
    sign_in(page, site)
    picture = tmp_path / "upload.png"
    PILImage.fromarray((np.indices((120, 160)).sum(axis=0) % 256).astype(np.uint8)).save(picture)
    page.goto(site.base + "/upload")
    page.set_input_files("#files", str(picture))
    page.wait_for_selector("#uploads a:has-text('active')", timeout=30000)
    shot(page, "upload-done")
    with urllib.request.urlopen(site.base + "/healthz") as answer:
        assert answer.status == 200


def test_phone_width(browser: object, site: Site) -> None:
    page = new_page(browser, 390, 844)
    page.goto(f"{site.base}/images/{site.public_id}")
    wait_for_tiles(page)
    panel = page.locator(".panel").bounding_box()
    assert panel is not None and panel["width"] <= 390
    # The image and its Z slider fit the screen; the settings follow below them.
    slider = page.get_by_label("Z plane").bounding_box()
    assert slider is not None and slider["y"] + slider["height"] <= 844, slider
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shot(page, "viewer-phone")
    for path in ("/", f"/datasets/{site.dataset_id}", "/upload"):
        page.goto(site.base + path)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path


def test_openseadragon_reads_iiif(browser: object, site: Site) -> None:
    page = new_page(browser)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(f"{site.base}/images/{site.public_id}?iiif=1")
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('/default.jpg'))",
        timeout=20000,
    )
    page.wait_for_load_state("networkidle")
    assert any(url.endswith(f"/iiif/3/{site.public_id}/info.json") for url in requests)
    assert any("/iiif/3/" in url and url.endswith("/default.jpg") for url in requests)
    shot(page, "viewer-iiif")
