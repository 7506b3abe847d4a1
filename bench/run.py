"""`make bench`: run every benchmark in turn and print their tables.

python bench/run.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    quick = ["--quick"] if "--quick" in sys.argv else []
    steps = [
        ("Pixel store: chunk size, codec, library", ["pixelstore.py", "--quick"]),
        ("HTTP: the gateway against nginx", ["gateway_load.py", *quick]),
        (
            "HTTP: each application server behind nginx",
            ["deploy_load.py", *(["--runs", "1"] if quick else [])],
        ),
        (
            "Import: throughput and peak memory",
            ["import_memory.py", *(["--size", "16384", "--runs", "1"] if quick else [])],
        ),
        (
            "Import: CZI and SVS throughput and peak memory",
            ["import_vendor.py", *(["--scale", "0.5", "--runs", "1"] if quick else [])],
        ),
        (
            "Upload: through nginx, the worker importing",
            ["upload_nginx.py", *(["--size", "8192", "--runs", "1"] if quick else [])],
        ),
        (
            "HTTP: uncached tiles against IIPImage",
            ["tiles_peer.py", *(["--runs", "1", "--copies", "1"] if quick else [])],
        ),
        (
            "Viewer: the first tiles in Chromium against OpenSeadragon on IIPImage",
            ["viewer_first_tiles.py", *(["--runs", "1", "--size", "4096"] if quick else [])],
        ),
        (
            "HTTP: signed-in thumbnails against anonymous",
            ["thumbs_signed_in.py", *(["--runs", "1", "--seconds", "5"] if quick else [])],
        ),
        (
            "Scale out: pixels in an object store and the render cache in Redis, two nodes",
            [
                "object_store.py",
                *(
                    ["--runs", "1", "--size", "4096", "--copies", "1", "--seconds", "5"]
                    if quick
                    else []
                ),
            ],
        ),
        (
            "Auth: what a session or token adds to a cached thumbnail",
            ["session_cost.py", *(["--requests", "1000"] if quick else [])],
        ),
    ]
    failed = 0
    for title, command in steps:
        print(f"\n## {title}\n\n`python bench/{' '.join(command)}`\n", flush=True)
        failed += (
            subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]]).returncode != 0
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
