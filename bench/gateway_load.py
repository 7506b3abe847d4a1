"""Load benchmarks of the rendering gateway through `coverslip serve`, against nginx in the same run.

    python bench/gateway_load.py [--runs 3] [--quick]

Scenarios (medians of --runs runs each):
- OMERO's published scenario, `ab -n 5000 -c 100`: render_thumbnail (cached) and render_image of
  a 512×512 3-channel uint16 plane with the window varied per request so the cache cannot answer;
  nginx serving the same thumbnail bytes as a static file is the reference.
- `wrk -c 100` (keep-alive): cached thumbnails, and random uncached 256×256 tiles of the 8192²
  mosaic through a Lua script.
- Per-stage time of one uncached render (read, render, encode).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def coverslip(home: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "coverslip"), "--home", str(home), *args], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"coverslip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def prepare(home: Path, work: Path, mosaic_size: int) -> dict[str, int]:
    """Import the benchmark images and return their ids."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    planes = []
    for z in range(20):
        base = 2000 + 1500 * np.sin((yy + 7 * z) / 40.0) * np.cos(xx / 55.0)
        planes.append(
            [
                (base * (c + 1) / 2 + rng.integers(0, 300, (512, 512))).astype(np.uint16)
                for c in range(3)
            ]
        )
    tifffile.imwrite(work / "plane.ome.tif", np.array(planes), ome=True, metadata={"axes": "ZCYX"})
    coverslip(home, "user", "ensure-admin")  # also makes the public group the images go into
    ids = {}
    ids["plane"] = int(
        re.findall(
            r"\d+",
            coverslip(home, "import", str(work / "plane.ome.tif"), "--group", "Public", "--json"),
        )[0]
    )
    from coverslip.demo import write_mosaic

    write_mosaic(work / "mosaic.tif", mosaic_size, seed=0)
    ids["mosaic"] = int(
        re.findall(
            r"\d+",
            coverslip(home, "import", str(work / "mosaic.tif"), "--group", "Public", "--json"),
        )[0]
    )
    return ids


