"""Uploads through nginx with a job worker doing the import: MB/s and the processes' memory.

    python bench/upload_nginx.py [--size 32768] [--runs 3]

A uint16 TIFF of --size² pixels (32768² is 2 GiB) is written once into bench/results/inputs.
`coverslip web start` (Granian), `coverslip worker start` and nginx with the site that
`coverslip config nginx` writes; curl PUTs the file to the images API through nginx. Two
figures per run: the upload (until the 204, when the bytes are stored) and the whole import
(until the image is active). The reference, in the same run, is nginx itself storing the same
PUT with its WebDAV module. The peak resident memory of the web server's processes and of
the worker is sampled every 50 ms. Medians of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import tifffile
from deploy_load import nginx_conf, run
from gateway_load import free_port, wait_http

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "results" / "inputs"
BAND = 1024


def make_tiff(path: Path, size: int) -> None:
    """Write a size² uint16 TIFF band by band (a smooth texture with noise)."""
    image = tifffile.memmap(path, shape=(size, size), dtype=np.uint16, photometric="minisblack")
    rng = np.random.default_rng(3)
    xx = np.arange(size, dtype=np.float32)
    for y0 in range(0, size, BAND):
        yy = np.arange(y0, min(size, y0 + BAND), dtype=np.float32)[:, None]
        smooth = 20000 + 15000 * np.sin(xx / 300.0) * np.cos(yy / 250.0)
        noise = rng.integers(0, 2000, size=smooth.shape, dtype=np.uint16)
        image[y0 : y0 + len(yy)] = smooth.astype(np.uint16) + noise
    image.flush()
    del image


def tiff_of(size: int) -> Path:
    path = INPUTS / f"upload-{size}.tif"
    if not path.exists():
        INPUTS.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        make_tiff(partial, size)
        partial.rename(path)
    print(f"input: {path.name}, {path.stat().st_size / 1e6:,.0f} MB", flush=True)
    return path


def group_rss(pgid: int) -> int:
    """Return the resident bytes of every process in process group ``pgid``."""
    total = 0
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


class Peak:
    """Sample the resident memory of some process groups every 50 ms; keep the peaks."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self.peak = dict.fromkeys(groups, 0)
        self.start = {name: group_rss(pgid) for name, pgid in groups.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for name, pgid in self.groups.items():
                self.peak[name] = max(self.peak[name], group_rss(pgid))

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peak


def curl_put(url: str, path: Path, headers: dict[str, str]) -> float:
    """PUT ``path`` to ``url`` with curl; return the seconds until the answer."""
    command = ["curl", "-sS", "-f", "-o", "/dev/null", "-T", str(path), url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def api(port: int, method: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-Auth-Token": token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return dict(json.loads(answer.read() or b"{}"))


def pgid_of(pid_file: Path) -> int:
    return os.getpgid(int(pid_file.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=32768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    source = tiff_of(args.size)
    megabytes = source.stat().st_size / 1e6
    work = Path(tempfile.mkdtemp(prefix="coverslip-upload-bench-"))
    work.chmod(0o755)
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")}
    env.update(
        {
            "COVERSLIP_HOME": str(home),
            "COVERSLIP_WEB_ENV": "production",
            "COVERSLIP_WEB_PORT": str(free_port()),
            "COVERSLIP_IMAGES_SIZE_CAP": "0",
        }
    )
    port, dav_port = free_port(), free_port()
    uploads, imports, references = [], [], []
    peaks: list[dict[str, int]] = []
    try:
        run(env, "user", "ensure-admin")
        token = run(env, "token", "create", "--user", "admin").split()[-1]
        site = run(env, "config", "nginx", "--http", str(port), "--servername", "localhost")
        dav = work / "dav"
        dav.mkdir()
        site += (
            f"server {{ listen 127.0.0.1:{dav_port}; client_max_body_size 0; "
            f"location / {{ root {dav}; dav_methods PUT; client_body_temp_path {work}/davtmp; }} }}\n"
        )
        conf = nginx_conf(work / "nginx", site)
        run(env, "web", "start")
        run(env, "worker", "start")
        nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(conf.parent), "-g", "daemon off;"]
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            groups = {
                "web": pgid_of(home / "run" / "web.pid"),
                "worker": pgid_of(home / "run" / "worker.pid"),
            }
            for n in range(args.runs):
                references.append(curl_put(f"http://127.0.0.1:{dav_port}/copy-{n}.tif", source, {}))
                (dav / f"copy-{n}.tif").unlink()
                image = api(
                    port,
                    "POST",
                    "/images",
                    token,
                    {"name": f"upload {n}", "disk_format": "tiff", "container_format": "bare"},
                )
                peak = Peak(groups)
                started = time.perf_counter()
                uploads.append(
                    curl_put(
                        f"http://127.0.0.1:{port}/api/v2/images/{image['id']}/file",
                        source,
                        {"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
                    )
                )
                while (
                    status := api(port, "GET", f"/images/{image['id']}", token)["status"]
                ) not in (
                    "active",
                    "killed",
                ):
                    time.sleep(0.1)
                imports.append(time.perf_counter() - started)
                peaks.append({**peak.stop(), **{f"{k} at start": v for k, v in peak.start.items()}})
                if status != "active":
                    failed = api(port, "GET", f"/images/{image['id']}", token)
                    raise SystemExit(f"the import failed: {failed['message']}")
                api(port, "DELETE", f"/images/{image['id']}", token)
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
            run(env, "worker", "stop")
            run(env, "web", "stop")
        reference = megabytes / statistics.median(references)
        upload = megabytes / statistics.median(uploads)
        whole = megabytes / statistics.median(imports)

        def mib(name: str) -> str:
            return f"{statistics.median(p[name] for p in peaks) / 2**20:,.0f}"

        print()
        print(
            f"`curl -T` of a {megabytes:,.0f} MB uint16 TIFF through nginx (median of {args.runs})"
        )
        print()
        print("| step | MB/s | seconds | ratio to nginx storing the PUT |")
        print("|---|---:|---:|---:|")
        print(
            f"| nginx WebDAV PUT (reference) | {reference:,.0f} | {statistics.median(references):.1f} | 1.00 |"
        )
        print(
            f"| upload answered (bytes stored) | {upload:,.0f} | {statistics.median(uploads):.1f} "
            f"| {upload / reference:.2f} |"
        )
        print(
            f"| image active (worker imported it) | {whole:,.0f} | {statistics.median(imports):.1f} "
            f"| {whole / reference:.2f} |"
        )
        print()
        print("| process group | resident MiB at start | peak resident MiB |")
        print("|---|---:|---:|")
        for name in ("web", "worker"):
            print(f"| {name} | {mib(f'{name} at start')} | {mib(name)} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
