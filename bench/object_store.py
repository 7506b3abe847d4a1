"""Pixels in an S3 object store and rendered output in Redis, against local files, in one run.

    python bench/object_store.py [--runs 3] [--size 8192] [--copies 2] [--seconds 10]

Everything runs on loopback on this machine: PostgreSQL and Redis from Debian, SeaweedFS
(from PyPI) as the object store, nginx in front. The seeded H&E-like slide of
tiles_peer.py is imported --copies times into two instances:

- local: one node, the embedded catalog, pyramids and the render cache in its home;
- store: two nodes (separate homes and processes) sharing PostgreSQL (catalog), Redis
  (sessions, render cache) and the store (pixels).

Every setup runs `coverslip web start` and `thumbs start` behind the nginx site `coverslip
config nginx --node …` writes: one node with 2 workers each, or two nodes with 1 each.
The local node is the reference; it is measured once more with its render cache in Redis.
Each setup is started for its measurement and stopped after it, setups interleaved.

Uncached tiles: `cache.enabled = false`; every IIIF 256² tile of every level of every copy
is asked once per run in a shuffled order (unique_urls.lua, `wrk -t2 -c50`). Cached
thumbnails: `cache.memory_bytes = 0`, so every request reads the shared tier (the local
disk or Redis) rather than the worker's memory; `wrk -t2 -c100` on one thumbnail for
--seconds. Ratios are to the local node in the same run; figures are medians of --runs.
The store, Redis and PostgreSQL share the machine's two cores with the nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
from deploy_load import run
from gateway_load import free_port, wrk
from synthetic import fields, slide_rgb, write_jpeg_pyramid
from tiles_peer import iiif_tiles, levels, nginx, walk, warmup

from coverslip.pixels.objects import ObjectStore
from coverslip.pixels.pyramid import Pyramid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import object_server, postgres_server, redis_server  # noqa: E402

BUCKET = "coverslip-bench"
# Where the machine's CPU goes during a measurement, by process (the first match names it).
FAMILIES = (
    ("store", lambda name, cmd: "weed" in name or "/weed " in cmd),
    ("Redis", lambda name, cmd: name.startswith("redis")),
    ("PostgreSQL", lambda name, cmd: name.startswith("postgres")),
    ("nginx", lambda name, cmd: name == "nginx"),
    ("wrk", lambda name, cmd: name == "wrk"),
    ("Coverslip", lambda name, cmd: "coverslip" in cmd or "granian" in cmd),
)


def cpu_seconds() -> dict[str, float]:
    """Return the CPU seconds (user + system) used so far by each family's live processes."""
    used = dict.fromkeys((family for family, _ in FAMILIES), 0.0)
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            name, cmd = process.info["name"] or "", " ".join(process.info["cmdline"] or [])
            family = next((f for f, match in FAMILIES if match(name, cmd)), None)
            if family is not None:
                times = process.cpu_times()
                used[family] += times.user + times.system
        except psutil.Error:
            continue
    return used


class Node:
    """One instance home and the environment its commands run with."""

    def __init__(self, home: Path, **settings: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")}
        self.env.update(
            COVERSLIP_HOME=str(home),
            COVERSLIP_WEB_ENV="production",
            COVERSLIP_WEB_PORT=str(free_port()),
            COVERSLIP_THUMBS_PORT=str(free_port()),
            **settings,
        )

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.env[f'COVERSLIP_{service.upper()}_PORT']}"


