"""Random uncached 256² tiles: Coverslip against IIPImage on the same slide, in the same run.

    python bench/tiles_peer.py [--runs 3] [--copies 3] [--size 8192]
    python bench/tiles_peer.py --profile 600     # cProfile of uncached IIIF tiles in-process

A seeded H&E-like 8-bit RGB slide (see synthetic.py) is written as a tiled (256) JPEG
pyramid TIFF at quality 75, one page per level, and --copies hard links of it are served by
IIPImage and imported into Coverslip. IIPImage (Debian's iipimage-server) runs as two
FastCGI processes sharing one listening socket behind nginx, with its tile cache off
(MAX_IMAGE_CACHE_SIZE=0, no memcached) and its default JPEG quality 75: it decodes each
tile and encodes it again. Coverslip runs under Granian with its defaults and
`cache.enabled = false`: `coverslip serve` on its own, which sends the file's own tiles as
stored (`render.source_tiles`), and `coverslip web start` behind the nginx site that
`coverslip config nginx` writes; and `coverslip serve` once more rendering and encoding every
tile as IIPImage does, at quality 75 and 4:2:0 chroma (`render.source_tiles = false`).

Every tile of every level of every copy is asked exactly once per run, in a shuffled order
that is the same for every server of the run (unique_urls.lua), by `wrk -t2 -c50`. The same
walk asks the 16-bit 3-channel mosaic's tiles through webgateway `tile=`. Ratios are to
IIPImage in the same run; figures are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from deploy_load import nginx_conf, run
from gateway_load import coverslip, free_port, server, wait_http
from synthetic import fields, mosaic16, slide_rgb, write_jpeg_pyramid, write_mosaic

HERE = Path(__file__).resolve().parent
IIPSRV = Path("/usr/lib/iipimage-server/iipsrv.fcgi")
WALK = HERE / "unique_urls.lua"
THREADS = 2
# IIPImage encodes at its default quality 75 with libjpeg's 4:2:0 chroma; Coverslip's IIIF by
# default at 90 with 4:4:4 (iiif.jpeg_quality, iiif.jpeg_chroma), and in one more row as IIPImage.
IIP_QUALITY = 75
TILE = 256


def imported(home: Path, path: Path) -> int:
    """Import ``path`` into the Public group (again, if it was) and return the new image id."""
    output = coverslip(
        home, "import", str(path), "--group", "Public", "--allow-duplicate", "--json"
    )
    return int(json.loads(output.strip().splitlines()[-1])["imported"][0])


@contextmanager
def nginx(folder: Path, site: str, probe: str) -> Iterator[None]:
    """Run Debian's nginx with ``site`` until the block ends."""
    conf = nginx_conf(folder, site)
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(folder), "-g", "daemon off;"], start_new_session=True
    )
    try:
        wait_http(probe)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def iipimage(root: Path, processes: int = 2, locations: str = "") -> Iterator[str]:
    """Serve the TIFFs in ``root`` with IIPImage, ``processes`` FastCGI processes behind nginx
    (with ``locations``, more nginx location blocks, on the same server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FILESYSTEM_PREFIX": f"{root}/",
        "MAX_IMAGE_CACHE_SIZE": "0",
        # NOTE: an empty list turns memcached off; unset, IIPImage asks localhost for every tile.
        "MEMCACHED_SERVERS": "",
        "JPEG_QUALITY": str(IIP_QUALITY),
    }
    # The FastCGI convention (spawn-fcgi -F): the listening socket is every process's stdin,
    # so whichever process is idle takes the next connection.
    procs = [
        subprocess.Popen([str(IIPSRV)], stdin=listener.fileno(), env=env, start_new_session=True)
        for _ in range(processes)
    ]
    listener_port = listener.getsockname()[1]
    listener.close()
    port = free_port()
    site = f"""server {{
    listen 127.0.0.1:{port};
    location = /iipsrv {{
        include /etc/nginx/fastcgi_params;
        fastcgi_pass 127.0.0.1:{listener_port};
    }}
    {locations}
}}"""
    base = f"http://127.0.0.1:{port}"
    try:
        first = next(iter(sorted(root.glob("slide-*.tif")))).name
        with nginx(root / "nginx-iipimage", site, f"{base}/iipsrv?IIIF={first}/info.json"):
            yield base
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def web_behind_nginx(home: Path, work: Path, **settings: str) -> Iterator[str]:
    """Run `coverslip web start` (Granian) behind the site `coverslip config nginx` writes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")}
    env.update(COVERSLIP_HOME=str(home), COVERSLIP_WEB_PORT=str(free_port()), **settings)
    port = free_port()
    site = run(env, "config", "nginx", "--http", str(port), "--servername", "localhost")
    run(env, "web", "start")
    base = f"http://127.0.0.1:{port}"
    try:
        with nginx(work / "nginx-coverslip", site, base + "/healthz"):
            yield base
    finally:
        run(env, "web", "stop")


