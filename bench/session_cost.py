"""What signing in adds to a cached thumbnail: µs per request in-process, by cookie and by token.

    python bench/session_cost.py [--requests 5000] [--runs 3] [--profile cookie|token|anonymous]

Builds the WSGI app as the tests do (a throwaway instance home, SQLite catalog and sessions),
imports one 256 × 256 uint8 image into the public group, signs a user in, warms the
thumbnail, then calls the app ``--requests`` times with one prebuilt environ per case:
anonymous, the ``sessionid`` cookie, and ``X-Auth-Token``, the cases taking turns of 100
requests so that a change in machine load hits all three alike. It prints the median of
``--runs`` runs per case and its ratio to anonymous measured in the same run. ``--profile`` runs one
case under cProfile instead and prints the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from falcon import testing

from coverslip.home import Home
from coverslip.imports import ImportOptions
from coverslip.web import create_app

PASSWORD = "bench-password-1"


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise SystemExit(f"the thumbnail answered {status}")


def call(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
    body = app(dict(environ), start_response)
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def build(root: Path) -> tuple[Any, str, dict[str, dict[str, Any]]]:
    """Return the app, the thumbnail path and one environ per case."""
    home = Home(root)
    app = create_app(home.settings({}, {}), home)
    services = app.services
    auth = services.auth
    source = root / "bench.npy"
    np.save(source, np.random.default_rng(1).integers(0, 256, (256, 256), dtype=np.uint8))
    owner, _ = services.catalog.ensure_local_admin()
    group = auth.ensure_public_group()
    image_id = services.importer().import_path(
        source, ImportOptions(owner_id=owner, group_id=group)
    )
    user_id = auth.directory.add_user("bench", PASSWORD)
    auth.directory.add_member(group, user_id)
    key, _who = auth.login("bench", PASSWORD)
    _token_id, token = auth.tokens.create(user_id, "bench")
    path = f"/webgateway/render_thumbnail/{image_id}/"
    environs = {
        "anonymous": testing.create_environ(path),
        "cookie": testing.create_environ(path, headers={"Cookie": f"sessionid={key}"}),
        "token": testing.create_environ(path, headers={"X-Auth-Token": token}),
    }
    for environ in environs.values():
        call(app, environ)  # warm: render once, fill every cache
    return app, path, environs


def per_request(app: Any, environ: dict[str, Any], requests: int) -> float:
    """Return µs per request over ``requests`` calls."""
    start = time.perf_counter()
    for _ in range(requests):
        call(app, environ)
    return (time.perf_counter() - start) / requests * 1e6


def interleaved(app: Any, environs: dict[str, dict[str, Any]], requests: int) -> dict[str, float]:
    """Return µs per request of each case, run in turns of 100 so load drift hits all alike."""
    spent = dict.fromkeys(environs, 0.0)
    turn = 100
    for _ in range(max(1, requests // turn)):
        for case, environ in environs.items():
            spent[case] += per_request(app, environ, turn) * turn
    return {case: us / (max(1, requests // turn) * turn) for case, us in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", choices=["anonymous", "cookie", "token"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coverslip-bench-") as tmp:
        app, path, environs = build(Path(tmp))
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(per_request, app, environs[args.profile], args.requests)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
            return
        runs: dict[str, list[float]] = {case: [] for case in environs}
        ratios: dict[str, list[float]] = {case: [] for case in environs}
        for _ in range(args.runs):
            measured = interleaved(app, environs, args.requests)
            for case, us in measured.items():
                runs[case].append(us)
                ratios[case].append(us / measured["anonymous"])
    print(f"command: python bench/session_cost.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"GET {path} (cached), {args.requests} requests × {args.runs} runs, medians\n")
    print("| caller | µs / request | × anonymous |")
    print("|---|---:|---:|")
    for case in environs:
        median = statistics.median(runs[case])
        print(f"| {case} | {median:.0f} | {statistics.median(ratios[case]):.2f} |")


if __name__ == "__main__":
    main()
