"""What signing in costs a cached thumbnail: session cookie and API token against anonymous.

    python bench/thumbs_signed_in.py [--runs 3] [--requests 3000] [--seconds 10]

A 512² plane in the Public group and a member of that group, signed in once for a session
cookie and given an API token. In-process: microseconds per request through the WSGI app,
each request a copy of a prebuilt environ (no HTTP, no client). Through `coverslip serve`
(Granian, the defaults, the render cache on): `wrk -t2 -c100` for --seconds. Runs
interleave anonymous, cookie and token; ratios are to anonymous in the same run, and every
figure is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gateway_load import coverslip, free_port, server, wrk

PASSWORD = "bench-password-1"


def per_request_us(app: Any, environ: dict[str, Any], requests: int) -> float:
    """Return the mean microseconds of ``requests`` calls of ``app`` with copies of ``environ``."""

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"{status} from {environ['PATH_INFO']}")

    started = time.perf_counter()
    for _ in range(requests):
        b"".join(app(dict(environ), start_response))
    return (time.perf_counter() - started) / requests * 1e6


def in_process(
    home: Path, path: str, token: str, runs: int, requests: int
) -> dict[str, list[float]]:
    from falcon import testing

    from coverslip.home import Home
    from coverslip.web.app import create_app

    instance = Home(home)
    app = create_app(instance.settings({}), instance)
    key, _who = app.services.auth.login("bench", PASSWORD, "127.0.0.1")
    environs = {
        "anonymous": testing.create_environ(path=path),
        "cookie": testing.create_environ(path=path, headers={"Cookie": f"sessionid={key}"}),
        "token": testing.create_environ(path=path, headers={"X-Auth-Token": token}),
    }
    out: dict[str, list[float]] = {name: [] for name in environs}
    for environ in environs.values():
        per_request_us(app, environ, 50)  # fills the cache and warms every code path
    for _ in range(runs):
        for name, environ in environs.items():
            out[name].append(per_request_us(app, environ, requests))
    return out


def through_server(
    home: Path, work: Path, path: str, token: str, runs: int, seconds: int
) -> dict[str, list[dict[str, float]]]:
    from coverslip.home import Home
    from coverslip.web.app import create_app

    instance = Home(home)
    key, _who = create_app(instance.settings({}), instance).services.auth.login(
        "bench", PASSWORD, "127.0.0.1"
    )
    scripts: dict[str, Path | None] = {"anonymous": None}
    for name, header in (
        ("cookie", f"Cookie: sessionid={key}"),
        ("token", f"X-Auth-Token: {token}"),
    ):
        field, _, value = header.partition(": ")
        script = work / f"{name}.lua"
        script.write_text(f'wrk.headers["{field}"] = "{value}"\n')
        scripts[name] = script
    out: dict[str, list[dict[str, float]]] = {name: [] for name in scripts}
    with server(home, free_port(), COVERSLIP_WEB_ENV="production") as base:
        for script in scripts.values():
            wrk(base + path, script, seconds=2)  # warm every worker and the cache
        for _ in range(runs):
            for name, script in scripts.items():
                out[name].append(wrk(base + path, script, seconds=seconds))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratios(
    values: dict[str, list[float]], better: Callable[[float, float], float]
) -> dict[str, float]:
    """Return the median per-run ratio of each case to anonymous."""
    return {
        name: median([better(v, a) for v, a in zip(runs, values["anonymous"], strict=True)])
        for name, runs in values.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="in-process requests per run")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `make bench` installs it")
    work = Path(tempfile.mkdtemp(prefix="coverslip-thumbs-bench-"))
    home = work / "home"
    try:
        coverslip(home, "user", "ensure-admin")
        coverslip(home, "user", "add", "bench", "--password", PASSWORD, "--group", "Public")
        token = json.loads(coverslip(home, "token", "create", "bench", "--json"))["token"]
        yy, xx = np.mgrid[0:512, 0:512]
        np.save(
            work / "plane.npy",
            (1000 + 800 * np.sin(xx / 30.0) * np.cos(yy / 40.0)).astype(np.uint16),
        )
        output = coverslip(home, "import", str(work / "plane.npy"), "--group", "Public", "--json")
        image_id = json.loads(output.strip().splitlines()[-1])["imported"][0]
        path = f"/webgateway/render_thumbnail/{image_id}/"
        micro = in_process(home, path, token, args.runs, args.requests)
        served = through_server(home, work, path, token, args.runs, args.seconds)
        rates = {name: [r["rate"] for r in runs] for name, runs in served.items()}
        micro_ratio = ratios(micro, lambda v, a: a / v)
        rate_ratio = ratios(rates, lambda v, a: v / a)
        print()
        print(
            "| cached render_thumbnail | in-process µs/request | rate vs anonymous "
            f"| `wrk -t2 -c100 -d{args.seconds}s` req/s | p50 ms | p99 ms | failed "
            f"| rate vs anonymous |  (median of {args.runs})"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in micro:
            figures = {key: median([r[key] for r in served[name]]) for key in served[name][0]}
            print(
                f"| {name} | {median(micro[name]):,.0f} | {micro_ratio[name]:.0%} "
                f"| {figures['rate']:,.0f} | {figures['p50']:.1f} | {figures['p99']:.1f} "
                f"| {figures['failed']:.0f} | {rate_ratio[name]:.0%} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