def levels(base: str, image_id: int) -> list[tuple[int, int]]:
    """Return (width, height) of every level, full resolution first, from info.json."""
    with urllib.request.urlopen(f"{base}/iiif/3/{image_id}/info.json") as answer:
        info = json.load(answer)
    return [(size["width"], size["height"]) for size in reversed(info["sizes"])]


def iiif_tiles(prefix: str, sizes: list[tuple[int, int]]) -> list[str]:
    """Return the IIIF URL of every 256² tile of every level, as a tiled viewer asks them."""
    width, height = sizes[0]
    urls = []
    for level_w, level_h in sizes:
        scale = round(width / level_w)
        step = TILE * scale
        for ty in range(math.ceil(level_h / TILE)):
            for tx in range(math.ceil(level_w / TILE)):
                x, y = tx * step, ty * step
                w, h = min(step, width - x), min(step, height - y)
                out = max(1, math.ceil(w / scale))
                urls.append(f"{prefix}/{x},{y},{w},{h}/{out},/0/default.jpg")
    return urls


def gateway_levels(base: str, image_id: int) -> int:
    """Return how many levels webgateway `tile=` offers (imgData's ``levels``, as viewers read it)."""
    with urllib.request.urlopen(f"{base}/webgateway/imgData/{image_id}/") as answer:
        return int(json.load(answer).get("levels", 1))


def gateway_tiles(image_id: int, sizes: list[tuple[int, int]]) -> list[str]:
    """Return the webgateway `tile=` URL of every 256² tile of every level in ``sizes``."""
    return [
        f"/webgateway/render_image_region/{image_id}/0/0/?tile={level},{tx},{ty}&format=jpeg"
        for level, (level_w, level_h) in enumerate(sizes)
        for ty in range(math.ceil(level_h / TILE))
        for tx in range(math.ceil(level_w / TILE))
    ]