@contextlib.contextmanager
def serving(nodes: list[Node], work: Path, **settings: str) -> Iterator[str]:
    """Start web and thumbs on every node with ``settings``, behind one nginx; yield its URL."""
    for node in nodes:
        node.env.update(settings)
        run(node.env, "web", "start")
        run(node.env, "thumbs", "start")
    port = free_port()
    site = run(
        nodes[0].env,
        "config", "nginx", "--http", str(port), "--servername", "localhost",
        *[arg for node in nodes for arg in ("--node", node.address("web"))],
        *[arg for node in nodes for arg in ("--thumbs-node", node.address("thumbs"))],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        with nginx(work / f"nginx-{port}", site, base + "/healthz"):
            yield base
    except BaseException:
        for node in nodes:  # what the nodes said about the requests that failed
            logs = Path(node.env["COVERSLIP_HOME"]) / "log"
            for log in sorted(logs.glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                failed = [line for line in lines if re.search(r" status=[45]|level=error", line)]
                for line in failed[-5:]:
                    print(f"{log.name}: {line[:400]}", file=sys.stderr)
        raise
    finally:
        for node in nodes:
            run(node.env, "web", "stop")
            run(node.env, "thumbs", "stop")


def imported(node: Node, path: Path) -> int:
    output = run(node.env, "import", str(path), "--group", "Public", "--allow-duplicate", "--json")
    return int(json.loads(output.strip().splitlines()[-1])["imported"][0])


Setup = tuple[list[Node], list[int], dict[str, str]]  # nodes, image ids, settings


def tile_walk(
    base: str, ids: list[int], work: Path, args: argparse.Namespace, run: int
) -> dict[str, float]:
    """Warm the workers up, then ask every tile of every copy once, shuffled as run ``run``."""
    sizes = levels(base, ids[0])
    prefixes = [f"/iiif/3/{i}" for i in ids]
    warm = walk(base, warmup(prefixes, sizes[0][0]), work, args.connections)
    if warm["failed"]:
        raise SystemExit(f"{warm['failed']:.0f} warm-up requests to {base} failed")
    urls = [u for p in prefixes for u in iiif_tiles(p, sizes)]
    order = np.random.default_rng(run).permutation(len(urls))
    return walk(base, [urls[i] for i in order], work, args.connections)


def thumbnail_load(
    base: str, ids: list[int], work: Path, args: argparse.Namespace, run: int
) -> dict[str, float]:
    """Render one thumbnail into the shared tier, then read it from there for --seconds."""
    url = f"{base}/webgateway/render_thumbnail/{ids[0]}/"
    warm = wrk(url, seconds=2)
    if warm["failed"]:
        raise SystemExit(f"{warm['failed']:.0f} thumbnail requests to {base} failed")
    found = wrk(url, seconds=args.seconds)
    found["count"] = found["rate"] * args.seconds
    return found


def measure(
    what: str,
    setups: dict[str, Setup],
    load: Callable[..., dict[str, float]],
    work: Path,
    args: argparse.Namespace,
) -> dict[str, list[dict[str, float]]]:
    """Start each setup in turn, run ``load`` on it, stop it; --runs times, interleaved."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    for index in range(args.runs):
        for name, (nodes, ids, settings) in setups.items():
            with serving(nodes, work, **settings) as base:
                before = cpu_seconds()
                found = load(base, ids, work, args, index)
                after = cpu_seconds()
            for family, seconds in after.items():
                found[f"cpu {family}"] = (seconds - before[family]) / found["count"] * 1e3
            results[name].append(found)
            print(
                f"run {index + 1}: {what}, {name}: {results[name][-1]['rate']:,.0f}/s", flush=True
            )
    return results


def in_process(
    local: Node, local_id: int, store_pid: int, objects: ObjectStore, store_id: int, runs: int
) -> dict[str, list[dict[str, float]]]:
    """Read every level-0 tile of one copy (its three channels at once) with 8 threads for
    3 s, from the local pyramid and from the store: tiles/s and CPU per tile, in-process."""
    from concurrent.futures import ThreadPoolExecutor

    home = Path(local.env["COVERSLIP_HOME"])
    pyramids = {
        "local files": Pyramid(home / "pixels" / f"{local_id}.ome.zarr"),
        "object store": Pyramid(objects.pyramid(store_id), objects),
    }
    me, store = psutil.Process(), psutil.Process(store_pid)

    def cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    results: dict[str, list[dict[str, float]]] = {name: [] for name in pyramids}
    with ThreadPoolExecutor(8) as pool:
        for _ in range(runs):
            for name, pyramid in pyramids.items():
                size_c, (height, width) = pyramid.shape[1], pyramid.shape[3:]
                grid = [(y, x) for y in range(0, height, 256) for x in range(0, width, 256)]

                def tile(
                    at: tuple[int, int], pyramid: Pyramid = pyramid, size_c: int = size_c
                ) -> None:
                    y, x = at
                    planes = [(0, c, 0) for c in range(size_c)]
                    pyramid.read_planes(0, planes, slice(y, y + 256), slice(x, x + 256))

                mine, theirs, started, count = cpu(me), cpu(store), time.perf_counter(), 0
                while time.perf_counter() - started < 3:
                    list(pool.map(tile, grid))
                    count += len(grid)
                seconds = time.perf_counter() - started
                results[name].append(
                    {
                        "rate": count / seconds,
                        "cpu Coverslip": (cpu(me) - mine) / count * 1e3,
                        "cpu store": (cpu(store) - theirs) / count * 1e3,
                    }
                )
    return results


def table(title: str, load: str, results: dict[str, list[dict[str, float]]], runs: int) -> None:
    reference = next(iter(results))
    families = [f for f, _ in FAMILIES if f"cpu {f}" in results[reference][0] and f != "wrk"]
    timed = "p50" in results[reference][0]
    print()
    print(
        f"| {title} | load | per s |{' p50 ms | p99 ms | failed |' if timed else ''} "
        f"ratio to {reference} | CPU ms per request: {' / '.join(families)} |  (median of {runs})"
    )
    print(f"|---|---|---:|{'---:|---:|---:|' if timed else ''}---|---|")
    for name, rows in results.items():
        med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        ratio = statistics.median(
            r["rate"] / ref["rate"] for r, ref in zip(rows, results[reference], strict=True)
        )
        shown = "reference" if name == reference else f"{ratio:.0%}"
        cpu = " / ".join(f"{med[f'cpu {family}']:.2f}" for family in families)
        times = f" {med['p50']:.1f} | {med['p99']:.1f} | {med['failed']:.0f} |" if timed else ""
        print(f"| {name} | `{load}` | {med['rate']:,.0f} |{times} {shown} | {cpu} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=8192, help="slide width and height")
    parser.add_argument("--copies", type=int, default=2, help="images of the slide per instance")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per thumbnail run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections for tiles")
    parts = ("in-process", "tiles", "thumbnails")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts, help="what to measure")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: `make bench` installs it")
    work = Path(tempfile.mkdtemp(prefix="coverslip-store-bench-"))
    work.chmod(0o755)  # nginx workers run unprivileged
    try:
        with (
            postgres_server(work) as database,
            redis_server(work) as redis,
            object_server(work) as store,
        ):
            store.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            started = time.monotonic()
            write_jpeg_pyramid(work / "slide.tif", slide_rgb(fields(args.size, seed=0), seed=0))
            local = Node(work / "local")
            shared = {
                **store.env,
                "COVERSLIP_DB_URL": str(database),
                "COVERSLIP_SESSIONS_BACKEND": "redis",
                "COVERSLIP_SESSIONS_REDIS_URL": str(redis),
                "COVERSLIP_CACHE_REDIS_URL": str(redis),
                "COVERSLIP_PIXELS_STORE": f"s3://{BUCKET}/bench",
                "COVERSLIP_PIXELS_S3_ENDPOINT": store.endpoint,
                "COVERSLIP_WEB_SENDFILE": "none",
            }
            a, b = Node(work / "a", **shared), Node(work / "b", **shared)
            run(local.env, "user", "ensure-admin")
            run(a.env, "user", "ensure-admin")
            local_ids = [imported(local, work / "slide.tif") for _ in range(args.copies)]
            store_ids = [imported(a, work / "slide.tif") for _ in range(args.copies)]
            print(f"prepared in {time.monotonic() - started:.0f} s", flush=True)
            two = {"COVERSLIP_WEB_WORKERS": "2", "COVERSLIP_THUMBS_WORKERS": "2"}
            one = {"COVERSLIP_WEB_WORKERS": "1", "COVERSLIP_THUMBS_WORKERS": "1"}
            uncached = {"COVERSLIP_CACHE_ENABLED": "false"}
            tier = {"COVERSLIP_CACHE_ENABLED": "true", "COVERSLIP_CACHE_MEMORY_BYTES": "0"}
            disk = {**tier, "COVERSLIP_CACHE_BACKEND": "disk"}
            in_redis = {
                **tier,
                "COVERSLIP_CACHE_BACKEND": "redis",
                "COVERSLIP_CACHE_REDIS_URL": str(redis),
            }
            tables = []
            if "in-process" in args.only:
                os.environ.update(store.env)
                objects = ObjectStore(f"s3://{BUCKET}/bench", endpoint=store.endpoint)
                assert store.process is not None
                found = in_process(
                    local, local_ids[0], store.process.pid, objects, store_ids[0], args.runs
                )
                load = "8 threads in one process, every level-0 tile, 3 channels each, 3 s"
                tables.append(("uncached tiles read in-process", load, found))
            if "tiles" in args.only:
                found = measure(
                    "tiles",
                    {
                        "local files, 1 node × 2 workers": (
                            [local],
                            local_ids,
                            {**two, **uncached},
                        ),
                        "object store, 1 node × 2 workers": ([a], store_ids, {**two, **uncached}),
                        "object store, 2 nodes × 1 worker": (
                            [a, b],
                            store_ids,
                            {**one, **uncached},
                        ),
                    },
                    tile_walk,
                    work,
                    args,
                )
                load = f"wrk -t2 -c{args.connections}, each tile once"
                tables.append(("uncached IIIF 256² tiles through nginx", load, found))
            if "thumbnails" in args.only:
                found = measure(
                    "thumbnails",
                    {
                        "local disk tier, 1 node × 2 workers": (
                            [local],
                            local_ids,
                            {**two, **disk},
                        ),
                        "Redis tier, 1 node × 2 workers": ([local], local_ids, {**two, **in_redis}),
                        "Redis tier, 2 nodes × 1 worker": ([a, b], store_ids, {**one, **in_redis}),
                    },
                    thumbnail_load,
                    work,
                    args,
                )
                load = f"wrk -t2 -c100 -d{args.seconds}s"
                tables.append(("cached render_thumbnail, memory tier off", load, found))
        for title, load, found in tables:
            table(title, load, found, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
