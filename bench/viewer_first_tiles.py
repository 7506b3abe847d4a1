"""How soon the viewer shows an image: Coverslip's viewer page against OpenSeadragon on IIPImage.

    python bench/viewer_first_tiles.py [--runs 5] [--size 8192]

Debian's headless Chromium (driven by Playwright) opens a page at 1366 × 768 in a fresh
browser context, so nothing is cached in the browser, and the page's resource timings say
when the first tile arrived and when the last tile of the first view did (the network then
quiet for half a second). The reference is a page of nothing but the same OpenSeadragon
build showing the same slide from IIPImage's IIIF (tile cache off, behind nginx, as in
tiles_peer.py), with the viewer's options (a navigator, the canvas drawer; once more with
OpenSeadragon's default WebGL drawer, which headless Chromium runs in software); Coverslip's
viewer page (`/images/{id}`, with its settings, histograms and
metadata requests) shows it from `coverslip serve` with the render cache off. The demo
images (`coverslip demo`, as `make serve` has them) are opened with the default settings,
render cache on; the issue's goal for them is the first tiles within 1 s. Times are from the
start of navigation; figures are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from gateway_load import coverslip, free_port, server
from synthetic import fields, slide_rgb, write_jpeg_pyramid
from tiles_peer import IIP_QUALITY, IIPSRV, iipimage, imported

HERE = Path(__file__).resolve().parent
OSD = HERE.parent / "src" / "coverslip" / "web" / "static" / "vendor" / "openseadragon"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
# The same resource timings for either page: tiles are the requests that match.
TIMINGS = """(match) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const tiles = performance.getEntriesByType('resource').filter(
    (e) => e.name.includes(match) && !e.name.includes('info.json'));
  return {
    page: nav.domContentLoadedEventEnd,
    first: Math.min(...tiles.map((e) => e.responseEnd)),
    last: Math.max(...tiles.map((e) => e.responseEnd)),
    tiles: tiles.length,
  };
}"""
TILE_ASKED = """(match) => performance.getEntriesByType('resource').some(
  (e) => e.name.includes(match) && !e.name.includes('info.json'))"""
PEER_PAGE = """<!doctype html>
<meta charset="utf-8"><title>OpenSeadragon on IIPImage</title>
<style>html, body, #view {{ margin: 0; width: 100%; height: 100%; background: #000; }}</style>
<div id="view"></div>
<script src="openseadragon.min.js"></script>
<script>
OpenSeadragon({{ id: "view", prefixUrl: "images/", tileSources: "/iipsrv?IIIF={name}/info.json",
                 showNavigator: true, maxZoomPixelRatio: 4, drawer: "{drawer}" }});
</script>
"""


def open_page(browser: object, url: str, match: str) -> dict[str, float]:
    """Open ``url`` in a new context and return its timings once the network is quiet."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=60000)
        # Quiet network alone is not enough: the viewer may think for a while before its tiles.
        page.wait_for_function(TILE_ASKED, arg=match, timeout=60000)
        page.wait_for_load_state("networkidle", timeout=60000)
        timings: dict[str, float] = page.evaluate(TIMINGS, match)
    finally:
        context.close()
    return timings


def row(name: str, results: list[dict[str, float]], ratio: str) -> str:
    med = {key: statistics.median(r[key] for r in results) for key in results[0]}
    return (
        f"| {name} | {med['page']:.0f} | {med['first']:.0f} | {med['last']:.0f} "
        f"| {med['tiles']:.0f} | {ratio} |"
    )


def first_tile_ratio(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> str:
    """Return the median over runs of our first tile's time over the reference's."""
    pairs = zip(ours, theirs, strict=True)
    return f"{statistics.median(a['first'] / b['first'] for a, b in pairs):.2f}×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=8192)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    for needed in ("nginx", str(IIPSRV), CHROMIUM):
        if not shutil.which(needed):
            raise SystemExit(
                f"{needed} is missing: `make bench` installs nginx and iipimage-server"
            )
    if not (OSD / "openseadragon.min.js").exists():
        raise SystemExit("OpenSeadragon is missing: `make assets` fetches it")
    work = Path(tempfile.mkdtemp(prefix="coverslip-viewer-bench-"))
    work.chmod(0o755)  # nginx workers and IIPImage run unprivileged and read the slide here
    home = work / "home"
    try:
        write_jpeg_pyramid(
            work / "slide-0.tif", slide_rgb(fields(args.size, seed=0), seed=0), quality=IIP_QUALITY
        )
        coverslip(home, "user", "ensure-admin")
        slide = imported(home, work / "slide-0.tif")
        coverslip(home, "demo")
        demo = [
            (image["id"], image["name"])
            for image in json.loads(coverslip(home, "images", "list", "--json"))
            if image["id"] != slide
        ]
        page_dir = work / "peer"
        shutil.copytree(OSD, page_dir)
        for drawer in ("canvas", "webgl"):
            page = PEER_PAGE.format(name="slide-0.tif", drawer=drawer)
            (page_dir / f"{drawer}.html").write_text(page)
        peer_site = f"location /peer/ {{ alias {page_dir}/; }}"
        off = {"COVERSLIP_CACHE_ENABLED": "false", "COVERSLIP_WEB_ENV": "production"}
        iip_tile = "/iipsrv?IIIF="
        tile = "render_image_region"
        # (name, server, path, tile URLs, what the ratio column says)
        pages = [
            (
                "IIPImage 1.1 + OpenSeadragon (canvas drawer), slide",
                0,
                "/peer/canvas.html",
                iip_tile,
            ),
            ("IIPImage 1.1 + OpenSeadragon (WebGL drawer), slide", 0, "/peer/webgl.html", iip_tile),
            ("Coverslip viewer, slide, cache off", 1, f"/images/{slide}", tile),
            *((f"Coverslip viewer, demo {name!r}", 2, f"/images/{i}", tile) for i, name in demo),
        ]
        with (
            sync_playwright() as playwright,
            iipimage(work, locations=peer_site) as iip,
            server(home, free_port(), **off) as uncached,
            server(home, free_port(), COVERSLIP_WEB_ENV="production") as cached,
        ):
            bases = (iip, uncached, cached)
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            for _, where, path, match in pages:  # warm the servers and the page cache
                open_page(browser, bases[where] + path, match)
            results: list[list[dict[str, float]]] = [[] for _ in pages]
            for index in range(args.runs):
                for slot, (name, where, path, match) in enumerate(pages):
                    results[slot].append(open_page(browser, bases[where] + path, match))
                    first = results[slot][-1]["first"]
                    print(f"run {index + 1}: {name}: {first:.0f} ms", flush=True)
            browser.close()
        print()
        print(
            "| page | DOM ready ms | first tile ms | first view complete ms | tiles "
            f"| first tile, time ratio to IIPImage (canvas) |  (median of {args.runs})"
        )
        print("|---|---:|---:|---:|---:|---|")
        for slot, (name, *_) in enumerate(pages):
            if slot == 0:
                ratio = "reference"
            elif slot < 3:
                ratio = first_tile_ratio(results[slot], results[0])
            else:
                ratio = "— (goal: first tile within 1 s)"
            print(row(name, results[slot], ratio))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