def warmup(prefixes: list[str], width: int, count: int = 400) -> list[str]:
    """Return ``count`` 256² requests halfway between grid tiles: they open every image in every
    worker and fill the page cache without asking any tile that a run asks."""
    rng = np.random.default_rng(99)
    spots = rng.integers(0, width // TILE - 1, (count, 2)) * TILE + TILE // 2
    urls = []
    for n, (x, y) in enumerate(spots):
        prefix = prefixes[n % len(prefixes)]
        if "/webgateway/" in prefix:
            urls.append(f"{prefix}region={x},{y},{TILE},{TILE}&format=jpeg")
        else:
            urls.append(f"{prefix}/{x},{y},{TILE},{TILE}/{TILE},/0/default.jpg")
    return urls


def walk(base: str, paths: list[str], work: Path, connections: int = 50) -> dict[str, float]:
    """Ask every path once with wrk; return rate, p50, p99 (ms), failed and count."""
    folder = Path(tempfile.mkdtemp(dir=work, prefix="walk-"))
    (folder / "urls.txt").write_text("\n".join(paths) + "\n")
    limit = 600
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{limit}s", "--latency"]
    command += ["-s", str(WALK), base, "--", str(folder / "urls.txt"), str(THREADS)]
    command += [str(connections // THREADS), str(folder)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + limit - 5
    while (
        proc.poll() is None
        and len(list(folder.glob("done-*"))) < THREADS
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)
    found = re.search(r"unique: (\d+) responses, (\d+) not 200, ([\d.]+) s", out)
    if not found:
        raise SystemExit(f"wrk failed against {base}:\n{out}\n{err}")
    count, bad, seconds = int(found.group(1)), int(found.group(2)), float(found.group(3))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = bad + (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)

    def ms(label: str) -> float:
        hit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not hit:
            return float("nan")
        return float(hit.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[hit.group(2)]

    return {
        "rate": count / seconds,
        "p50": ms("50"),
        "p99": ms("99"),
        "failed": float(failed),
        "count": float(count),
    }


def prepare(work: Path, home: Path, size: int, copies: int) -> tuple[list[int], list[int]]:
    """Write the slide and the mosaic, link ``copies`` of each, import them; return the ids."""
    started = time.monotonic()
    section = fields(size, seed=0)
    write_jpeg_pyramid(work / "slide.tif", slide_rgb(section, seed=0), quality=IIP_QUALITY)
    write_mosaic(work / "mosaic.ome.tif", mosaic16(section, seed=0))
    del section
    print(f"images written in {time.monotonic() - started:.0f} s", flush=True)
    coverslip(home, "user", "ensure-admin")
    slides, mosaics = [], []
    for k in range(copies):
        # Hard links: IIPImage and Coverslip see separate images, the page cache one file.
        os.link(work / "slide.tif", work / f"slide-{k}.tif")
        os.link(work / "mosaic.ome.tif", work / f"mosaic-{k}.ome.tif")
        slides.append(imported(home, work / f"slide-{k}.tif"))
        mosaics.append(imported(home, work / f"mosaic-{k}.ome.tif"))
    print(f"prepared in {time.monotonic() - started:.0f} s", flush=True)
    return slides, mosaics


def table(
    rows: list[tuple[str, str, list[dict[str, float]], list[float] | None]], runs: int
) -> None:
    print()
    print(
        "| server and request | load | tiles per run | tiles/s | p50 ms | p99 ms | failed "
        f"| ratio to IIPImage |  (median of {runs})"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, load, results, ratios in rows:
        med = {key: statistics.median(r[key] for r in results) for key in results[0]}
        ratio = "reference" if ratios is None else f"{statistics.median(ratios):.2f}×"
        print(
            f"| {name} | `{load}` | {med['count']:,.0f} | {med['rate']:,.0f} | {med['p50']:.1f} "
            f"| {med['p99']:.1f} | {med['failed']:.0f} | {ratio} |"
        )


def measure(args: argparse.Namespace) -> None:
    for tool in ("wrk", "nginx", str(IIPSRV)):
        if not shutil.which(tool):
            raise SystemExit(
                f"{tool} is missing: `make bench` installs wrk, nginx, iipimage-server"
            )
    work = Path(tempfile.mkdtemp(prefix="coverslip-peer-bench-"))
    work.chmod(0o755)  # nginx workers and IIPImage run unprivileged and read the slides here
    home = work / "home"
    off = {"COVERSLIP_CACHE_ENABLED": "false", "COVERSLIP_WEB_ENV": "production"}
    # Every tile encoded again, as IIPImage does: the file's own tiles not sent as stored.
    like_iip = {
        "COVERSLIP_IIIF_JPEG_QUALITY": str(IIP_QUALITY),
        "COVERSLIP_IIIF_JPEG_CHROMA": "4:2:0",
        "COVERSLIP_RENDER_SOURCE_TILES": "false",
    }
    try:
        slides, mosaics = prepare(work, home, args.size, args.copies)
        with (
            iipimage(work) as iip,
            server(home, free_port(), **off) as direct,
            server(home, free_port(), **off, **like_iip) as direct_q75,
            web_behind_nginx(home, work, **off) as proxied,
        ):
            sizes = levels(direct, slides[0])
            mosaic_sizes = levels(direct, mosaics[0])[: gateway_levels(direct, mosaics[0])]
            width = sizes[0][0]
            iip_prefixes = [f"/iipsrv?IIIF=slide-{k}.tif" for k in range(args.copies)]
            cs_prefixes = [f"/iiif/3/{i}" for i in slides]
            gw_prefixes = [f"/webgateway/render_image_region/{i}/0/0/?" for i in mosaics]
            iip_urls = [u for p in iip_prefixes for u in iiif_tiles(p, sizes)]
            cs_urls = [u for p in cs_prefixes for u in iiif_tiles(p, sizes)]
            gw_urls = [u for i in mosaics for u in gateway_tiles(i, mosaic_sizes)]
            for base, prefixes in (
                (iip, iip_prefixes),
                (direct, cs_prefixes),
                (direct_q75, cs_prefixes),
                (proxied, cs_prefixes),
                (direct, gw_prefixes),
            ):
                warm = walk(base, warmup(prefixes, width), work, args.connections)
                if warm["failed"]:
                    raise SystemExit(f"{warm['failed']:.0f} warm-up requests to {base} failed")
            load = f"wrk -t{THREADS} -c{args.connections}, each tile once"
            names = (
                ("IIPImage 1.1, 2 FastCGI processes behind nginx, IIIF", iip_urls, iip),
                ("Coverslip `serve` (Granian), IIIF, the file's tiles as stored", cs_urls, direct),
                (
                    "Coverslip `serve`, IIIF encoded again at quality 75, 4:2:0 as IIPImage",
                    cs_urls,
                    direct_q75,
                ),
                ("Coverslip `web start` (Granian) behind nginx, IIIF", cs_urls, proxied),
                ("Coverslip `serve`, 3×uint16 mosaic, webgateway `tile=`", gw_urls, direct),
            )
            results: list[list[dict[str, float]]] = [[] for _ in names]
            for index in range(args.runs):
                order = np.random.default_rng(index).permutation(len(iip_urls))
                gw_order = np.random.default_rng(index).permutation(len(gw_urls))
                for slot, (name, urls, base) in enumerate(names):
                    shuffled = [urls[i] for i in (gw_order if urls is gw_urls else order)]
                    results[slot].append(walk(base, shuffled, work, args.connections))
                    print(
                        f"run {index + 1}: {name}: {results[slot][-1]['rate']:,.0f}/s", flush=True
                    )
        rows = []
        for slot, (name, _, _) in enumerate(names):
            ratios = None
            if slot:
                ratios = [
                    r["rate"] / ref["rate"]
                    for r, ref in zip(results[slot], results[0], strict=True)
                ]
            rows.append((name, load, results[slot], ratios))
        table(rows, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def profile(args: argparse.Namespace) -> None:
    """Print where in-process time goes for uncached IIIF tiles, by file:function."""
    import cProfile
    import pstats

    from falcon import testing

    from coverslip.home import Home
    from coverslip.web.app import create_app

    work = Path(tempfile.mkdtemp(prefix="coverslip-peer-profile-"))
    try:
        home = work / "home"
        coverslip(home, "user", "ensure-admin")
        write_jpeg_pyramid(work / "slide.tif", slide_rgb(fields(args.size, seed=0)), quality=90)
        image_id = imported(home, work / "slide.tif")
        instance = Home(home)
        # The rendering path: tiles the file stores would otherwise be sent as stored.
        settings = {"cache.enabled": False, "render.source_tiles": False}
        app = create_app(instance.settings({}, settings), instance)
        client = testing.TestClient(app)
        info = client.simulate_get(f"/iiif/3/{image_id}/info.json").json
        sizes = [(s["width"], s["height"]) for s in reversed(info["sizes"])]
        urls = iiif_tiles(f"/iiif/3/{image_id}", sizes)
        order = np.random.default_rng(0).permutation(len(urls))
        paths = [urls[i] for i in order][: args.profile]
        environs = [testing.create_environ(path=p) for p in paths]

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            if not status.startswith("200"):
                raise SystemExit(f"{status} from the tile request")

        def loop() -> None:
            for environ in environs:
                b"".join(app(environ, start_response))

        loop()  # NOTE: first pass warms imports, opens and the page cache; it is not profiled
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.runcall(loop)
        elapsed = time.perf_counter() - started
        stats = pstats.Stats(profiler)
        total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
        by_place: dict[str, float] = {}
        for (file, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
            place = f"{short(file)}:{func}"
            by_place[place] = by_place.get(place, 0.0) + row[2]
        print(
            f"\n{len(environs)} uncached IIIF 256² tiles in-process: "
            f"{elapsed / len(environs) * 1e6:,.0f} µs per request under cProfile\n"
        )
        print("| file:function (own time) | share |")
        print("|---|---:|")
        for place, seconds in sorted(by_place.items(), key=lambda kv: -kv[1])[:10]:
            print(f"| {place} | {seconds / total:.1%} |")
        inclusive = {
            f"{short(file)}:{func}": row[3]
            for (file, _line, func), row in stats.stats.items()  # type: ignore[attr-defined]
            if "coverslip/" in file
        }
        print("\n| coverslip file:function (with what it calls) | share |")
        print("|---|---:|")
        for place, seconds in sorted(inclusive.items(), key=lambda kv: -kv[1])[:12]:
            print(f"| {place} | {seconds / total:.1%} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def short(file: str) -> str:
    """Return a file name relative to site-packages or the source tree."""
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=8192, help="side of the slide and mosaic")
    parser.add_argument("--copies", type=int, default=3, help="images per server (more tiles)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile N tile requests instead"
    )
    args = parser.parse_args()
    if args.profile:
        profile(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