@contextmanager
def server(home: Path, port: int, **settings: str) -> Iterator[str]:
    """Run `coverslip serve` with the default settings (and ``settings`` as environment) on ``port``."""
    env = {**os.environ, "COVERSLIP_HOME": str(home), **settings}
    proc = subprocess.Popen(
        [str(BIN / "coverslip"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def nginx_static(root: Path, port: int) -> Iterator[str]:
    """Serve ``root`` with Debian's nginx, tuned like a production static server."""
    conf = root.parent / "nginx.conf"
    conf.write_text(
        f"""worker_processes auto;
pid {root.parent}/nginx.pid;
error_log {root.parent}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path {root.parent}/tmp;
  proxy_temp_path {root.parent}/tmp;
  fastcgi_temp_path {root.parent}/tmp;
  uwsgi_temp_path {root.parent}/tmp;
  scgi_temp_path {root.parent}/tmp;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
    )
    (root.parent / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/thumb.jpg")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ab(url: str, requests: int = 5000, concurrency: int = 100) -> dict[str, float]:
    done = subprocess.run(
        ["ab", "-q", "-n", str(requests), "-c", str(concurrency), url],
        capture_output=True,
        text=True,
    )
    text = done.stdout
    rate = re.search(r"Requests per second:\s+([\d.]+)", text)
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", text)
    p50 = re.search(r"^\s+50%\s+(\d+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\d+)", text, re.M)
    if not rate:
        raise SystemExit(f"ab failed against {url}:\n{text}\n{done.stderr}")
    return {
        "rate": float(rate.group(1)),
        "failed": float(failed.group(1) if failed else 0) + float(non2xx.group(1) if non2xx else 0),
        "p50": float(p50.group(1)) if p50 else float("nan"),
        "p99": float(p99.group(1)) if p99 else float("nan"),
    }


def wrk(
    url: str, script: Path | None = None, seconds: int = 10, connections: int = 100
) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True)
    text = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", text, re.M)
        if not found:
            return float("nan")
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]

    if not rate:
        raise SystemExit(f"wrk failed against {url}:\n{text}\n{done.stderr}")
    failed = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        failed += sum(float(x) for x in socket_errors.groups())
    return {"rate": float(rate.group(1)), "failed": failed, "p50": ms("50"), "p99": ms("99")}


def median_of(runs: int, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [measure() for _ in range(runs)]
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


PLANE_SCRIPT = """
local n = START
request = function()
  n = n + 1
  local path = "/webgateway/render_image/IID/" .. (n % 20) .. "/0/?c=1|0:" .. (30000 + n)
    .. "$FF0000,2|0:5000$00FF00,3|0:9000$0000FF"
  return wrk.format("GET", path)
end
"""

TILE_SCRIPT = """
math.randomseed(%(seed)d)
local n = 0
request = function()
  n = n + 1
  local level = 0
  local x = math.random(0, %(tiles)d - 1)
  local y = math.random(0, %(tiles)d - 1)
  -- the server runs with its render cache off, so every tile is read, rendered and encoded
  local path = "/webgateway/render_image_region/%(iid)d/0/0/?tile=" .. level .. "," .. x .. "," .. y
    .. "&format=jpeg"
  return wrk.format("GET", path)
end
"""


def stage_times(home: Path, image_id: int, repeats: int = 50) -> dict[str, float]:
    """Return median milliseconds of read, render and encode of one uncached 512² 3-channel plane."""
    from coverslip.home import Home
    from coverslip.render.encode import encode
    from coverslip.render.kernel import render
    from coverslip.render.settings import default_def
    from coverslip.services import Services

    instance = Home(home)
    services = Services.build(instance.settings({}), instance)
    image = services.catalog.get_image(image_id)
    pyramid = services.pixels.open(image)
    rdef = default_def(image.channels, image.pixel_type, image.size_z, image.size_t)
    reads, renders, encodes = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        data = pyramid.read_planes(
            0, [(0, c, i % image.size_z) for c in range(3)], slice(0, 512), slice(0, 512)
        )
        read = time.perf_counter()
        rgb = render(list(data), rdef, image.pixel_type)
        rendered = time.perf_counter()
        encode(rgb, "jpeg", 0.9)
        encoded = time.perf_counter()
        reads.append(read - start)
        renders.append(rendered - read)
        encodes.append(encoded - rendered)
    return {
        name: statistics.median(values) * 1000
        for name, values in (("read", reads), ("render", renders), ("encode", encodes))
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="shorter wrk runs and a smaller mosaic"
    )
    args = parser.parse_args()
    for tool in ("ab", "wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(
                f"{tool} is missing: `make bench` installs apache2-utils, wrk and nginx"
            )
    work = Path(tempfile.mkdtemp(prefix="coverslip-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user and must read static/
    home = work / "home"
    seconds = 5 if args.quick else 10
    try:
        ids = prepare(home, work, 4096 if args.quick else 8192)
        rows: list[tuple[str, str, dict[str, float], float | None]] = []
        with server(home, free_port()) as base:
            thumb_url = f"{base}/webgateway/render_thumbnail/{ids['plane']}/"
            with urllib.request.urlopen(thumb_url) as answer:
                thumb = answer.read()
            static = work / "static"
            static.mkdir()
            (static / "thumb.jpg").write_bytes(thumb)
            with nginx_static(static, free_port()) as nginx:
                ref_ab = median_of(args.runs, lambda: ab(nginx + "/thumb.jpg"))
                ref_wrk = median_of(args.runs, lambda: wrk(nginx + "/thumb.jpg", seconds=seconds))
            rows.append(("nginx static thumbnail", "ab -n 5000 -c 100", ref_ab, None))
            thumbs_ab = median_of(args.runs, lambda: ab(thumb_url))
            rows.append(
                (
                    "render_thumbnail (cached)",
                    "ab -n 5000 -c 100",
                    thumbs_ab,
                    thumbs_ab["rate"] / ref_ab["rate"],
                )
            )
            counter = iter(range(10**9))

            def uncached_plane() -> dict[str, float]:
                # A different Z and window end per request: the cache never answers.
                script = work / "plane.lua"
                script.write_text(
                    PLANE_SCRIPT.replace("START", str(next(counter) * 100000)).replace(
                        "IID", str(ids["plane"])
                    )
                )
                return wrk(base + "/", script, seconds=seconds)

            mosaic_tiles = (4096 if args.quick else 8192) // 256

            def tiles(base: str) -> dict[str, float]:
                script = work / "tiles.lua"
                script.write_text(
                    TILE_SCRIPT
                    % {"seed": next(counter), "tiles": mosaic_tiles, "iid": ids["mosaic"]}
                )
                return wrk(base + "/", script, seconds=seconds)

            with server(home, free_port(), COVERSLIP_CACHE_ENABLED="false") as uncached:
                plane_url = f"{uncached}/webgateway/render_image/{ids['plane']}/3/0/"
                plane_ab = median_of(args.runs, lambda: ab(plane_url))
                tile = median_of(args.runs, lambda: tiles(uncached))
            rows.append(
                (
                    "render_image 512² 3×uint16, cache off",
                    "ab -n 5000 -c 100",
                    plane_ab,
                    plane_ab["rate"] / ref_ab["rate"],
                )
            )
            rows.append(("nginx static thumbnail", f"wrk -c 100 -d {seconds}s", ref_wrk, None))
            cached = median_of(args.runs, lambda: wrk(thumb_url, seconds=seconds))
            rows.append(
                (
                    "render_thumbnail (cached)",
                    f"wrk -c 100 -d {seconds}s",
                    cached,
                    cached["rate"] / ref_wrk["rate"],
                )
            )
            plane = median_of(args.runs, uncached_plane)
            rows.append(
                (
                    "render_image 512² 3×uint16, new Z and window each request",
                    f"wrk -c 100 -d {seconds}s",
                    plane,
                    plane["rate"] / ref_wrk["rate"],
                )
            )
            rows.append(
                (
                    "random 256² tiles of the mosaic, cache off",
                    f"wrk -c 100 -d {seconds}s",
                    tile,
                    tile["rate"] / ref_wrk["rate"],
                )
            )
        print()
        print(
            f"| request | load | req/s | p50 ms | p99 ms | failed | ratio to nginx static |  (median of {args.runs})"
        )
        print("|---|---|---|---|---|---|---|")
        for name, load, figures, ratio in rows:
            print(
                f"| {name} | `{load}` | {figures['rate']:,.0f} | {figures['p50']:.1f} | {figures['p99']:.1f} "
                f"| {figures['failed']:.0f} | {'reference' if ratio is None else f'{ratio:.0%}'} |"
            )
        stages = stage_times(home, ids["plane"])
        print()
        print("| stage of one uncached 512² 3×uint16 render | median ms |")
        print("|---|---|")
        for name, value in stages.items():
            print(f"| {name} | {value:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
